"""Who holds which socket: a walk of PROC/PID/fd that maps socket inodes to their owners.

Reads a live /proc or a captured tree the same way (fd entries are symlinks `socket:[INODE]`).
Processes and fds that vanish mid-walk are skipped silently; processes we may not look into are
counted, so a non-root user gets its own sockets plus "N processes not readable".
"""

import errno
import marshal
import os
from itertools import starmap
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import attrs

from procsock.errors import AccessDenied, NoSuchProcess, NotASocket, ProcsockError
from procsock.model import Owner

_SOCKET_PREFIX = "socket:["
_DENIED = (errno.EACCES, errno.EPERM)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

@attrs.frozen
class FdScan:
    """The result of one walk: owners by socket inode, and what could not be read.

    `owners` maps inode → the Owners holding it, in walk order. `unreadable` lists the pids
    whose fd table we were not allowed to read; `denied_fds` counts single fds we could not read.
    `netns` maps each pid holding a socket to its network namespace inode, where readable.
    `hidden` is the hidepid= option of a /proc that hid other users' processes from the walk.
    """

    owners: Dict[int, Tuple[Owner, ...]]
    processes: int
    unreadable: Tuple[int, ...]
    denied_fds: int
    netns: Dict[int, int] = attrs.field(factory=dict)
    hidden: Optional[str] = None


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
            found.append((name, target[8:-1]))
    return found, denied


