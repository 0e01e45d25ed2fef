"""Who holds which socket: a walk of PROC/PID/fd that maps socket inodes to their owners.

Reads a live /proc or a captured tree the same way (fd entries are symlinks `socket:[INODE]`,
read and never followed); a captured tree (`captured=True`) is reached through `procsock.inputs`,
never through a link, and its fd entries that are not `socket:[INODE]` as the kernel writes them
are counted in `FdScan.malformed`.
Processes and fds that vanish mid-walk are skipped silently; processes we may not look into are
counted, so a non-root user gets its own sockets plus "N processes not readable".
"""

import atexit
import errno
import functools
import marshal
import time
import os
import signal
import struct
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import attrs

from procsock.errors import AccessDenied, InputError, NoSuchProcess, NotASocket, ProcsockError
from procsock.inputs import DIRECTORY, INT_MAX, decimal, open_beneath, read_tree, readlink_beneath
from procsock.model import NO_CONTEXTS, Contexts, Holders

_SOCKET_PREFIX = "socket:["
_INODE_START = len(_SOCKET_PREFIX)  # where the inode begins in a socket link's target
_DENIED = (errno.EACCES, errno.EPERM)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

@attrs.frozen
class FdScan:
    """The result of one walk: owners by socket inode, and what could not be read.

    `owner_rows` maps inode → the owner rows (pid, fd, name, uid, tid) holding it, in walk order;
    `owners` is the same as Owners, each built when first read. `unreadable` lists the pids
    whose fd table we were not allowed to read; `denied_fds` counts single fds we could not read.
    `netns` maps each pid holding a socket to its network namespace inode, where readable.
    `hidden` is the hidepid= option of a /proc that hid other users' processes from the walk.
    `unreadable_names` names the first few unreadable pids (comm, untrusted: escape to show).
    `malformed` counts socket fd entries of a captured tree that were skipped: an fd name or
    socket inode that is not a bounded ASCII decimal, a link not ending in "]".
    `facts` maps each pid holding a socket to what its Process is made of: (name, uid, cgroup,
    cmdline), the last two the raw texts of its PROC/PID files (None where unreadable), read only
    when the walk was asked for context; else None. `contexts` maps each pid to its Context once
    computed (procsock.context); its Owners (`owners`) carry it.
    """

    owner_rows: Dict[int, Tuple[tuple, ...]]
    processes: int
    unreadable: Tuple[int, ...]
    denied_fds: int
    netns: Dict[int, int] = attrs.field(factory=dict)
    hidden: Optional[str] = None
    unreadable_names: Dict[int, str] = attrs.field(factory=dict)
    malformed: int = 0
    facts: Optional[Dict[int, Tuple[str, Optional[int], Optional[bytes], Optional[bytes]]]] = None
    contexts: Contexts = NO_CONTEXTS
    owners: Holders = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "owners", Holders(self.owner_rows, self.contexts))


NAMED_UNREADABLE = 3  # how many unreadable processes the note names


def _socket_fds(fd_dir: int) -> Tuple[List[Tuple[str, str]], int]:
    """(fd name, inode digits) of every socket in the open fd directory, and how many fds were
    unreadable. Only socket links are kept; the caller checks and converts the digits."""
    found = []
    denied = 0
    readlink = os.readlink
    for name in os.listdir(fd_dir):
        try:
            target = readlink(name, dir_fd=fd_dir)
        except OSError as exc:
            if exc.errno in _DENIED:
                denied += 1
            continue
        if target.startswith(_SOCKET_PREFIX):
            found.append((name, target))
    return found, denied


def _link_inode(target: str, prefix: str = _SOCKET_PREFIX) -> int:
    """The inode of a `socket:[INODE]` (or `net:[INODE]`...) link target; ValueError unless
    exactly that shape."""
    if not (target.startswith(prefix) and target.endswith("]")):
        raise ValueError("not a link of the form %sINODE]" % prefix)
    return decimal(target[len(prefix) : -1])


def _read_small(proc_root: str, pid: int, name: str, captured: bool) -> Optional[bytes]:
    """The head of a small per-process file (comm, status); None when it cannot be read."""
    if captured:
        try:
            return read_tree(proc_root, (str(pid), name), True, 65536)
        except InputError:
            return None
    try:
        with open("%s/%d/%s" % (proc_root, pid, name), "rb", buffering=0) as f:
            return f.read(4096)
    except OSError:
        return None


