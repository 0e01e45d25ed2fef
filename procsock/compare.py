"""Backend diff: two backends' views of the same moment, socket by socket and field by field.

Meant for audits and for users' tests. Fields are compared only where both backends can carry them
(neither reports None). Differences with a known cause are kept but explained, so that `agree` means
"no difference this comparison cannot account for".
"""

import os
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import attrs

from procsock.api import check_backend
from procsock.backends import Backend, Registry
from procsock.capture import DIAG, PROC, bundle_namespaces, unpacked
from procsock.errors import BackendUnavailable, BadArgument, NothingCompared, ProcsockError
from procsock.fdscan import scan_fds
from procsock.model import DEFAULT_MAX_INPUT_BYTES, Netns, NetlinkAddress, SocketKind, SocketRecord, Source
from procsock.resolve.plan import served_kinds
from procsock.resolver import Query, Resolver, ask, deferred_reasons
from procsock.scope import scope

NETLINK_SOCK_DIAG = 4  # the netlink protocol of sock_diag queries (linux/netlink.h)

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
    """The result of comparing backend `a` with backend `b` over `kinds`: one pair of ``Comparisons``."""

    a: str
    b: str
    kinds: Tuple[str, ...]
    only_a: Tuple[SocketRecord, ...]
    only_b: Tuple[SocketRecord, ...]
    differences: Tuple[FieldDiff, ...]
    not_compared: Tuple[str, ...] = ()
    compared: int = 0  # sockets compared: those both saw, and those only one saw
    explained_only: Tuple[Tuple[SocketRecord, str], ...] = ()  # (record of only_a/only_b, known cause)
    a_read: str = ""  # what a read of a bundle (its "sock_diag" or its "proc/" tree); "" for the one source
    b_read: str = ""

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


@attrs.frozen
class Comparisons:
    """What ``compare_backends`` found: one Comparison per pair of backends compared (the two
    named, or per kind the best two here), in the order of their first kind, and why the kinds
    no pair compared were not compared (`unpaired`: one backend alone reads them here, or a
    pair saw no socket of them).

    It reads like one Comparison: `kinds`, `only_a`, `only_b`, `differences`, `explained_only`,
    `unexplained`, `unexplained_only` and `compared` gather every pair's, `not_compared` adds
    the unpaired reasons, and `a`/`b` name the backends of the one pair (None when there are
    several: each record's ``backend`` and each pair's names tell them apart). `agree` is true
    when every pair agrees; there is always at least one pair (else NothingCompared).
    """

    pairs: Tuple[Comparison, ...]
    unpaired: Tuple[str, ...] = ()

    def _gathered(self, field: str) -> tuple:
        return tuple(item for pair in self.pairs for item in getattr(pair, field))

    @property
    def a(self) -> Optional[str]:
        return self.pairs[0].a if len(self.pairs) == 1 else None

    @property
    def b(self) -> Optional[str]:
        return self.pairs[0].b if len(self.pairs) == 1 else None

    @property
    def a_read(self) -> Optional[str]:
        return self.pairs[0].a_read if len(self.pairs) == 1 else None

    @property
    def b_read(self) -> Optional[str]:
        return self.pairs[0].b_read if len(self.pairs) == 1 else None

    @property
    def kinds(self) -> Tuple[str, ...]:
        return self._gathered("kinds")

    @property
    def only_a(self) -> Tuple[SocketRecord, ...]:
        return self._gathered("only_a")

    @property
    def only_b(self) -> Tuple[SocketRecord, ...]:
        return self._gathered("only_b")

    @property
    def differences(self) -> Tuple[FieldDiff, ...]:
        return self._gathered("differences")

    @property
    def explained_only(self) -> Tuple[Tuple[SocketRecord, str], ...]:
        return self._gathered("explained_only")

    @property
    def unexplained(self) -> Tuple[FieldDiff, ...]:
        return self._gathered("unexplained")

    @property
    def unexplained_only(self) -> Tuple[SocketRecord, ...]:
        return self._gathered("unexplained_only")

    @property
    def not_compared(self) -> Tuple[str, ...]:
        return self._gathered("not_compared") + self.unpaired

    @property
    def compared(self) -> int:
        return sum(pair.compared for pair in self.pairs)

    @property
    def agree(self) -> bool:
        return all(pair.agree for pair in self.pairs)


# Why two backends report one field of one socket differently: (field, a's record, b's record) → reason or None.
Explain = Callable[[str, SocketRecord, SocketRecord], Optional[str]]


