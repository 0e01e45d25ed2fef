"""The fd walk of a repeated snapshot (a watch's polls): only the fd tables that may have changed
since the last poll are read again.

A process's fd table changes only through a task that uses it: one of its own threads (io_uring's
workers are threads of the process since Linux 5.12) or another process sharing the table (clone
with CLONE_FILES). Such a task runs to make the change, and a process's CPU clock (the sum over
all its threads, in nanoseconds) moves whenever one of its threads runs. So a process whose
/proc/PID directory (a pid reused by a new process is another directory) and CPU clock are what
they were before its last walk holds what it held then, unless a process sharing one of its fd
tables moved: ran, appeared or went.

Sharing is told by kcmp(KCMP_FILES), which orders fd tables: every poll sorts the tasks by table
(n log n comparisons), reads every clock again, checks that the tasks that did not run in between
(whose tables cannot have changed) are in order, and places those that did run by binary search,
as it does the threads with a private table that its walks find. A sharer may have made its
change and exited or unshared since, so what the last poll knew of sharing counts too; a poll
that could not tell it walks everything, and so does the next.

A process kcmp may not compare (an ordinary user's watch and other users' processes; a root watch
and a process with capabilities root lacks here) can share a table with one we read. A table's
size (FDSize in /proc/PID/status, readable for every process) is one for all its sharers and only
grows; so when such a process moved, each process whose fd table is of its size, now or at the
last poll, is walked again. Kernel threads hold no fds: walked once per process.

Read again at every poll: the list of processes, each one's directory and clock, the sharing (and
the table sizes, where kcmp is refused for some process), every process that moved or may share
with one that did, every unreadable one (its access may have changed), and, with context, each
holder's cgroup and command line (another process may move it to another cgroup). Kept: each
other process's owner rows, the same tuples, so that the poll's diff sees them unchanged at once.
A /proc that hides processes (hidepid) makes every poll a full walk.
"""

import errno
import functools
import os
import time
from typing import Callable, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Set, Tuple

from procsock.fdscan import (
    NAMED_UNREADABLE, FdScan, all_pids, fd_table, fd_table_order, hidden_processes, netns_inode, owner_rows_of,
    process_facts, process_identity, process_name, thread_tables,
)
from procsock.scope import kept

__all__ = ["repeated_walk"]

_DENIED = (errno.EACCES, errno.EPERM)
_NONE: FrozenSet[int] = frozenset()
_SORT_TRIES = 5  # sorts of the fd tables begun again when a task exits or changes tables during one
_PF_KTHREAD = 0x00200000  # a task's flag (field 9 of /proc/PID/stat): a kernel thread

Mark = Tuple[int, int]  # (inode of /proc/PID, CPU clock in ns)


class _Walked(NamedTuple):
    """What the last walk of one process found (valid while its mark, read before, holds)."""

    held: Tuple[tuple, ...]  # (socket inode, (owner row,)) of each socket fd, in walk order
    threads: Tuple[int, ...]  # its threads with a private fd table, walked with it
    denied: int  # fds it holds that could not be read
    netns: Optional[int]
    name: str
    uid: Optional[int]
    processes: int  # 1 if its fd table was read, 0 if it exited while listed


def repeated_walk(proc_root: Optional[str], context: bool) -> Optional[Callable[[], FdScan]]:
    """The walk of every process for a snapshot repeated in a ``procsock.scope.keeping`` block,
    reusing what the last one read where nothing can have changed (a function returning it); None
    outside such a block, or where the reuse cannot be known to be sound (see the module)."""
    store = kept(("procsock.rewalk", proc_root, context))
    if store is None or proc_root is None or not _usable(proc_root):
        return None
    return lambda: walk_again(store, proc_root, context)


@functools.lru_cache(maxsize=1)
def _kernel_runs_io_workers_as_threads() -> bool:
    """Linux 5.12 and later: io_uring's workers are threads of the process whose table they use."""
    release = os.uname().release.split(".")
    try:
        return (int(release[0]), int("".join(c for c in release[1][:3] if c.isdigit()) or 0)) >= (5, 12)
    except (IndexError, ValueError):
        return False


def _usable(proc_root: str) -> bool:
    """Whether `proc_root` is this pid namespace's live /proc on a kernel where the rule holds."""
    if not _kernel_runs_io_workers_as_threads():
        return False
    try:
        fd_table_order(os.getpid(), os.getpid())
        return os.readlink(os.path.join(proc_root, "self")) == str(os.getpid())
    except OSError:
        return False


