"""Backend diff: two backends' views of the same moment, socket by socket and field by field.

Meant for audits and for users' tests. Fields are compared only where both backends can carry them
(neither reports None). Differences with a known cause are kept but explained, so that `agree` means
"no difference this comparison cannot account for".
"""

from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import attrs

from procsock.backends import Backend, Registry
from procsock.errors import BackendUnavailable, ProcsockError
from procsock.model import SocketKind, SocketRecord, Source, State, UnixAddress
from procsock.fdscan import scan_fds
from procsock.resolver import Query, Resolver, deferred_reasons

COMPARED_FIELDS = (
    "type", "protocol", "state", "local", "remote", "rx_queue", "tx_queue",
    "uid", "peer_inode", "netns", "interface", "cookie",
)


@attrs.frozen
class FieldDiff:
    """One field of one socket on which the two backends disagree; `explained` says why if known."""

    kind: str
    inode: int
    field: str
    a: object
    b: object
    explained: Optional[str] = None


@attrs.frozen
class Comparison:
    """The result of comparing backend `a` with backend `b` over `kinds`."""

    a: str
    b: str
    kinds: Tuple[str, ...]
    only_a: Tuple[SocketRecord, ...]
    only_b: Tuple[SocketRecord, ...]
    differences: Tuple[FieldDiff, ...]
    not_compared: Tuple[str, ...] = ()
    explained_only: Tuple[Tuple[SocketRecord, str], ...] = ()  # (record of only_a/only_b, known cause)

    @property
    def unexplained(self) -> Tuple[FieldDiff, ...]:
        return tuple(d for d in self.differences if d.explained is None)

    @property
    def unexplained_only(self) -> Tuple[SocketRecord, ...]:
        """The sockets only one backend saw, for no known cause."""
        known = {record for record, _ in self.explained_only}
        return tuple(r for r in self.only_a + self.only_b if r not in known)

    @property
    def agree(self) -> bool:
        """True when every socket only one backend saw and every field difference has a known cause."""
        return not (self.unexplained_only or self.unexplained)


def _explain(field: str, a: SocketRecord, b: SocketRecord) -> Optional[str]:
    """The known reason two faithful backends report a field differently, or None."""
    if field == "local" and isinstance(a.local, UnixAddress) and isinstance(b.local, UnixAddress):
        if b"\0" in a.local.name[1:] or b"\0" in b.local.name[1:]:
            return "/proc/net/unix prints the NUL bytes of an abstract name as '@'"
        if a.local.name[:1] == b"@" or b.local.name[:1] == b"@":
            return "/proc/net/unix shows abstract names with '@', the same as a path starting with '@'"
    if field == "tx_queue" and a.state is State.LISTEN:
        return "for listeners inet_diag reports the backlog limit as Send-Q, /proc/net reports 0"
    if field in ("rx_queue", "tx_queue"):
        return "queues move with traffic between the two reads"
    return None


def _explain_only(record: SocketRecord, deferred: Dict[int, str]) -> Optional[str]:
    """The known reason only one of two faithful backends lists a socket, or None."""
    if record.inode in deferred:
        return deferred[record.inode]
    if record.state is State.BOUND_INACTIVE:
        return "bound-inactive: only sock_diag (Linux >= 6.5) lists TCP sockets bound, not listening or connected"
    return None


def _key(record: SocketRecord):
    """Records match by inode; inode-0 rows (TIME_WAIT...) by their endpoints and state."""
    if record.inode:
        return record.inode
    return (record.state, record.local, record.remote)


def compare_records(
    kind: SocketKind, a: Sequence[SocketRecord], b: Sequence[SocketRecord]
) -> Tuple[List[SocketRecord], List[SocketRecord], List[FieldDiff]]:
    """Match two backends' records of one kind; (only in a, only in b, field differences)."""
    by_key: Dict[object, List[SocketRecord]] = defaultdict(list)
    for record in b:
        by_key[_key(record)].append(record)
    only_a, diffs = [], []
    for left in a:
        candidates = by_key.get(_key(left))
        if not candidates:
            only_a.append(left)
            continue
        right = candidates.pop()
        for field in COMPARED_FIELDS:
            x, y = getattr(left, field), getattr(right, field)
            if x is not None and y is not None and x != y:
                diffs.append(FieldDiff(kind.name, left.inode, field, x, y, _explain(field, left, right)))
    only_b = [r for rest in by_key.values() for r in rest]
    return only_a, only_b, diffs


def _held(records: Tuple[SocketRecord, ...], inodes: Optional[frozenset]) -> Tuple[SocketRecord, ...]:
    return records if inodes is None else tuple(r for r in records if r.inode in inodes)


def _backend(resolver: Resolver, name: Optional[str], skip: Optional[str]) -> Backend:
    for backend in resolver.usable_backends():
        if (name is None and backend.name != skip and not backend.info.lookup_only) or backend.name == name:
            return backend
    if name is not None and name not in resolver.registry.by_name():
        installed = ", ".join(b.name for b in resolver.registry.backends) or "none"
        raise BackendUnavailable(name, "no such backend (installed: %s)" % installed)
    raise BackendUnavailable(name or "second", "not usable here for this source")


def compare_backends(
    registry: Registry,
    source: Source,
    a: Optional[str] = None,
    b: Optional[str] = None,
    query: Query = Query(),
) -> Comparison:
    """Compare backends `a` and `b` (default: the two highest-priority usable ones).

    For each kind both serve, the two are read back to back so they see nearly the same moment.
    With ``query.pid`` only the sockets that process holds are compared (asked for by inode), so
    a busy host's churn elsewhere cannot make the two disagree.
    """
    resolver = Resolver(registry, source)
    inodes, holders = None, {}
    if query.pid is not None and source.proc_root is not None:
        holders = scan_fds(source.proc_root, (query.pid,)).owners  # pidfd reads through them
        inodes = frozenset(holders)
    first = _backend(resolver, a, None)
    second = _backend(resolver, b, first.name)
    kinds = [k for k in resolver.kinds(query) if k in first.info.kinds and k in second.info.kinds]
    only_a: List[SocketRecord] = []
    only_b: List[SocketRecord] = []
    diffs: List[FieldDiff] = []
    not_compared: List[str] = []
    compared: List[str] = []
    deferred: Dict[int, str] = {}  # inode → which backend deferred it, and what it said the socket is
    for kind in kinds:
        try:
            answers = [(b.name, b.collect(kind, source, inodes, holders=holders)) for b in (first, second)]
        except ProcsockError as exc:  # one side cannot read this kind here: say so, go on
            not_compared.append("%s: %s" % (kind.name, exc))
            continue
        for name, collected in answers:
            for inode, why in deferred_reasons(collected).items():
                deferred[inode] = "%s deferred it: %s" % (name, why)
        compared.append(kind.name)
        x, y, d = compare_records(kind, _held(answers[0][1].records, inodes), _held(answers[1][1].records, inodes))
        only_a += x
        only_b += y
        diffs += d
    explained_only = tuple(
        (record, why) for record in only_a + only_b for why in (_explain_only(record, deferred),) if why
    )
    return Comparison(
        first.name, second.name, tuple(compared), tuple(only_a), tuple(only_b), tuple(diffs), tuple(not_compared),
        explained_only,
    )
