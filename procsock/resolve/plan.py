"""What to read where: the kinds a query asks for, the namespaces whose tables to read, and the
kind of one live fd (its protocol xattr), which spares a lookup every other table."""

from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

from procsock.backends import Backend, kinds_of
from procsock.fdscan import FdScan, protocol_name
from procsock.model import OWNER_PID, Netns, Query, SocketKind

Plan = Tuple[Netns, Optional[FrozenSet[int]]]  # a namespace, and the inodes wanted there (None: all)


def label(kind: SocketKind, netns: Netns) -> str:
    """How notes name a kind read in a namespace: "tcp", or "tcp (netns INODE)" for another one."""
    return kind.name if netns.pid is None else "%s (netns %s)" % (kind.name, netns.inode)


def served_kinds(backends: Sequence[Backend], query: Query) -> Tuple[SocketKind, ...]:
    """The kinds the query asks for that one of `backends` serves, in backend order."""
    return tuple(kind for kind in kinds_of(backends) if query.wants_kind(kind))


def kinds_by_kernel_name(backends: Iterable[Backend]) -> Dict[str, SocketKind]:
    """The kernel's protocol names (TCP, UDPv6...) of the kinds `backends` serve."""
    return {name: kind for b in backends for kind in b.info.kinds for name in kind.kernel_names}


def kind_hint(by_name: Dict[str, SocketKind], proc_root: str, task: int, fd: int) -> Optional[SocketKind]:
    """The served kind of a live socket fd (task: a process or thread id); None when unknown."""
    return by_name.get(protocol_name(proc_root, task, fd))


def hinted(kinds: Tuple[SocketKind, ...], hints: Set[Optional[SocketKind]]) -> Tuple[SocketKind, ...]:
    """Only the kinds some fd is, when every fd said what it is (`hints` holds no None)."""
    if None in hints:
        return kinds
    return tuple(kind for kind in kinds if kind in hints)


def namespace_plans(own: Netns, scan: FdScan, inodes: Optional[FrozenSet[int]]) -> List[Plan]:
    """(namespace, inodes wanted there) to read: ours, then each other network namespace whose
    processes hold sockets, reached through one of those processes (live host only)."""
    elsewhere: Dict[int, Tuple[int, set]] = {}
    if own.inode is not None and any(namespace != own.inode for namespace in scan.netns.values()):
        for inode, holders in scan.owner_rows.items():
            for owner in holders:
                pid = owner[OWNER_PID]
                namespace = scan.netns.get(pid, own.inode)
                if namespace != own.inode:
                    elsewhere.setdefault(namespace, (pid, set()))[1].add(inode)
    plans = []
    foreign = set().union(*(held for _, held in elsewhere.values()))
    own_wanted = None if inodes is None else inodes - foreign
    if own_wanted is None or own_wanted:  # a pid holding no socket costs no table at all
        plans.append((own, own_wanted))
    for namespace, (pid, held) in sorted(elsewhere.items()):
        wanted = None if inodes is None else frozenset(held & inodes)
        if wanted is None or wanted:
            plans.append((Netns(namespace, pid), wanted))
    return plans