def _moved(field: str, a: SocketRecord, b: SocketRecord) -> Optional[str]:
    """The cause no backend owns: queues are read at two moments."""
    if field in ("rx_queue", "tx_queue"):
        return "queues move with traffic between the two reads"
    return None


def _explainer(first: Backend, second: Backend) -> Explain:
    """Ask each backend for a known cause of its own (procsock_explain_difference), then the core."""

    def explain(field: str, a: SocketRecord, b: SocketRecord) -> Optional[str]:
        return first.explain_difference(field, a, b) or second.explain_difference(field, b, a) or _moved(field, a, b)

    return explain


def _explain_only(record: SocketRecord, saw: Backend, missed: Backend, deferred: Dict[int, str],
                  read: str = "") -> Optional[str]:
    """The known reason only `saw` (reading the part `read` of a bundle, if one) of two faithful
    backends lists a socket, or None."""
    if record.inode in deferred:
        return deferred[record.inode]
    if read == DIAG and isinstance(record.local, NetlinkAddress) and record.local.protocol == NETLINK_SOCK_DIAG:
        return ("a sock_diag query socket only in the bundle's sock_diag: the capture's own dump sockets "
                "close before it reads proc/")
    return saw.explain_difference(None, record, None) or missed.explain_difference(None, None, record)


def _key(record: SocketRecord):
    """Records match by inode; inode-0 rows (TIME_WAIT...) by their endpoints and state."""
    if record.inode:
        return record.inode
    return (record.state, record.local, record.remote)


def compare_records(
    kind: SocketKind, a: Sequence[SocketRecord], b: Sequence[SocketRecord], explain: Explain = _moved
) -> Tuple[List[SocketRecord], List[SocketRecord], List[FieldDiff]]:
    """Match two backends' records of one kind; (only in a, only in b, field differences), each
    difference with `explain`'s reason (default: only the causes no backend owns)."""
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
                diffs.append(FieldDiff(kind.name, left.inode, field, x, y, explain(field, left, right)))
    only_b = [r for rest in by_key.values() for r in rest]
    return only_a, only_b, diffs


def _held(records: Tuple[SocketRecord, ...], inodes: Optional[frozenset]) -> Tuple[SocketRecord, ...]:
    return records if inodes is None else tuple(r for r in records if r.inode in inodes)


class _Reading:
    """The sources one comparison reads (part name, Source): the one source asked for, or a
    bundle's `sock_diag` and `proc/` tree; each backend reads the first of them it can."""

    def __init__(self, registry: Registry, sources: Sequence[Tuple[str, Source]]) -> None:
        self.registry = registry
        self.resolvers = [(part, Resolver(registry, source)) for part, source in sources]
        usable = {b for _, resolver in self.resolvers for b in resolver.usable_backends()}
        self.usable = tuple(b for b in registry.backends if b in usable)

    @property
    def first(self) -> Resolver:
        return self.resolvers[0][1]

    def usable_backends(self) -> Tuple[Backend, ...]:
        """The backends that can read one of the sources, highest priority first."""
        return self.usable

    def kinds(self, query: Query) -> Tuple[SocketKind, ...]:
        return served_kinds(self.usable, query)

    def source(self, backend: Backend) -> Tuple[str, Source]:
        """(part, source) `backend` reads: the first it can."""
        return next((part, r.source) for part, r in self.resolvers if backend in r.usable_backends())

    def unavailable(self, backend: Backend) -> str:
        """Why `backend` can read none of the sources."""
        reasons = (backend.unavailable(resolver.source) for _, resolver in self.resolvers)
        return "; ".join(dict.fromkeys(reason for reason in reasons if reason)) or "not usable here"


def _named(reading: _Reading, name: str) -> Backend:
    """The backend called `name` if it can read a source of the comparison; BackendUnavailable why not."""
    backend = reading.registry.backend(name)
    if backend not in reading.usable_backends():
        raise BackendUnavailable(name, reading.unavailable(backend))
    return backend


def _no_partner(reading: _Reading, alone: Backend, kinds: Sequence[SocketKind]) -> str:
    """Why no other backend here can be compared with `alone` on `kinds` (one line)."""
    usable = set(reading.usable_backends())
    why = []
    for backend in reading.registry.backends:
        if backend.name == alone.name:
            continue
        if backend not in usable:
            why.append("%s: %s" % (backend.name, reading.unavailable(backend)))
        elif backend.info.lookup_only:
            why.append("%s: answers lookups only, name it to compare it on a pid" % backend.name)
        else:
            why.append("%s: serves none of these kinds" % backend.name)
    return "no backend here to compare %s with on %s (%s)" % (
        alone.name, ",".join(k.name for k in kinds) or "no kind", "; ".join(why) or "no other backend"
    )


