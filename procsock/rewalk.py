"""The fd walk of a repeated snapshot (a watch's polls): only the fd tables that may have changed
since the last poll are read again.

A process's fd table changes only through a task that uses it: one of its own threads (io_uring's
workers are threads of the process since Linux 5.12) or another process sharing the table (clone
with CLONE_FILES). Such a task runs to make the change, and a process's CPU clock (the sum over
all its threads, in nanoseconds) moves whenever one of its threads runs. So a process whose
/proc/PID directory (a pid reused by a new process is another directory) and CPU clock are what
they were before its last walk holds what it held then, unless a process sharing one of its fd
tables ran, appeared or went away. Sharing is told by kcmp(KCMP_FILES) at every poll (a sort of
the tables, n log n comparisons), and remembered from the last poll, since a sharer may have made
its change and exited or unshared since.

Read again at every poll: the list of processes, each one's directory and clock, the sharing,
every process that ran or shares with one that did, every unreadable one (its access may have
changed), and, with context, each holder's cgroup and command line (another process may move it
to another cgroup). Kept: each other process's owner rows, the same tuples, so that the poll's
diff sees them unchanged at once.

Where sharing cannot be told, nothing is kept: a /proc that hides processes (hidepid), and, for a
watch without root, a process of our own uid that kcmp may not compare (one that made itself
undumpable could share a table with one we read) and that ran, appeared or went. A process that
kcmp refuses to a root watch has capabilities root here lacks (it is outside our container); it
is taken to share no table with a process we may read.
"""

import errno
import functools
import os
import time
from typing import Callable, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

from procsock.fdscan import (
    NAMED_UNREADABLE, FdScan, all_pids, fd_table, fd_table_order, hidden_processes, netns_inode, owner_rows_of,
    private_tables, process_facts, process_identity, process_name,
)
from procsock.scope import kept

__all__ = ["repeated_walk"]

_DENIED = (errno.EACCES, errno.EPERM)
_NONE: FrozenSet[int] = frozenset()
_SORT_TRIES = 5  # sorts of the fd tables begun again when a task exits during one; then walk everything


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


def _marks(proc_root: str) -> Dict[int, Tuple[int, int]]:
    """(inode of /proc/PID, CPU clock) of every live process, in pid order."""
    marks = {}
    stat, clock = os.stat, time.clock_gettime_ns
    for pid in all_pids(proc_root):
        try:
            marks[pid] = (stat("%s/%d" % (proc_root, pid)).st_ino, clock(_cpu_clock(pid)))
        except OSError:  # exited while listed
            continue
    return marks


_PF_KTHREAD = 0x00200000  # a task's flag (field 9 of /proc/PID/stat): a kernel thread


def _kernel_thread(proc_root: str, pid: int) -> bool:
    """Whether live `pid` is a kernel thread (False when unsure)."""
    try:
        with open("%s/%d/stat" % (proc_root, pid), "rb", buffering=0) as f:
            fields = f.read(4096).rpartition(b")")[2].split()
        return bool(int(fields[6]) & _PF_KTHREAD)
    except (OSError, IndexError, ValueError):
        return False


class _Tables(NamedTuple):
    """The fd tables shared by more than one task, as kcmp tells them now."""

    sharers: Dict[int, FrozenSet[int]]  # pid -> the other pids using one of its tables
    opaque: FrozenSet[int]  # pids kcmp may not compare
    uncompared: FrozenSet[int]  # pids with a task not sorted (exited meanwhile, or opaque)


def _shared_tables(tasks: Dict[int, int]) -> Optional[_Tables]:
    """Which processes share fd tables: `tasks` maps each task (a process, or a thread with a
    private table) to its process. None when tasks kept exiting during the sorts."""
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
    for _ in range(_SORT_TRIES):
        try:
            ordered = sorted(comparable, key=functools.cmp_to_key(_order))
            runs: List[List[int]] = []
            for before, task in zip([None] + ordered, ordered):
                if before is not None and _order(before, task) == 0:
                    runs[-1].append(task)
                else:
                    runs.append([task])
        except _Gone as gone:
            comparable.remove(gone.task)
            continue
        sharers: Dict[int, FrozenSet[int]] = {}
        for run in runs:
            pids = frozenset(tasks[task] for task in run)
            if len(pids) > 1:
                for pid in pids:
                    sharers[pid] = sharers.get(pid, _NONE) | (pids - {pid})
        sorted_tasks = set(comparable)
        uncompared = frozenset(pid for task, pid in tasks.items() if task not in sorted_tasks)
        return _Tables(sharers, frozenset(opaque), uncompared)
    return None


class _Gone(Exception):
    def __init__(self, task: int) -> None:
        self.task = task


def _order(task: int, other: int) -> int:
    try:
        return fd_table_order(task, other)
    except OSError:
        try:  # which one went: it leaves the sort
            fd_table_order(task, task)
        except OSError:
            raise _Gone(task) from None
        raise _Gone(other) from None