def _cpu_clock(pid: int) -> int:
    """The clock id of process `pid`'s CPU time (CPUCLOCK_SCHED of the whole thread group)."""
    return ((~pid) << 3) | 2


def _marks(proc_root: str, pids: Iterable[int]) -> Dict[int, Mark]:
    """The mark of each of `pids` still alive, in their order."""
    marks = {}
    stat, clock = os.stat, time.clock_gettime_ns
    for pid in pids:
        try:
            marks[pid] = (stat("%s/%d" % (proc_root, pid)).st_ino, clock(_cpu_clock(pid)))
        except OSError:  # exited
            continue
    return marks


def _kernel_thread(proc_root: str, pid: int) -> bool:
    """Whether live `pid` is a kernel thread (False when unsure)."""
    try:
        with open("%s/%d/stat" % (proc_root, pid), "rb", buffering=0) as f:
            fields = f.read(4096).rpartition(b")")[2].split()
        return bool(int(fields[6]) & _PF_KTHREAD)
    except (OSError, IndexError, ValueError):
        return False


def _fd_size(proc_root: str, pid: int) -> Optional[int]:
    """The size of live `pid`'s fd table (FDSize of /proc/PID/status); None when unknown."""
    try:
        with open("%s/%d/status" % (proc_root, pid), "rb", buffering=0) as f:
            status = f.read(4096)
        start = status.index(b"\nFDSize:") + 8
        return int(status[start : status.index(b"\n", start)])
    except (OSError, ValueError):
        return None


class _Gone(Exception):
    """A task left the sort: it exited, or kcmp may no longer compare it."""

    def __init__(self, task: int) -> None:
        self.task = task


class _Unsorted(Exception):
    """The sorted tasks are not in kcmp order: a table changed during the sort."""


def _order(task: int, other: int) -> int:
    try:
        return fd_table_order(task, other)
    except OSError:
        try:  # which one went: it leaves the sort
            fd_table_order(task, task)
        except OSError:
            raise _Gone(task) from None
        raise _Gone(other) from None


class _Tables:
    """The fd tables of the tasks kcmp may compare, in its order: runs of tasks sharing one, each
    run's first task standing for it."""

    def __init__(self, runs: List[List[int]], process: Dict[int, int], opaque: FrozenSet[int]) -> None:
        self.runs = runs
        self.process = process  # task -> its process
        self.opaque = opaque  # processes kcmp may not compare

    @classmethod
    def checked(cls, ordered: List[int], process: Dict[int, int], opaque: FrozenSet[int]) -> "_Tables":
        """The runs of `ordered`, tasks whose tables did not change since they were sorted;
        _Unsorted if they are not in order after all."""
        runs: List[List[int]] = []
        for before, task in zip([None] + ordered, ordered):
            order = None if before is None else _order(before, task)
            if order == 0:
                runs[-1].append(task)
            elif order == 1:
                raise _Unsorted()
            else:
                runs.append([task])
        return cls(runs, process, opaque)

    def place(self, task: int, pid: int) -> None:
        """Add `task` (of process `pid`) where its table is now, by binary search."""
        self.process[task] = pid
        low, high = 0, len(self.runs)
        while low < high:
            middle = (low + high) // 2
            order = _order(task, self.runs[middle][0])
            if order == 0:
                self.runs[middle].append(task)
                return
            if order < 0:
                high = middle
            else:
                low = middle + 1
        self.runs.insert(low, [task])

    def sharers(self) -> Dict[int, FrozenSet[int]]:
        """pid -> the other processes using one of its fd tables (only processes sharing one)."""
        found: Dict[int, FrozenSet[int]] = {}
        for run in self.runs:
            pids = frozenset(self.process[task] for task in run)
            if len(pids) > 1:
                for pid in pids:
                    found[pid] = found.get(pid, _NONE) | (pids - {pid})
        return found