FACT_FILES = ("cgroup", "cmdline")  # per-process files an owner's context is read from
FACT_MAX_BYTES = 65536  # a cgroup file of one line per hierarchy; a longer command line is cut


def process_facts(proc_root: str, pid: int, captured: bool = False) -> Tuple[Optional[bytes], Optional[bytes]]:
    """The raw PROC/PID/cgroup and PROC/PID/cmdline texts (None when unreadable or gone): what an
    owner's context is made from (procsock_owner_context), read once per process."""
    found = []
    for name in FACT_FILES:
        if captured:
            try:
                found.append(read_tree(proc_root, (str(pid), name), True, FACT_MAX_BYTES))
            except InputError:
                found.append(None)
            continue
        try:
            with open("%s/%d/%s" % (proc_root, pid, name), "rb", buffering=0) as f:
                found.append(f.read(FACT_MAX_BYTES))
        except OSError:
            found.append(None)
    return found[0], found[1]


def with_facts(scan: "FdScan", proc_root: str, captured: bool = False) -> "FdScan":
    """`scan` with the facts of every process holding sockets, read now if the walk did not."""
    if scan.facts is not None:
        return scan
    named = {owner[0]: owner[2:4] for held in scan.owner_rows.values() for owner in held}
    return attrs.evolve(scan, facts={pid: named[pid] + process_facts(proc_root, pid, captured)
                                     for pid in sorted(named)})


def process_name(proc_root: str, pid: int, captured: bool = False) -> str:
    """The process's name (comm, surrogateescape-decoded); "" where unknown."""
    comm = _read_small(proc_root, pid, "comm", captured)
    return "" if comm is None else os.fsdecode(comm[:-1] if comm.endswith(b"\n") else comm)


def process_identity(proc_root: str, pid: int, captured: bool = False) -> Tuple[str, Optional[int]]:
    """The process's name (comm, surrogateescape-decoded) and real uid; ("", None) where unknown."""
    name = process_name(proc_root, pid, captured)
    uid = None
    status = _read_small(proc_root, pid, "status", captured)
    if status is not None:
        start = status.find(b"\nUid:")
        if start >= 0:
            fields = status[start + 5 : status.find(b"\n", start + 5)].split()
            try:
                uid = decimal(fields[0], 2**32 - 1) if fields else None
            except ValueError:
                uid = None
    return name, uid


def all_pids(proc_root: str) -> List[int]:
    """The pids of the process directories of `proc_root` (names of ASCII digits, up to INT_MAX),
    in order."""
    pids = []
    for name in os.listdir(proc_root):
        if name[:1].isdigit():
            try:
                pids.append(decimal(name, INT_MAX))
            except ValueError:
                continue
    return sorted(pids)


# kcmp(2) by machine (its number differs between architectures); KCMP_FILES compares fd tables
_KCMP = {"x86_64": 312, "i386": 349, "i686": 349, "aarch64": 272, "riscv64": 272, "loongarch64": 272,
         "armv7l": 378, "ppc64le": 354, "ppc64": 354, "s390x": 343}.get(os.uname().machine)
_KCMP_FILES = 2


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes  # only here: for processes with several threads (a full walk asks in its forked child)

    return ctypes.CDLL(None, use_errno=True)


def fd_table_order(task: int, other: int) -> int:
    """kcmp KCMP_FILES as an order of fd tables: 0 when both tasks share one, else -1 or 1, the
    same answer for the same two tables while they live. OSError when kcmp cannot compare them
    (a task gone, one we may not inspect, no kcmp on this machine)."""
    if _KCMP is None:
        raise OSError(errno.ENOSYS, "kcmp is not known on this machine")
    result = _libc().syscall(_KCMP, task, other, _KCMP_FILES, 0, 0)
    if not 0 <= result <= 2:
        import ctypes

        code = errno.EINVAL if result >= 0 else ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return (0, -1, 1)[result]


def same_fd_table(task: int, other: int) -> Optional[bool]:
    """Whether two live tasks share one fd table (kcmp KCMP_FILES); None when kcmp cannot tell."""
    try:
        return fd_table_order(task, other) == 0
    except OSError:
        return None