Pairs = Dict[Tuple[Backend, Backend], List[SocketKind]]


def _pairs(reading: _Reading, kinds: Sequence[SocketKind], first: Optional[Backend],
           second: Optional[Backend]) -> Tuple[Pairs, List[str]]:
    """Which two backends compare each kind: the two named; else, per kind, the named one (if
    any) and the best usable backend reading whole tables of it. Returns the pairs with their
    kinds, and why the kinds no pair serves are not compared."""
    if first is not None and second is not None:
        common = [k for k in kinds if k in first.info.kinds and k in second.info.kinds]
        if not common:
            raise NothingCompared("%s and %s serve no common kind here (for this query)" % (first.name, second.name))
        return {(first, second): common}, []
    fixed = first or second
    whole = [b for b in reading.usable_backends() if not b.info.lookup_only and b is not fixed]
    pairs: Pairs = {}
    alone: Dict[Backend, List[SocketKind]] = {}
    for kind in kinds:
        if fixed is not None and kind not in fixed.info.kinds:
            continue
        serving = [b for b in whole if kind in b.info.kinds]
        if fixed is None and len(serving) > 1:
            pairs.setdefault((serving[0], serving[1]), []).append(kind)
        elif fixed is not None and serving:
            pairs.setdefault((fixed, serving[0]) if first is not None else (serving[0], fixed), []).append(kind)
        else:  # alone: the named one, the one reading whole tables, or else a lookup-only one
            usable = [b for b in reading.usable_backends() if kind in b.info.kinds]
            sole = fixed or next(iter(serving), None) or usable[0]
            alone.setdefault(sole, []).append(kind)
    return pairs, [_no_partner(reading, backend, kinds_alone) for backend, kinds_alone in alone.items()]