def _sorted_tables(proc_root: str, tasks: Dict[int, int], marks: Dict[int, Mark]):
    """(the tables of `tasks` or None when tasks kept exiting or changing tables during the
    sorts, the marks read again once they are sorted, the processes whose task left the sort
    after that read: they may have changed a table after their mark and gone, so their sharing
    is not told by this sort). `tasks` maps each task (a process, or a thread with a private
    table) to its process."""
    own = os.getpid()
    comparable, opaque = [], set()
    for task, pid in tasks.items():
        try:
            fd_table_order(own, task)
        except OSError as exc:
            if exc.errno in _DENIED:
                opaque.add(pid)
            continue  # else gone: it is no sharer now
        comparable.append(task)
    settled, dropped = marks, set()
    for _ in range(_SORT_TRIES):
        try:
            ordered = sorted(comparable, key=functools.cmp_to_key(_order))
            settled = _marks(proc_root, marks)
            ran = {pid for pid, mark in marks.items() if settled.get(pid) != mark}
            tables = _Tables.checked([task for task in ordered if tasks[task] not in ran], dict(tasks),
                                     frozenset(opaque))
            for task in ordered:
                if tasks[task] in ran:
                    tables.place(task, tasks[task])
        except _Gone as gone:
            comparable.remove(gone.task)
            dropped.add(tasks[gone.task])
            continue
        except _Unsorted:
            continue
        return tables, settled, frozenset(dropped & settled.keys())
    return None, settled, _NONE


def _suspects(sizes: Dict[int, Optional[int]], pids: Iterable[int]) -> Optional[Set[int]]:
    """The table sizes of `pids`; None when one is unknown (then every size is suspect)."""
    found = set()
    for pid in pids:
        size = sizes.get(pid)
        if size is None:
            return None
        found.add(size)
    return found


class _Poll(NamedTuple):
    """What one poll learnt of the processes, kept for the next."""

    marks: Dict[int, Mark]  # read again after the sort: the marks its walks are valid from
    kernel: FrozenSet[int]  # kernel threads among them
    sharing: Optional[Dict[int, FrozenSet[int]]]  # pid -> processes sharing a table with it; None: unknown
    opaque: FrozenSet[int]  # processes kcmp may not compare
    sizes: Dict[int, Optional[int]]  # fd table sizes, read when some process is opaque (None: changing)


def _stale(first: Dict[int, Mark], now: _Poll, last: Optional[_Poll], walked: Dict[int, _Walked],
           sizes_before: Dict[int, Optional[int]]) -> Optional[Set[int]]:
    """The processes to walk again (None: every one): those that moved (new, another directory,
    their clock moved since the last poll, or during this one's sort), those sharing a table now
    or at the last poll with one that moved or went, and, where a process kcmp may not compare
    moved or went, those whose table is of its size now or at the last poll. `first` holds the
    marks read before the sort, `sizes_before` the opaque processes' sizes read before the
    others'. A pure function of what the polls read."""
    if last is None or last.sharing is None or now.sharing is None:
        return None
    changed = set()
    for pid, mark in first.items():
        was = last.marks.get(pid)
        same_directory = was is not None and was[0] == mark[0]
        if pid in now.kernel and same_directory and pid in last.kernel:
            continue  # a kernel thread known as one: its table never holds fds
        if was != mark or now.marks.get(pid) != mark:
            changed.add(pid)
    moved = changed | (last.marks.keys() - now.marks.keys())
    stale = set(changed)
    for sharing in (now.sharing, last.sharing):
        for pid, others in sharing.items():
            if others & moved:
                stale.add(pid)
    moved_opaque = (now.opaque | last.opaque) & moved
    if moved_opaque:
        for pid in now.opaque & moved_opaque:
            if sizes_before.get(pid) != now.sizes.get(pid):
                return None  # its table grew (or it went) while the sizes were read
        suspects_now = _suspects(now.sizes, now.opaque & moved_opaque & now.marks.keys())
        suspects_last = _suspects(last.sizes, last.opaque & moved_opaque)
        if suspects_now is None or suspects_last is None:
            return None
        for pid in now.marks.keys() - stale - now.kernel:
            found = walked.get(pid)
            if found is None or found.threads or now.sizes.get(pid) in suspects_now | {None} or (
                    pid in last.sizes and last.sizes[pid] in suspects_last):
                stale.add(pid)
    return stale


def _remembered(sharing: Dict[int, FrozenSet[int]], left: FrozenSet[int],
                last: Optional[_Poll]) -> Optional[Dict[int, FrozenSet[int]]]:
    """The sharing to keep for the next poll: what kcmp told now, and the last poll's of the
    processes that `left` the sort alive (None, unknown, when one of them was new)."""
    if not left:
        return sharing
    if last is None or last.sharing is None or not left <= last.marks.keys():
        return None
    kept = dict(sharing)
    for pid in left:
        for other in last.sharing.get(pid, _NONE):
            kept[pid] = kept.get(pid, _NONE) | {other}
            kept[other] = kept.get(other, _NONE) | {pid}
    return kept