def private_tables(proc_root: str, pid: int) -> List[int]:
    """The threads of live process `pid` whose fd table is not the leader's (one thread per table).

    One stat tells a one-thread process (its task directory links 2 + threads); only processes
    with more threads list them and compare tables (kcmp, a syscall per thread). Where kcmp cannot
    tell, threads are taken to share the leader's table.
    """
    task_dir = "%s/%d/task" % (proc_root, pid)
    try:
        if os.stat(task_dir).st_nlink <= 3:
            return []
        tids = [int(name) for name in os.listdir(task_dir) if name.isdecimal()]
    except OSError:
        return []
    tables = [pid]
    for tid in tids:
        if tid != pid and all(same_fd_table(table, tid) is False for table in tables):
            tables.append(tid)
    return tables[1:]


def _thread_group(proc_root: str, task: int) -> Optional[int]:
    """The process (Tgid) a live task id belongs to; None when gone or unreadable."""
    status = _read_small(proc_root, task, "status", False)
    start = -1 if status is None else status.find(b"\nTgid:")
    if start < 0:
        return None
    value = status[start + 6 : status.find(b"\n", start + 6)].strip()
    return int(value) if value.isdigit() else None


def _open_fd_dir(proc_root: str, pid: int, captured: bool) -> int:
    if captured:
        return open_beneath(proc_root, (str(pid), "fd"), DIRECTORY)
    return os.open("%s/%d/fd" % (proc_root, pid), _DIR_FLAGS)


def fd_table(proc_root: str, task: int, captured: bool) -> Optional[Tuple[List[Tuple[str, str]], int]]:
    """The socket fds of PROC/task/fd and the count of unreadable ones (see _socket_fds); None when
    the task exited while listed. OSError when the table cannot be opened."""
    fd_dir = _open_fd_dir(proc_root, task, captured)
    try:
        return _socket_fds(fd_dir)
    except OSError:
        return None
    finally:
        os.close(fd_dir)


def thread_tables(proc_root: str, pid: int) -> List[Tuple[int, Tuple[List[Tuple[str, str]], int]]]:
    """(tid, (socket fds, unreadable fds)) of each thread of live process `pid` with an fd table
    of its own (see fd_table, private_tables); one that may not be opened counts one unreadable fd."""
    tables = []
    for tid in private_tables(proc_root, pid):
        try:
            private = fd_table(proc_root, tid, False)
        except OSError as exc:
            private = ([], int(exc.errno in _DENIED))
        if private is not None:
            tables.append((tid, private))
    return tables


def owner_rows_of(pid: int, name: str, uid: Optional[int], tables, captured: bool) -> Tuple[List[tuple], int]:
    """(inode, owner row) of each socket fd in the fd `tables` of process `pid` ((tid or None,
    (socket fds, denied)) each, see fd_table), in walk order, and how many fd entries of a
    captured tree were malformed (skipped)."""
    held, malformed = [], 0
    for tid, (sockets, _) in tables:
        for fd, target in sockets:
            if not captured:  # the kernel's own links: the hot path of a live snapshot
                inode, fd = int(target[_INODE_START:-1]), int(fd)
            else:
                try:
                    inode, fd = _link_inode(target), decimal(fd, INT_MAX)
                except ValueError:
                    malformed += 1
                    continue
            held.append((inode, (pid, fd, name, uid, tid)))
    return held, malformed