def _read_small(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(4096)
    except OSError:
        return None


def process_identity(proc_root: str, pid: int) -> Tuple[str, Optional[int]]:
    """The process's name (comm, surrogateescape-decoded) and real uid; ("", None) where unknown."""
    base = "%s/%d/" % (proc_root, pid)
    comm = _read_small(base + "comm")
    name = "" if comm is None else os.fsdecode(comm[:-1] if comm.endswith(b"\n") else comm)
    uid = None
    status = _read_small(base + "status")
    if status is not None:
        start = status.find(b"\nUid:")
        if start >= 0:
            fields = status[start + 5 : status.find(b"\n", start + 5)].split()
            if fields and fields[0].isdigit():
                uid = int(fields[0])
    return name, uid


def _all_pids(proc_root: str) -> List[int]:
    return [int(name) for name in os.listdir(proc_root) if name.isdigit()]


def scan_fds(
    proc_root: str = "/proc", pids: Optional[Iterable[int]] = None, skip: Tuple[int, ...] = (), make_owner=Owner
) -> FdScan:
    """Walk the fd tables of `pids` (default: every process but those in `skip`) under `proc_root`.

    When `pids` is given, a pid that does not exist raises NoSuchProcess and one we may not read
    raises AccessDenied: the caller asked about that process by name. `make_owner(pid, fd, name,
    uid)` builds each holder (the background walker sends plain tuples instead of Owners).
    """
    targeted = pids is not None
    owners: Dict[int, Tuple[Owner, ...]] = {}
    netns: Dict[int, int] = {}
    unreadable = []
    denied_fds = 0
    scanned = 0
    for pid in (pids if targeted else _all_pids(proc_root)):
        if pid in skip:
            continue
        try:
            fd_dir = os.open("%s/%d/fd" % (proc_root, pid), _DIR_FLAGS)
        except OSError as exc:
            if exc.errno in _DENIED:
                if targeted:
                    raise AccessDenied(pid) from None
                unreadable.append(pid)
            elif targeted:
                raise NoSuchProcess(pid) from None
            continue
        try:
            sockets, denied = _socket_fds(fd_dir)
        except OSError:  # the process exited while we listed its fds
            continue
        finally:
            os.close(fd_dir)
        scanned += 1
        denied_fds += denied
        if not sockets:
            continue
        name, uid = process_identity(proc_root, pid)
        namespace = netns_inode(proc_root, pid)
        if namespace is not None:
            netns[pid] = namespace
        for fd, inode in sockets:
            if not (inode.isdecimal() and fd.isdecimal()):
                continue  # guards against odd captured trees
            inode = int(inode)
            owner = make_owner(pid, int(fd), name, uid)
            holders = owners.get(inode)
            owners[inode] = (owner,) if holders is None else holders + (owner,)
    hidden = None if targeted else hidden_processes(proc_root)
    return FdScan(owners, scanned, tuple(unreadable), denied_fds, netns, hidden)


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


def _plain_owner(pid: int, fd: int, name: str, uid: Optional[int]) -> tuple:
    return (pid, fd, name, uid)


def scan_all_in_background(proc_root: str) -> Callable[[], FdScan]:
    """Start the walk of every process and return a function that waits for its result.

    The walk is mostly kernel time (a readlink per fd), so on a machine with a second CPU a forked
    child does it while the caller reads the socket tables, and sends plain tuples back through a
    pipe. The child skips itself (it holds copies of our fds) and us: a process that changed its
    uid is not dumpable, so only it may read its own fd table; we walk ours when the child is
    done, and the owners are merged in pid order, as one walk lists them. Where forking is not safe
    (this process runs other threads) or not useful (one CPU), or the child fails, the walk runs
    here instead.
    """
    if len(os.sched_getaffinity(0)) < 2 or len(os.listdir("/proc/self/task")) > 1:
        return lambda: scan_fds(proc_root)
    parent = os.getpid()
    reader, writer = os.pipe()
    try:
        child = os.fork()
    except OSError:  # out of processes or memory: walk here
        os.close(reader)
        os.close(writer)
        return lambda: scan_fds(proc_root)
    if child == 0:  # the walker: it never returns
        status = 1
        try:
            os.close(reader)
            scan = scan_fds(proc_root, skip=(parent, os.getpid()), make_owner=_plain_owner)
            plain = (scan.owners, scan.processes, scan.unreadable, scan.denied_fds, scan.netns, scan.hidden)
            with os.fdopen(writer, "wb") as out:
                out.write(marshal.dumps(plain))
            status = 0
        finally:
            os._exit(status)
    os.close(writer)

    def result() -> FdScan:
        with os.fdopen(reader, "rb") as answer:
            data = answer.read()
        _, status = os.waitpid(child, 0)
        if status != 0 or not data:
            return scan_fds(proc_root)
        owners, processes, unreadable, denied_fds, netns, hidden = marshal.loads(data)
        owners = {inode: tuple(starmap(Owner, held)) for inode, held in owners.items()}
        try:
            ours = scan_fds(proc_root, (parent,))
        except ProcsockError:  # this /proc is of another pid namespace, where our pid is not ours
            ours = FdScan({}, 0, (), 0)
        for inode, held in ours.owners.items():
            owners[inode] = tuple(sorted(owners.get(inode, ()) + held, key=lambda o: o.pid))
        netns.update(ours.netns)
        return FdScan(owners, processes + ours.processes, unreadable, denied_fds + ours.denied_fds, netns, hidden)

    return result


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


def netns_inode(proc_root: str, pid) -> Optional[int]:
    """The inode of the network namespace of `pid` ("self" works too); None if hidden or gone.

    Reading /proc/PID/ns/net needs ptrace rights over PID; a captured tree usually lacks it.
    """
    try:
        return os.stat("%s/%s/ns/net" % (proc_root, pid)).st_ino
    except OSError:
        return None


def known_netns(proc_root: str) -> Dict[int, str]:
    """Every network namespace visible here, inode → its `ip netns` name or "": those of the
    processes we may look at (ours included) and those `ip netns add` named."""
    found = (netns_inode(proc_root, pid) for pid in _all_pids(proc_root))
    known = {inode: "" for inode in found if inode is not None}
    known.update(named_netns())
    return known


def socket_inode(proc_root: str, pid: int, fd: int) -> int:
    """The inode of the socket at PROC/pid/fd/fd; typed errors when it is gone, hidden or no socket."""
    try:
        target = os.readlink("%s/%d/fd/%d" % (proc_root, pid, fd))
    except OSError as exc:
        if exc.errno in _DENIED:
            raise AccessDenied(pid) from None
        if os.path.isdir("%s/%d" % (proc_root, pid)):
            raise NoSuchProcess(pid, fd) from None
        raise NoSuchProcess(pid) from None
    inode = target[8:-1]
    if not (target.startswith(_SOCKET_PREFIX) and inode.isdigit()):
        raise NotASocket(pid, fd, target)
    return int(inode)


def protocol_name(proc_root: str, pid: int, fd: int) -> Optional[str]:
    """The kernel's name for a live socket fd's protocol (TCP, UNIX-STREAM, AF_VSOCK, PING...),
    from its `system.sockprotoname` xattr; None when it cannot be read."""
    try:
        name = os.getxattr("%s/%d/fd/%d" % (proc_root, pid, fd), "system.sockprotoname")
    except OSError:
        return None
    return name.rstrip(b"\0").decode("ascii", "replace")

