"""The socket-leak check behind ``--procsock-leaks``: cheap when nothing leaked, sure before it reports.

A clean test costs two walks of this process's fd table (about 0.05 ms each). Only when a socket
appears that was not held at the baseline does the check collect garbage (a socket only a
reference cycle kept is closed then, not leaked), look again, ask a backend what the survivors
are (for ignore rules and the report) and poll until each is gone or a grace period ends (a
connection a server thread is still closing, CLOSE-WAIT, is not a leak). Importing this module does
not import pytest.
"""

import gc
import os
import stat
import time
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

import attrs

from procsock.api import snapshot
from procsock.errors import ProcsockError
from procsock.fdscan import scan_fds
from procsock.model import Family, Socket
from procsock.render import table_lines
from procsock.text import escape_text

_LINGERING: Set[int] = set()  # inodes of sockets declared session-lived


def allow_lingering(sock):
    """Declare `sock` (a socket object, or an fd) session-lived: the leak check never reports it,
    whichever test opens it (a metrics UDP client, ``SysLogHandler``'s socket). Returns `sock`."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    info = os.fstat(fd)
    if not stat.S_ISSOCK(info.st_mode):
        raise ValueError("allow_lingering: fd %d is not a socket" % fd)
    _LINGERING.add(info.st_ino)
    return sock


@attrs.frozen
class LeakPolicy:
    """How one test is checked: when the baseline is taken, whose sockets count, how long a socket
    may take to close, and which leaked sockets are ignored."""

    before_setup: bool = False
    children: bool = False
    grace: float = 0.5
    ignore_ports: FrozenSet[int] = frozenset()
    ignore_kinds: FrozenSet[str] = frozenset()
    ignore: Optional[Callable[[Socket], bool]] = None

    def ignores(self, sock: Socket) -> bool:
        record = sock.record
        ports = {getattr(end, "port", None) for end in (record.local, record.remote)} - {None, 0}
        return (
            record.kind.name in self.ignore_kinds
            or bool(ports & self.ignore_ports)
            or (self.ignore is not None and bool(self.ignore(sock)))
        )


def descendants(pid: int) -> Tuple[int, ...]:
    """Every live descendant of `pid`: from the kernel's per-thread child lists, or, on a kernel
    without them (CONFIG_PROC_CHILDREN), from every process's parent in /proc/PID/stat."""
    if not os.path.exists("/proc/%d/task/%d/children" % (pid, pid)):
        return _descendants_by_parent(pid)
    found: List[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % parent)
        except OSError:  # exited meanwhile
            continue
        for tid in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (parent, tid), "rb") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return tuple(found)


def _descendants_by_parent(pid: int) -> Tuple[int, ...]:
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                after_name = f.read().rpartition(b")")[2].split()  # the name may hold ") "
            children.setdefault(int(after_name[1]), []).append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    found: List[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return tuple(found)


def held(children: bool = False) -> Dict[int, Tuple]:
    """Socket inode -> holders, of this process (and its descendants, with `children`)."""
    pids = (os.getpid(),) + (descendants(os.getpid()) if children else ())
    owners: Dict[int, Tuple] = {}
    for pid in pids:
        try:
            found = scan_fds("/proc", (pid,)).owners
        except ProcsockError:  # a child that exited or that we may not read holds nothing we can see
            continue
        for inode, holders in found.items():
            owners[inode] = owners.get(inode, ()) + tuple(holders)
    return owners


def baseline(policy: LeakPolicy) -> FrozenSet[int]:
    """The sockets held now: the ones a test may leave open."""
    return frozenset(held(policy.children))


def find_leaks(before: FrozenSet[int], policy: LeakPolicy) -> Optional[str]:
    """The report for sockets held now that were not held at `before`, after confirming each (a
    garbage collection, a second look, the ignore rules, the grace period); None when none is left."""
    new = _new(before, policy)
    if not new:
        return None
    gc.collect()
    new = _new(before, policy) & new
    if not new:
        return None
    sockets, unknown = _resolve(new, policy)
    new = {s.record.inode for s in sockets if not policy.ignores(s)} | unknown
    deadline = time.monotonic() + policy.grace
    delay = 0.001
    while True:
        new &= _new(before, policy)
        remaining = deadline - time.monotonic()
        if not new or remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
    if not new:
        return None
    return describe([s for s in sockets if s.record.inode in new], new - {s.record.inode for s in sockets})


def _new(before: FrozenSet[int], policy: LeakPolicy) -> Set[int]:
    return set(held(policy.children)) - before - _LINGERING


def _resolve(inodes: Set[int], policy: LeakPolicy) -> Tuple[List[Socket], Set[int]]:
    """The sockets for these inodes, from each process holding one, and the inodes none resolved."""
    pids = sorted(
        {owner.pid for inode, holders in held(policy.children).items() if inode in inodes for owner in holders}
    )
    found: Dict[int, Socket] = {}
    for pid in pids:
        try:
            snap = snapshot(pid=pid)
        except ProcsockError:  # exited meanwhile
            continue
        found.update((s.record.inode, s) for s in snap.sockets if s.record.inode in inodes)
    return list(found.values()), set(inodes) - set(found)


def describe(sockets: Iterable[Socket], unknown: Iterable[int]) -> str:
    """The leak report: a table of the sockets, the two ends of a socketpair on one line each with
    a hint, and the inodes no backend reported."""
    sockets, unknown = list(sockets), sorted(unknown)
    by_inode = {s.record.inode: s for s in sockets}
    pairs = [
        (s, by_inode[s.record.peer_inode]) for s in sockets
        if _unnamed_unix(s) and s.record.peer_inode in by_inode and _unnamed_unix(by_inode[s.record.peer_inode])
        and s.record.inode < s.record.peer_inode
    ]
    paired = {s.record.inode for pair in pairs for s in pair}
    rest = [s for s in sockets if s.record.inode not in paired]
    lines = ["test left %d socket(s) open that it did not have at its start:" % (len(sockets) + len(unknown))]
    lines += list(table_lines(rest)) if rest else []
    for a, b in pairs:
        lines.append("%s socketpair: socket:[%d] held by %s <-> socket:[%d] held by %s"
                     % (a.record.netid, a.record.inode, _holders(a), b.record.inode, _holders(b)))
    if pairs:
        lines.append("hint: a socketpair both ends of which are left open is often an event loop "
                     "never closed (unclosed event loop? call loop.close(), or use asyncio.run)")
    lines += ["socket:[%d] (no backend reported it)" % inode for inode in unknown]
    return "\n".join(lines)


def _unnamed_unix(sock: Socket) -> bool:
    return sock.record.kind.family is Family.UNIX and not getattr(sock.record.local, "name", b"")


def _holders(sock: Socket) -> str:
    return ", ".join("%s pid %d fd %d" % (escape_text(o.name), o.pid, o.fd) for o in sock.owners) or "no process"