def scan_fds(
    proc_root: str = "/proc", pids: Optional[Iterable[int]] = None, skip: Tuple[int, ...] = (),
    captured: bool = False, threads: bool = False, context: bool = False,
) -> FdScan:
    """Walk the fd tables of `pids` (default: every process but those in `skip`) under `proc_root`.

    When `pids` is given, a pid that does not exist raises NoSuchProcess and one we may not read
    raises AccessDenied: the caller asked about that process by name.
    With `threads` (a live /proc), threads' private fd tables are walked too, and a thread id in
    `pids` stands for that thread's table (owned by its process; with the tid if private).
    `captured`: `proc_root` is a captured tree, not the kernel's (see `procsock.inputs`).
    `context`: read each process's facts (`process_facts`) too, once per process holding sockets.
    """
    targeted = pids is not None
    owners: Dict[int, list] = {}  # lists while walking: one append per holder, tuples at the end
    netns: Dict[int, int] = {}
    unreadable = []
    unreadable_names = {}
    denied_fds = 0
    scanned = 0
    malformed = 0
    facts: Optional[dict] = {} if context else None
    for asked in (pids if targeted else all_pids(proc_root)):
        if asked in skip:
            continue
        try:
            found = fd_table(proc_root, asked, captured)
        except OSError as exc:
            if exc.errno in _DENIED:
                if targeted:
                    raise AccessDenied(asked) from None
                if len(unreadable) < NAMED_UNREADABLE:
                    unreadable_names[asked] = process_name(proc_root, asked, captured)
                unreadable.append(asked)
            elif targeted:
                raise NoSuchProcess(asked) from None
            continue
        if found is None:  # the process exited while we listed its fds
            continue
        scanned += 1
        pid, tables = asked, [(None, found)]
        if threads:
            group = _thread_group(proc_root, asked) if targeted else asked
            if group is not None and group != asked:  # a thread's id: its own table, or the shared one
                pid, tables = group, [(None if same_fd_table(group, asked) is not False else asked, found)]
            else:
                tables.extend(thread_tables(proc_root, pid))
        denied_fds += sum(denied for _, (_, denied) in tables)
        if not any(sockets for _, (sockets, _) in tables):
            continue
        name, uid = process_identity(proc_root, pid, captured)
        namespace = netns_inode(proc_root, pid, captured)
        if namespace is not None:
            netns[pid] = namespace
        if facts is not None:
            facts[pid] = (name, uid) + process_facts(proc_root, pid, captured)
        held, bad = owner_rows_of(pid, name, uid, tables, captured)
        malformed += bad
        for inode, row in held:
            holders = owners.get(inode)
            if holders is None:
                owners[inode] = holders = []
            holders.append(row)
    hidden = None if targeted else hidden_processes(proc_root)
    joined = {inode: tuple(holders) for inode, holders in owners.items()}
    return FdScan(joined, scanned, tuple(unreadable), denied_fds, netns, hidden, unreadable_names, malformed, facts)


