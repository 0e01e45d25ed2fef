"""Putting answers together: each row joined with the fds that hold its inode, one row per
inode, the namespace-contest rule, and the query's filters on rows. Rows in, rows out: the
Socket objects are built only if a caller reads `Snapshot.sockets`."""

from typing import AbstractSet, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import attrs

from procsock.fdscan import FdScan
from procsock.model import NO_CONTEXTS, OWNER_PID, Contexts, Query, Row, SocketKind
from procsock.resolve.collect import Answer

Entry = Tuple[tuple, Tuple[tuple, ...], Tuple[tuple, ...]]  # a row, its owner rows, its peer's owner rows

NOBODY = object()  # no namespace's record of a contested inode stands


@attrs.frozen
class Joined:
    """The sockets listed (`entries`, as `Sockets` takes them), the inodes some answer `listed`
    (before filters), the count of records each namespace gave of sockets another namespace
    stands for (`claimed`: forged?) and the
    inodes several namespaces reported with none standing (`conflicting`)."""

    entries: Tuple[Entry, ...]
    listed: AbstractSet[int]
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
            inode = record[INODE]
            if inode and (wanted is None or inode in wanted):
                netns = record[NETNS]
                reporter = first.setdefault(inode, netns)
                if reporter != netns:
                    contested.setdefault(inode, {reporter}).add(netns)
    stands: Dict[int, object] = {}
    for inode, namespaces in contested.items():
        holding = {scan.netns.get(o[OWNER_PID], own) for o in scan.owner_rows.get(inode, ())} & namespaces
        stands[inode] = holding.pop() if len(holding) == 1 else NOBODY
    return stands


def join(answers: Sequence[Answer], owners: Dict[int, Tuple[tuple, ...]], query: Query,
         stands: Dict[int, object], kind_of: Callable[[int], Optional[SocketKind]] = lambda inode: None,
         contexts: Contexts = NO_CONTEXTS) -> Joined:
    """The rows of the answers that were read, each with its owner rows and its peer's (filters
    that read the owners' context find it in `contexts`). An inode two kinds report (in one
    namespace) is listed once, as `one_of` decides with `kind_of`."""
    entries: List[Entry] = []
    seen: Dict[int, tuple] = {}  # inode → the row that stands for it so far
    twice: Dict[int, List[tuple]] = {}  # inode → every row of it, when several kinds reported it
    claimed: Dict[Optional[int], int] = {}  # namespace → records of sockets another one stands for
    conflicting = set()
    filtering = query.filters_records
    nobody = ()
    for answer in answers:
        wanted = answer.inodes
        for record in answer.collected.records:
            inode = record[INODE]
            if inode:
                if wanted is not None and inode not in wanted:
                    continue
                if stands:
                    netns = record[NETNS]
                    stand = stands.get(inode, netns)
                    if stand != netns:
                        if stand is NOBODY:
                            conflicting.add(inode)
                        else:
                            claimed[netns] = claimed.get(netns, 0) + 1
                        continue
                first = seen.get(inode)
                if first is not None:
                    if first[KIND] != record[KIND]:
                        twice.setdefault(inode, [first]).append(record)
                    continue
                seen[inode] = record
            elif wanted is not None:
                continue
            held = owners.get(inode, nobody) if inode else nobody
            if filtering and not query.wants_row(record, held, contexts):
                continue
            peer = record[PEER_INODE]
            entries.append((record, held, owners.get(peer, nobody) if peer else nobody))
    # rare: MPTCP and its TCP subflow, a plugin's kind over a built-in (positions found only then)
    at = {entry[0][INODE]: i for i, entry in enumerate(entries) if entry[0][INODE] in twice} if twice else {}
    for inode, rows in twice.items():
        chosen = one_of(rows, kind_of(inode))
        if chosen is rows[0]:
            continue
        keep = not filtering or query.wants_row(chosen, owners.get(inode, nobody), contexts)
        peer = chosen[PEER_INODE]
        entry = (chosen, owners.get(inode, nobody), owners.get(peer, nobody) if peer else nobody)
        if inode in at:
            entries[at[inode]] = entry if keep else None
        elif keep:
            entries.append(entry)
    if twice:
        entries = [entry for entry in entries if entry is not None]
    order = sorted(claimed.items(), key=lambda item: (item[0] is None, item[0] or 0))
    return Joined(tuple(entries), seen.keys(), tuple(order), frozenset(conflicting))


def one_of(rows: Sequence[tuple], hinted: Optional[SocketKind]) -> tuple:
    """Which of the rows several kinds gave for one inode stands: the one of the kind its fd says
    it is (`hinted`, from a holder's protocol xattr on the live host), else the one of a kind that
    supersedes every other kind there, else the first (backend priority order)."""
    if hinted is not None:
        for row in rows:
            if row[KIND] == hinted:
                return row
    names = {row[KIND].name for row in rows}
    for row in rows:
        if names - {row[KIND].name} <= set(row[KIND].supersedes):
            return row
    return rows[0]


KIND, INODE, NETNS, PEER_INODE = Row.KIND, Row.INODE, Row.NETNS, Row.PEER_INODE