@scope()  # one operation: the backends' per-namespace resources serve every kind, then close
def compare_backends(
    registry: Registry,
    source: Optional[Source] = None,
    a: Optional[str] = None,
    b: Optional[str] = None,
    query: Query = Query(),
    bundle: Optional[str] = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> "Comparisons":
    """Compare backends `a` and `b` reading `source` (default: this host), or the raw parts of
    the capture `bundle` (procsock.capture): one Comparison of the two named; else, for each
    kind asked for, the named one (if any) and the best other usable backend reading whole
    tables of it, or the best two, so that kinds served by different backends (a plugin's own)
    give several pairs.

    For each kind of a pair, the two are read back to back so they see nearly the same moment.
    With ``query.pid`` only the sockets those processes hold are compared, asked for by inode
    with their holders in each one's network namespace as the resolver asks (so lookup-only
    backends such as pidfd can be compared, and a busy host's churn elsewhere cannot make the
    two disagree). A kind no pair could compare is listed in ``not_compared`` with the reason
    (one backend alone serves it, one side failed, neither saw a socket of it). A comparison
    that compares nothing at all raises NothingCompared: a check that cannot fail is no check.

    A bundle (at most `max_input_bytes` unpacked) is extracted into a temporary directory,
    removed afterwards: each backend reads the part it can, its `sock_diag` (netlink) or else
    its `proc/` tree (procnet), namespace by namespace as the tree has tables of them, and
    each pair's `a_read`/`b_read` name the parts. A hostile bundle is refused (InputError) as
    ``--from`` refuses it.
    """
    if bundle is None:
        return _compare(_Reading(registry, [("", source or Source.live())]), a, b, query)
    if source is not None:
        raise BadArgument("bundle", "a bundle is the source: give no source with it")
    with unpacked(bundle, max_input_bytes) as directory:
        proc_root, diag_file = os.path.join(directory, PROC), os.path.join(directory, DIAG)
        sources = [(DIAG, Source(proc_root, False, diag_file, max_input_bytes)),
                   (PROC + "/", Source(proc_root, False, None, max_input_bytes))]
        renamed = lambda text: text.replace(directory, os.fspath(bundle))  # noqa: E731 (the temporary dir goes)
        try:
            result = _compare(_Reading(registry, sources), a, b, query, bundle_namespaces(proc_root))
        except NothingCompared as exc:
            raise NothingCompared(renamed(str(exc))) from None
    pairs = tuple(attrs.evolve(pair, not_compared=tuple(map(renamed, pair.not_compared))) for pair in result.pairs)
    return Comparisons(pairs, tuple(map(renamed, result.unpaired)))


def _compare(reading: _Reading, a: Optional[str], b: Optional[str], query: Query,
             namespaces: Optional[List[Netns]] = None) -> "Comparisons":
    """compare_backends on `reading`'s sources; `namespaces`: those a captured bundle has tables of."""
    registry, source = reading.registry, reading.first.source
    first = _named(reading, a) if a is not None else None
    second = _named(reading, b) if b is not None else None
    if first is not None and second is not None and first.name == second.name:
        raise BadArgument("backends", "compare needs two different backends, not %s twice" % first.name)
    pairs, unpaired = _pairs(reading, reading.kinds(query), first, second)
    for backend in dict.fromkeys(backend for pair in pairs for backend in pair):
        check_backend(registry, backend.name, query)
    wanted: Optional[frozenset] = None
    owners = {}
    if pairs and query.pid is not None:
        if source.proc_root is None:
            raise BadArgument("pid", "pid needs a /proc tree to find its sockets (not only a saved diag file)")
        scan = scan_fds(source.proc_root, sorted(query.pid), captured=not source.kernel, threads=source.kernel)
        owners = scan.owners
        wanted = frozenset(owners)
    if namespaces is not None:  # a bundle: each namespace's own tables (sockfs inodes are unique across them)
        plans: List[Tuple[Netns, Optional[frozenset]]] = [(netns, wanted) for netns in namespaces]
    elif wanted is not None:
        plans = reading.first.namespace_plans(scan, wanted)
    else:
        plans = [(Netns(), None)]
    compared, failed = [], []
    for (first, second), kinds in pairs.items():
        try:
            compared.append(_compare_pair(reading, query, first, second, kinds, plans, owners))
        except NothingCompared as exc:  # this pair compared nothing: said, and the others still count
            failed.append(str(exc))
    if not compared:
        raise NothingCompared("; ".join(failed + unpaired) or "no backend here reads the kinds asked for")
    return Comparisons(tuple(compared), tuple(failed + unpaired))


def _compare_pair(reading: _Reading, query: Query, first: Backend, second: Backend, kinds: Sequence[SocketKind],
                  plans: List[Tuple[Netns, Optional[frozenset]]], owners) -> Comparison:
    """`first` and `second` read back to back on each of `kinds` in each namespace of `plans`;
    NothingCompared when neither could read a kind, or neither saw a socket."""
    only_a: List[SocketRecord] = []
    only_b: List[SocketRecord] = []
    diffs: List[FieldDiff] = []
    not_compared: List[str] = []
    compared: List[str] = []
    count = 0
    deferred: Dict[int, str] = {}  # inode → which backend deferred it, and what it said the socket is
    explain = _explainer(first, second)
    (a_read, a_source), (b_read, b_source) = reading.source(first), reading.source(second)
    for kind in kinds:
        left: List[SocketRecord] = []
        right: List[SocketRecord] = []
        try:
            for netns, inodes in plans:
                answers = [(b.name, ask(b, kind, where, inodes, False, netns, owners))
                           for b, where in ((first, a_source), (second, b_source))]
                for name, collected in answers:
                    for inode, why in deferred_reasons(collected).items():
                        deferred[inode] = "%s deferred it: %s" % (name, why)
                left += _held(answers[0][1].socket_records(), inodes)
                right += _held(answers[1][1].socket_records(), inodes)
        except ProcsockError as exc:  # one side cannot read this kind here: say so, go on
            not_compared.append("%s: %s" % (kind.name, exc))
            continue
        compared.append(kind.name)
        x, y, d = compare_records(kind, left, right, explain)
        only_a += x
        only_b += y
        diffs += d
        count += len(left) + len(y)
    if not compared:
        raise NothingCompared("%s vs %s compared no kind: %s" % (first.name, second.name, "; ".join(not_compared)))
    if not count:
        held = " held by pid %s" % ",".join(map(str, sorted(query.pid))) if query.pid is not None else ""
        raise NothingCompared(
            "%s vs %s compared nothing: neither saw a socket of %s%s"
            % (first.name, second.name, ",".join(compared), held)
        )
    explained_only = tuple(
        (record, why)
        for records, saw, missed, read in ((only_a, first, second, a_read), (only_b, second, first, b_read))
        for record in records
        for why in (_explain_only(record, saw, missed, deferred, read),)
        if why
    )
    return Comparison(
        first.name, second.name, tuple(compared), tuple(only_a), tuple(only_b), tuple(diffs), tuple(not_compared),
        count, explained_only, a_read, b_read,
    )