def _walk(proc_root: str, pid: int) -> _Walked:
    """Walk one process's fd tables (its threads' private ones too); OSError when they may not
    be read."""
    found = fd_table(proc_root, pid, False)
    if found is None:  # exited while listed
        return _Walked((), (), 0, None, "", None, 0)
    tables = [(None, found)] + thread_tables(proc_root, pid)
    denied = sum(count for _, (_, count) in tables)
    threads = tuple(tid for tid, _ in tables[1:])
    if not any(sockets for _, (sockets, _) in tables):
        return _Walked((), threads, denied, None, "", None, 1)
    name, uid = process_identity(proc_root, pid)
    held, _ = owner_rows_of(pid, name, uid, tables, False)
    held_once = tuple((inode, (row,)) for inode, row in held)
    return _Walked(held_once, threads, denied, netns_inode(proc_root, pid), name, uid, 1)


def walk_again(store: dict, proc_root: str, context: bool) -> FdScan:
    """One walk of every process under the live `proc_root`, reusing from `store` (the last
    walk's, updated) each process that cannot have changed since (see the module)."""
    last: Optional[_Poll] = store.get("poll")
    before: Dict[int, _Walked] = store.get("walked", {}) if last is not None else {}
    first = _marks(proc_root, all_pids(proc_root))
    hidden = hidden_processes(proc_root)
    kernel = frozenset(  # known by directory: a pid reused is asked again
        pid for pid, (directory, _) in first.items()
        if (pid in last.kernel if last is not None and last.marks.get(pid, (None,))[0] == directory
            else _kernel_thread(proc_root, pid)))
    tasks = {pid: pid for pid in first if pid not in kernel}
    for pid, walked in before.items():
        if pid in tasks:
            tasks.update((tid, pid) for tid in walked.threads)
    tables, settled, left = (None, first, _NONE) if hidden else _sorted_tables(proc_root, tasks, first)
    opaque = tables.opaque if tables is not None else _NONE
    sizes_before: Dict[int, Optional[int]] = {}
    sizes: Dict[int, Optional[int]] = {}
    if opaque or (last is not None and last.opaque):  # the opaque ones' sizes read before and after the others'
        sizes_before = {pid: _fd_size(proc_root, pid) for pid in opaque}
        sizes = {pid: _fd_size(proc_root, pid) for pid in settled if pid not in kernel and pid not in opaque}
        sizes.update((pid, _fd_size(proc_root, pid)) for pid in opaque)
    now = _Poll(settled, kernel, None if tables is None else tables.sharers(), opaque, sizes)
    stale = _stale(first, now, last, before, sizes_before)
    walked_now: Dict[int, _Walked] = {}
    unreadable: List[int] = []
    for pid in settled:
        found = before.get(pid) if stale is not None and pid not in stale else None
        if found is None:
            try:
                found = _walk(proc_root, pid)
            except OSError as exc:
                if exc.errno in _DENIED:
                    unreadable.append(pid)
                continue
            if tables is not None:
                try:
                    for tid in found.threads:  # private tables found now: where they are, for the next poll
                        if tid not in tables.process:
                            tables.place(tid, pid)
                except _Gone:
                    tables = None
        walked_now[pid] = found
    now = now._replace(sharing=None if tables is None else _remembered(tables.sharers(), left, last))
    store["poll"], store["walked"] = now, walked_now
    return _scan(proc_root, walked_now, unreadable, hidden, context)


def _scan(proc_root: str, walked: Dict[int, _Walked], unreadable: List[int], hidden: Optional[str],
          context: bool) -> FdScan:
    """The FdScan of the processes' walks, as one walk of all of them gives it."""
    owners: Dict[int, Tuple[tuple, ...]] = {}
    netns: Dict[int, int] = {}
    facts: Optional[dict] = {} if context else None
    denied = processes = 0
    for pid, found in walked.items():
        processes += found.processes
        denied += found.denied
        if not found.held:
            continue
        if found.netns is not None:
            netns[pid] = found.netns
        if facts is not None:
            facts[pid] = (found.name, found.uid) + process_facts(proc_root, pid)
        for inode, one in found.held:
            known = owners.get(inode)
            owners[inode] = one if known is None else known + one
    names = {pid: process_name(proc_root, pid) for pid in unreadable[:NAMED_UNREADABLE]}
    return FdScan(owners, processes, tuple(unreadable), denied, netns, hidden, names, 0, facts)
