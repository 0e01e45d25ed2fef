"""Putting answers together: each record joined with the fds that hold its inode, one record per
inode, the namespace-contest rule, and the query's filters on records."""

from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import attrs

from procsock.fdscan import FdScan
from procsock.model import Query, Socket
from procsock.resolve.collect import Answer, Holders

NOBODY = object()  # no namespace's record of a contested inode stands


@attrs.frozen
class Joined:
    """The sockets listed, the inodes some answer `listed` (before filters), the count of records
    each namespace gave of sockets another namespace stands for (`claimed`: forged?) and the
    inodes several namespaces reported with none standing (`conflicting`)."""

    sockets: Tuple[Socket, ...]
    listed: FrozenSet[int]
    claimed: Tuple[Tuple[Optional[int], int], ...]
    conflicting: FrozenSet[int]


def standing(answers: Sequence[Answer], scan: FdScan, own: Optional[int]) -> Dict[int, object]:
    """For each inode that more than one namespace reported: the namespace whose record stands.

    A namespace may report only the sockets its own processes hold, or that no other namespace
    reported (a socket created in B and passed to a process in A is reported by B alone). When
    the holders' namespaces do not single out one reporter, none stands (NOBODY). Inode-0 rows
    (TIME_WAIT ...) are per namespace and never contested. `own` is our namespace's inode.
    """
    first: Dict[int, Optional[int]] = {}  # inode → the first namespace that reported it
    contested: Dict[int, set] = {}
    for answer in answers:
        wanted = answer.inodes
        for record in answer.collected.records:
            inode = record.inode
            if inode and (wanted is None or inode in wanted):
                reporter = first.setdefault(inode, record.netns)
                if reporter != record.netns:
                    contested.setdefault(inode, {reporter}).add(record.netns)
    stands: Dict[int, object] = {}
    for inode, namespaces in contested.items():
        holding = {scan.netns.get(o.pid, own) for o in scan.owners.get(inode, ())} & namespaces
        stands[inode] = holding.pop() if len(holding) == 1 else NOBODY
    return stands


def join(answers: Sequence[Answer], owners: Holders, query: Query, stands: Dict[int, object]) -> Joined:
    """The sockets of the answers that were read, each with its holders and its peer's."""
    sockets: List[Socket] = []
    seen = set()
    claimed: Dict[Optional[int], int] = {}  # namespace → records of sockets another one stands for
    conflicting = set()
    filtering = query.filters_records
    for answer in answers:
        wanted = answer.inodes
        for record in answer.collected.records:
            inode = record.inode
            if inode:
                if wanted is not None and inode not in wanted:
                    continue
                stand = stands.get(inode, record.netns)
                if stand != record.netns:
                    if stand is NOBODY:
                        conflicting.add(inode)
                    else:
                        claimed[record.netns] = claimed.get(record.netns, 0) + 1
                    continue
                if inode in seen:
                    continue
                seen.add(inode)
            elif wanted is not None:
                continue
            if filtering and not query.wants(record):
                continue
            peer = record.peer_inode
            sockets.append(
                Socket(record, owners.get(inode, ()) if inode else (), owners.get(peer, ()) if peer else ())
            )
    order = sorted(claimed.items(), key=lambda item: (item[0] is None, item[0] or 0))
    return Joined(tuple(sockets), frozenset(seen), tuple(order), frozenset(conflicting))