def hidden_processes(proc_root: str, mountinfo: str = "/proc/self/mountinfo") -> Optional[str]:
    """The hidepid= option of the proc mount at `proc_root` when it hides other users' processes
    from this one (hidepid=2 or invisible; not for root, nor for a member of its gid=), else None."""
    if os.geteuid() == 0:
        return None
    where = os.path.realpath(proc_root).encode()
    try:
        with open(mountinfo, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        mount, _, super_part = line.partition(b" - ")
        fields, supers = mount.split(), super_part.split()
        if len(fields) < 5 or fields[4] != where or supers[:1] != [b"proc"] or len(supers) < 3:
            continue
        options = dict(o.partition(b"=")[::2] for o in supers[2].split(b","))
        gid = options.get(b"gid", b"")
        exempt = gid.isdigit() and (int(gid) == os.getegid() or int(gid) in os.getgroups())
        if options.get(b"hidepid") in (b"2", b"invisible") and not exempt:
            return "hidepid=" + options[b"hidepid"].decode()
    return None


_LENGTH = struct.Struct("=Q")  # prefixes the walker's message: a short one is a failed walker's


@functools.lru_cache(maxsize=1)
def _pidfds_work() -> bool:
    """Whether this kernel has pidfd_open (5.3+) and waitid(P_PIDFD) (5.4+)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return hasattr(os, "P_PIDFD")


def scan_all_in_background(proc_root: str, context: bool = False) -> Callable[[], FdScan]:
    """Start the walk of every process and return a function that waits for its result (or take
    the walk `start_early_walk` began for `proc_root` moments ago).

    The walk is mostly kernel time (a readlink per fd), so on a machine with a second CPU a forked
    child does it while the caller reads the socket tables, and sends plain tuples back through a
    pipe. The child skips itself (it holds copies of our fds) and us: a process that changed its
    uid is not dumpable, so only it may read its own fd table; we walk ours when the child is
    done, and the owners are merged in pid order, as one walk lists them. Where forking is not safe
    (this process runs other threads) or not useful (one CPU), or the child fails, the walk runs
    here instead.

    Whatever the caller does with SIGCHLD (ignores it, reaps every child in a handler, raises in
    one), the result does not depend on the child's exit status: only a complete, length-prefixed
    message is used. The child is held by a pidfd taken before it may run, so it is reaped exactly
    (never another child of the caller's, even if its pid was reused) or left to whoever reaped it.
    With `context` the walk reads each process's facts too (an early walk begun without: they are
    read after it, see `with_facts`).
    """
    early = _claim_early_walk(proc_root)
    return early if early is not None else _start_walk(proc_root, context)[0]


EARLY_WALK_MAX_AGE = 2.0  # seconds: an early walk older than this is not used (the tables are read now)
_early_walk: Dict[str, tuple] = {}  # "walk": (proc_root, pid, started, result, discard)


def start_early_walk(proc_root: str) -> None:
    """Begin the background walk of every process now, for this process's next
    `scan_all_in_background(proc_root)` within EARLY_WALK_MAX_AGE seconds: the `procsock` command
    starts it before its own imports, which then overlap the walk. One never claimed is stopped
    and reaped at exit (or when a newer one starts)."""
    _discard_early_walk()
    result, discard = _start_walk(proc_root)
    _early_walk["walk"] = (proc_root, os.getpid(), time.monotonic(), result, discard)
    atexit.register(_discard_early_walk)


def _claim_early_walk(proc_root: str) -> Optional[Callable[[], FdScan]]:
    """The early walk of this process for `proc_root`, if one is fresh (taken: used once)."""
    found = _early_walk.pop("walk", None)
    if found is None:
        return None
    root, pid, started, result, discard = found
    if pid != os.getpid():  # a fork of the process that started it: not ours to read
        return None
    if root != proc_root or time.monotonic() - started > EARLY_WALK_MAX_AGE:
        discard()
        return None
    return result


def _discard_early_walk() -> None:
    found = _early_walk.pop("walk", None)
    if found is not None and found[1] == os.getpid():
        found[4]()


def _start_walk(proc_root: str, context: bool = False) -> Tuple[Callable[[], FdScan], Callable[[], None]]:
    """The walk of every process, in a forked child where that is safe and useful: a function
    waiting for its result, and one stopping it unread (see scan_all_in_background)."""
    if len(os.sched_getaffinity(0)) < 2 or len(os.listdir("/proc/self/task")) > 1 or not _pidfds_work():
        return lambda: scan_fds(proc_root, threads=True, context=context), _nothing
    parent = os.getpid()
    reader, writer = os.pipe()
    try:
        hold, release = os.pipe()  # the child waits for EOF here until we hold its pidfd
    except OSError:
        os.close(reader)
        os.close(writer)
        raise
    try:
        child = os.fork()
    except OSError:  # out of processes or memory: walk here
        for fd in (reader, writer, hold, release):
            os.close(fd)
        return lambda: scan_fds(proc_root, threads=True, context=context), _nothing
    if child == 0:  # the walker: it never returns
        try:
            os.close(reader)
            os.close(release)
            os.read(hold, 1)
            scan = scan_fds(proc_root, skip=(parent, os.getpid()), threads=True, context=context)
            plain = (scan.owner_rows, scan.processes, scan.unreadable, scan.denied_fds, scan.netns, scan.hidden,
                     scan.unreadable_names, scan.malformed, scan.facts)
            message = marshal.dumps(plain)
            with os.fdopen(writer, "wb") as out:
                out.write(_LENGTH.pack(len(message)) + message)
        finally:
            os._exit(0)
    os.close(writer)
    os.close(hold)
    try:
        pidfd: Optional[int] = os.pidfd_open(child)
    except OSError:  # killed already, and reaped by the caller: its message will be short
        pidfd = None
    os.close(release)

    def result() -> FdScan:
        complete = False
        # SIGCHLD waits until the walker is reaped: a caller's handler that raises cannot cut in
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGCHLD,))
        try:
            try:
                with os.fdopen(reader, "rb") as answer:
                    data = answer.read()
                complete = len(data) >= _LENGTH.size and _LENGTH.unpack_from(data)[0] == len(data) - _LENGTH.size
            finally:  # on every path, even when another signal's handler raised in the read
                _reap(pidfd, still_walking=not complete)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if not complete:
            return scan_fds(proc_root, threads=True, context=context)
        owners, processes, unreadable, denied_fds, netns, hidden, unreadable_names, malformed, facts = marshal.loads(
            memoryview(data)[_LENGTH.size :]
        )
        try:
            ours = scan_fds(proc_root, (parent,), threads=True, context=context)
        except ProcsockError:  # this /proc is of another pid namespace, where our pid is not ours
            ours = FdScan({}, 0, (), 0, facts={} if context else None)
        for inode, held in ours.owner_rows.items():  # the walker's holders are in pid order already
            theirs = owners.get(inode, ())
            cut = next((i for i, owner in enumerate(theirs) if owner[0] > parent), len(theirs))
            owners[inode] = theirs[:cut] + held + theirs[cut:]
        netns.update(ours.netns)
        if facts is not None and ours.facts is not None:
            facts.update(ours.facts)
        return FdScan(owners, processes + ours.processes, unreadable, denied_fds + ours.denied_fds, netns, hidden,
                      unreadable_names, malformed, facts)

    def discard() -> None:
        os.close(reader)
        _reap(pidfd, still_walking=True)

    return result, discard


def _nothing() -> None:
    """Stopping a walk that has not started."""


def _reap(pidfd: Optional[int], still_walking: bool) -> None:
    """Wait for the walker held by `pidfd` (killed first if its answer is no longer wanted) and
    close the pidfd. A walker the caller reaped already (SIGCHLD ignored, its own handler) is
    left alone."""
    if pidfd is None:
        return
    try:
        if still_walking:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except ProcessLookupError:  # exited meanwhile
                pass
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    except ChildProcessError:
        pass
    finally:
        os.close(pidfd)


def named_netns(run_dir: str = "/run/netns") -> Dict[int, str]:
    """Namespace inode → name of the namespaces `ip netns add` named (bind mounts in /run/netns)."""
    names = {}
    try:
        entries = os.listdir(run_dir)
    except OSError:
        return names
    for name in entries:
        try:
            names.setdefault(os.stat(os.path.join(run_dir, name)).st_ino, name)
        except OSError:
            continue
    return names


def netns_inode(proc_root: str, pid, captured: bool = False) -> Optional[int]:
    """The inode of the network namespace of `pid` ("self" works too); None if hidden or gone.

    Reading /proc/PID/ns/net needs ptrace rights over PID; a captured tree usually lacks it. In a
    captured tree the link is read, never followed (or stat-ed): `net:[INODE]` as the kernel wrote it.
    """
    if not captured:
        try:
            return os.stat("%s/%s/ns/net" % (proc_root, pid)).st_ino
        except OSError:
            return None
    try:
        target = readlink_beneath(proc_root, (str(pid), "ns", "net"))
    except (OSError, InputError):
        return None
    try:
        return _link_inode(target, "net:[")
    except ValueError:
        return None


def known_netns(proc_root: str) -> Dict[int, str]:
    """Every network namespace visible here, inode → its `ip netns` name or "": those of the
    processes we may look at (ours included) and those `ip netns add` named."""
    found = (netns_inode(proc_root, pid) for pid in all_pids(proc_root))
    known = {inode: "" for inode in found if inode is not None}
    known.update(named_netns())
    return known


def socket_inode(proc_root: str, pid: int, fd: int, captured: bool = False) -> int:
    """The inode of the socket at PROC/pid/fd/fd; typed errors when it is gone, hidden or no socket."""
    try:
        if captured:
            target = readlink_beneath(proc_root, (str(pid), "fd", str(fd)))
        else:
            target = os.readlink("%s/%d/fd/%d" % (proc_root, pid, fd))
    except OSError as exc:
        if exc.errno in _DENIED:
            raise AccessDenied(pid) from None
        try:
            os.close(_open_fd_dir(proc_root, pid, captured))
        except OSError:
            raise NoSuchProcess(pid) from None
        raise NoSuchProcess(pid, fd) from None
    try:
        return _link_inode(target)
    except ValueError:
        raise NotASocket(pid, fd, target) from None


def protocol_name(proc_root: str, pid: int, fd: int) -> Optional[str]:
    """The kernel's name for a live socket fd's protocol (TCP, UNIX-STREAM, AF_VSOCK, PING...),
    from its `system.sockprotoname` xattr; None when it cannot be read."""
    try:
        name = os.getxattr("%s/%d/fd/%d" % (proc_root, pid, fd), "system.sockprotoname")
    except OSError:
        return None
    return name.rstrip(b"\0").decode("ascii", "replace")