def _walk(proc_root: str, pid: int) -> _Walked:
    """Walk one process's fd tables (its threads' private ones too); OSError when they may not
    be read."""
    found = fd_table(proc_root, pid, False)
    if found is None:  # exited while listed
        return _Walked((), (), 0, None, "", None, 0)
    tables = [(None, found)]
    for tid in private_tables(proc_root, pid):
        try:
            private = fd_table(proc_root, tid, False)
        except OSError as exc:
            tables.append((tid, ([], int(exc.errno in _DENIED))))
            continue
        if private is not None:
            tables.append((tid, private))
    denied = sum(count for _, (_, count) in tables)
    threads = tuple(tid for tid, _ in tables[1:])
    if not any(sockets for _, (sockets, _) in tables):
        return _Walked((), threads, denied, None, "", None, 1)
    name, uid = process_identity(proc_root, pid)
    held, _ = owner_rows_of(pid, name, uid, tables, False)
    held_once = tuple((inode, (row,)) for inode, row in held)
    return _Walked(held_once, threads, denied, netns_inode(proc_root, pid), name, uid, 1)


def _stale(marks: Dict[int, Tuple[int, int]], store: dict, tables: Optional[_Tables],
           opaque_uids: Dict[int, Optional[int]], kernel: FrozenSet[int]) -> Optional[set]:
    """The processes to walk again: those that ran or are new, and those sharing a table now or
    at the last poll with one that ran, is new or went. None: every process (sharing unknown).
    Kernel threads (`kernel`) hold no fds of their own: never again once walked."""
    if tables is None:
        return None
    last: Dict[int, Tuple[int, int]] = store.get("marks", {})
    changed = {pid for pid, mark in marks.items() if last.get(pid) != mark and pid not in kernel}
    moved = changed | {pid for pid in last if pid not in marks}
    if os.geteuid() != 0:  # our own processes kcmp may not compare could share with one we read
        was = store.get("opaque uids", {})
        uids = [opaque_uids[pid] for pid in tables.opaque & changed] + [was[pid] for pid in was if pid in moved]
        if os.geteuid() in uids:
            return None
    sharing: Dict[int, FrozenSet[int]] = store.get("sharing", {})
    stale = set(changed)
    for pid in tables.sharers.keys() | sharing.keys():
        if pid in marks and (tables.sharers.get(pid, _NONE) | sharing.get(pid, _NONE)) & moved:
            stale.add(pid)
    return stale


def _remembered(tables: _Tables, last: Dict[int, FrozenSet[int]], marks) -> Dict[int, FrozenSet[int]]:
    """The sharing to remember for the next poll: what kcmp told now, and what the last poll knew
    of processes that left this poll's sort (they may have changed a table after their mark was
    read, then exited or become opaque: the next poll must still know whose tables those were)."""
    sharing = dict(tables.sharers)
    for pid, others in last.items():
        if pid in marks:
            carried = others if pid in tables.uncompared else others & tables.uncompared
            if carried:
                sharing[pid] = sharing.get(pid, _NONE) | carried
    return sharing


def walk_again(store: dict, proc_root: str, context: bool) -> FdScan:
    """One walk of every process under the live `proc_root`, reusing from `store` (the last
    walk's, updated) each process that cannot have changed since (see the module)."""
    before: Dict[int, _Walked] = store.get("walked", {})
    marks = _marks(proc_root)
    hidden = hidden_processes(proc_root)
    last, was_kernel = store.get("marks", {}), store.get("kernel threads", _NONE)
    kernel = frozenset(  # known by directory: a pid reused is asked again
        pid for pid, (directory, _) in marks.items()
        if (pid in was_kernel if last.get(pid, (None,))[0] == directory else _kernel_thread(proc_root, pid)))
    tasks = {pid: pid for pid in marks if pid not in kernel}
    for pid, walked in before.items():
        if pid in marks:
            tasks.update((tid, pid) for tid in walked.threads)
    tables = None if hidden else _shared_tables(tasks)
    opaque_uids: Dict[int, Optional[int]] = {}
    if tables is not None and os.geteuid() != 0:
        was = store.get("opaque uids", {})
        opaque_uids = {pid: was[pid] if pid in was and last.get(pid) == marks[pid]
                       else process_identity(proc_root, pid)[1] for pid in tables.opaque}
    stale = _stale(marks, store, tables, opaque_uids, kernel)
    walked: Dict[int, _Walked] = {}
    unreadable: List[int] = []
    for pid in marks:
        found = before.get(pid) if stale is not None and pid not in stale else None
        if found is None:
            try:
                found = _walk(proc_root, pid)
            except OSError as exc:
                if exc.errno in _DENIED:
                    unreadable.append(pid)
                continue
        walked[pid] = found
    store["walked"], store["marks"], store["opaque uids"], store["kernel threads"] = walked, marks, opaque_uids, kernel
    store["sharing"] = {} if tables is None else _remembered(tables, store.get("sharing", {}), marks)
    return _scan(proc_root, walked, unreadable, hidden, context)


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
