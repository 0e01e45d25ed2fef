"""The resolver: for each socket kind, ask the best backend that works here, then join owners.

Backends are tried per kind in priority order; one that is unavailable for the source is passed
over silently, one that fails is reported in the snapshot's notes and the next one answers. Every
record is joined with the fds holding its inode; sockets no process holds are still listed.
"""

import functools
import gc
import logging
import os
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

import attrs

from procsock.backends import Backend, Registry
from procsock.errors import BackendUnavailable, NotApplicable, ProcsockError, SocketNotFound
from procsock.fdscan import (
    FdScan,
    named_netns,
    netns_inode,
    protocol_name,
    scan_all_in_background,
    scan_fds,
    socket_inode,
)
from procsock.model import Collected, Family, Netns, Owner, Socket, SocketKind, SocketRecord, Source, State
from procsock.text import escape_text

log = logging.getLogger("procsock")
_NOBODY = object()  # no namespace's record of a contested inode stands


def _label(kind: SocketKind, netns: Netns) -> str:
    """How notes name a kind read in a namespace: "tcp", or "tcp (netns INODE)" for another one."""
    return kind.name if netns.pid is None else "%s (netns %s)" % (kind.name, netns.inode)


def _without_gc_passes(method):
    """Pause the cyclic collector while a walk builds tens of thousands of acyclic objects: its
    passes over them cost about a tenth of a snapshot and free nothing."""

    @functools.wraps(method)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


def _one_or_set(value) -> Optional[FrozenSet[int]]:
    return None if value is None else frozenset((value,) if isinstance(value, int) else value)


REASON_LIMIT = 300  # characters of a backend's reason kept: it is one line of a report


def deferred_reasons(collected) -> Dict[int, str]:
    """A backend's deferred inodes → reason, keeping only well-formed (inode, text) pairs, with
    the text escaped and cut short: a plugin's words reach terminals."""
    try:
        pairs = tuple(collected.deferred)
    except TypeError:
        return {}
    return {
        pair[0]: escape_text(pair[1][:REASON_LIMIT]) for pair in pairs
        if isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], int) and isinstance(pair[1], str)
    }


@attrs.frozen
class Query:
    """Which sockets to list. Each filter is None (no restriction) or a set of accepted values
    (`pid` and `port` also take one number); `details` asks backends for
    ``SocketRecord.extended`` (tcp_info, memory, ...). Values are not checked here: make_query
    checks what users give."""

    kinds: Optional[FrozenSet[str]] = None
    families: Optional[FrozenSet[Family]] = None
    protocols: Optional[FrozenSet[str]] = None
    states: Optional[FrozenSet[State]] = None
    pid: Optional[FrozenSet[int]] = attrs.field(default=None, converter=_one_or_set)
    port: Optional[FrozenSet[int]] = attrs.field(default=None, converter=_one_or_set)
    netns: Optional[FrozenSet[int]] = None
    details: bool = False

    def wants_kind(self, kind: SocketKind) -> bool:
        return (
            (self.kinds is None or kind.name in self.kinds)
            and (self.families is None or kind.family in self.families)
            and (self.protocols is None or kind.protocol in self.protocols)
        )

    @property
    def filters_records(self) -> bool:
        return self.states is not None or self.port is not None or self.netns is not None

    def wants(self, record: SocketRecord) -> bool:
        if self.netns is not None and record.netns not in self.netns:
            return False
        if self.states is not None and record.state not in self.states:
            return False
        if self.port is not None:
            ports = self.port
            if getattr(record.local, "port", None) not in ports and getattr(record.remote, "port", None) not in ports:
                return False
        return True

    @property
    def selects_all(self) -> bool:
        """True when no filter drops sockets by what they are (only then is "unresolved" meaningful)."""
        return self.kinds is None and self.families is None and self.protocols is None and not self.filters_records


@attrs.frozen
class Unresolved:
    """A socket inode that processes hold but no backend reported, and the likely reason."""

    inode: int
    owners: Tuple[Owner, ...]
    reason: str


@attrs.frozen
class Snapshot:
    """The sockets of one moment, and how they were found.

    `answered_by` maps kind name → backend name. `notes` are one-line texts for the user (fallbacks,
    skipped lines, unreadable processes); `skipped` holds every skipped input line with its reason.
    `unresolved` maps inodes that processes hold but no backend reported (a namespace that could
    not be read, a family no backend serves) to an Unresolved with the reason; it is filled only
    when no filter narrows the kinds. `netns_names` names the namespaces of the sockets listed
    that `ip netns add` named (live host). `retries` counts the tables read again because the
    kernel flagged them changed mid-dump (NLM_F_DUMP_INTR).
    """

    sockets: Tuple[Socket, ...]
    answered_by: Dict[str, str]
    notes: Tuple[str, ...]
    skipped: Tuple[str, ...]
    unreadable_processes: Tuple[int, ...]
    unresolved: Dict[int, Unresolved]
    netns_names: Dict[int, str] = attrs.field(factory=dict)
    retries: int = 0


def _some_processes(pids: Sequence[int], names: Dict[int, str]) -> str:
    """"1 (systemd), 2 (kthreadd) and 5 more": the pids that have a name known (raw text: notes are
    escaped where they are shown)."""
    named = [pid for pid in pids if pid in names]
    shown = ", ".join("%d (%s)" % (pid, names[pid]) if names[pid] else str(pid) for pid in named)
    rest = len(pids) - len(named)
    return shown + (" and %d more" % rest if rest else "")


class Resolver:
    """Resolves sockets from one source with the backends of one registry.

    `backend` forces one backend by name (no fallback to others).
    """

    def __init__(self, registry: Registry, source: Source, backend: Optional[str] = None) -> None:
        self.registry = registry
        self.source = source
        if source.proc_root is not None and not os.path.isdir(source.proc_root):
            raise ProcsockError("proc root %s is not a directory" % source.proc_root)
        if source.diag_file is not None and not os.path.isfile(source.diag_file):
            raise ProcsockError("diag file %s is not a readable file" % source.diag_file)
        self._candidates = self._usable_backends(backend)
        self._kind_by_kernel_name = {
            name: kind for b in self._candidates for kind in b.info.kinds for name in kind.kernel_names
        }
        self._explainers: Optional[Tuple[Backend, ...]] = None  # lookup-only backends, found when needed
        live = source.kernel and source.proc_root is not None
        self._own_netns = Netns(netns_inode(source.proc_root, "self") if live else None)

    def _usable_backends(self, forced: Optional[str]) -> Tuple[Backend, ...]:
        backends = self.registry.backends
        if forced is not None:
            backends = (self.registry.backend(forced),)
        usable = []
        for backend in backends:
            reason = backend.unavailable(self.source)
            if reason is None:
                usable.append(backend)
            else:
                log.debug("backend %s unavailable: %s", backend.name, reason)
                if forced is not None:
                    raise BackendUnavailable(backend.name, reason)
        return tuple(usable)

    def usable_backends(self) -> Tuple[Backend, ...]:
        """The backends that can read this source, highest priority first."""
        return self._candidates

    def kinds(self, query: Query) -> Tuple[SocketKind, ...]:
        """The kinds the query asks for that a usable backend serves, in backend order."""
        seen: Dict[SocketKind, None] = {}
        for backend in self._candidates:
            for kind in backend.info.kinds:
                if query.wants_kind(kind):
                    seen.setdefault(kind)
        return tuple(seen)

    def _owners(self, pids: Optional[Iterable[int]]) -> FdScan:
        if self.source.proc_root is None:
            return FdScan({}, 0, (), 0)
        kernel = self.source.kernel
        return scan_fds(self.source.proc_root, pids, captured=not kernel, threads=kernel)

    @_without_gc_passes
    def snapshot(self, query: Query = Query()) -> Snapshot:
        if query.pid is None:
            return self._snapshot_all(query)
        scan = self._owners(sorted(query.pid))
        return self._resolve(query, self._hinted_kinds(query, scan), scan, frozenset(scan.owners))

    def _snapshot_all(self, query: Query) -> Snapshot:
        """Every socket. On the live host the fd walk runs in the background while our own
        namespace's tables are read; the other namespaces are known only after the walk."""
        kinds = self.kinds(query)
        if not (self.source.kernel and self.source.proc_root is not None and self._own_netns.inode is not None):
            return self._resolve(query, kinds, self._owners(None), None)
        walk = scan_all_in_background(self.source.proc_root)
        try:
            early = {kind: self._collect(kind, None, query.details, self._own_netns, {}) for kind in kinds}
        finally:  # even when interrupted: the walker is read to its end and reaped
            scan = walk()
        return self._resolve(query, kinds, scan, None, early)

    def _hinted_kinds(self, query: Query, scan: FdScan) -> Tuple[SocketKind, ...]:
        """For one process: only the kinds its socket fds are (xattr hints), when every fd says."""
        kinds = self.kinds(query)
        if not self.source.kernel:
            return kinds
        hints = {self._kind_hint(held[0].task, held[0].fd) for held in scan.owners.values()}
        if None in hints:
            return kinds
        return tuple(kind for kind in kinds if kind in hints)

    @_without_gc_passes
    def describe_inode(self, inode: int, details: bool = False) -> Socket:
        """The socket with that inode, with every fd that holds it (one walk of all fd tables)."""
        scan = self._owners(None)
        holders = scan.owners.get(inode)
        hint = self._kind_hint(holders[0].task, holders[0].fd) if holders and self.source.kernel else None
        return self._one(inode, scan, hint, details)

    def describe_fd(self, pid: int, fd: int, details: bool = False) -> Socket:
        """The socket at /proc/pid/fd/fd, with the fds of `pid` that hold it."""
        if self.source.proc_root is None:
            raise ProcsockError("describing an fd needs a /proc tree")
        inode = socket_inode(self.source.proc_root, pid, fd, not self.source.kernel)
        hint = self._kind_hint(pid, fd) if self.source.kernel else None
        return self._one(inode, self._owners((pid,)), hint, details)

    def _kind_hint(self, pid: int, fd: int) -> Optional[SocketKind]:
        """The served kind of a live socket fd (pid: a task id), from its protocol xattr; None when unknown."""
        return self._kind_by_kernel_name.get(protocol_name(self.source.proc_root, pid, fd))

    def _one(self, inode: int, scan: FdScan, hint: Optional[SocketKind], details: bool) -> Socket:
        query = Query(details=details)
        kinds = self.kinds(query)
        if hint is not None and hint in kinds:
            kinds = (hint,)
        found = self._resolve(query, kinds, scan, frozenset((inode,)))
        for sock in found.sockets:
            if sock.record.inode == inode:
                return sock
        if inode in found.unresolved:
            raise SocketNotFound(inode, found.unresolved[inode].reason)
        raise SocketNotFound(inode, "; ".join(found.notes))

    def _resolve(
        self,
        query: Query,
        kinds: Sequence[SocketKind],
        scan: FdScan,
        inodes: Optional[FrozenSet[int]],
        early: Optional[Dict[SocketKind, tuple]] = None,
    ) -> Snapshot:
        """Collect `kinds` in each namespace the scan shows and join the owners. `early` holds
        the whole-table answers of our own namespace, already read while the walk ran."""
        owners = scan.owners
        plans = self.namespace_plans(scan, inodes)
        sockets: List[Socket] = []
        seen = set()
        answered_by: Dict[str, str] = {}
        fallbacks: Dict[Tuple[str, str], List[str]] = {}
        unread: Dict[Tuple[Optional[int], SocketKind], str] = {}  # (namespace, kind) → why it was not read
        deferred: Dict[int, str] = {}  # inode → what the backend that deferred it says it is
        notes: List[str] = []
        skipped: List[str] = []
        seen_skips = set()
        retries = 0
        filtering = query.filters_records
        answers = []
        for kind, netns, wanted in ((k, n, w) for k in kinds for n, w in plans):
            label = _label(kind, netns)
            if early is not None and netns.pid is None:
                backend, collected, failures = early[kind]
            else:
                backend, collected, failures = self._collect(kind, wanted, query.details, netns, owners)
            for failed, reason in failures:
                fallbacks.setdefault((failed, reason), []).append(label)
            if collected is None:
                unread.setdefault((netns.inode, kind), "; ".join("%s: %s" % f for f in failures) or "no backend")
                notes.append(
                    "%s: no backend could read it (%s)"
                    % (label, "; ".join("%s: %s" % f for f in failures) or "none serves it here")
                )
                continue
            answered_by[label] = backend
            retries += collected.retries
            deferred.update(collected.deferred)  # already checked and escaped by _collect
            fresh = [entry for entry in collected.skipped if entry not in seen_skips]
            if fresh:  # one input (a saved file) may serve several kinds: say each skip once
                seen_skips.update(fresh)
                skipped.extend(fresh)
                notes.append(
                    "%s skipped %d unreadable entries of %s (first: %s)"
                    % (backend, len(fresh), kind.name, fresh[0])
                )
            answers.append((collected.records, wanted))
        standing = self._standing(answers, scan) if len(plans) > 1 or self.source.diag_file else {}
        claimed: Dict[Optional[int], int] = {}  # namespace → records of sockets another one stands for
        conflicting = set()
        for records, wanted in answers:
            for record in records:
                inode = record.inode
                if inode:
                    if wanted is not None and inode not in wanted:
                        continue
                    stands = standing.get(inode, record.netns)
                    if stands != record.netns:
                        if stands is _NOBODY:
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
        for netns, count in sorted(claimed.items(), key=lambda item: (item[0] is None, item[0] or 0)):
            notes.append(
                "netns %s reported %d sockets that processes of another namespace hold and that namespace "
                "reported too: left out (forged?)" % (netns, count)
            )
        if conflicting:
            notes.append(
                "%d sockets were reported by several network namespaces, none or several of whose processes "
                "hold them: left out (first: inode %d)" % (len(conflicting), min(conflicting))
            )
        for (failed, reason), kind_names in fallbacks.items():
            by_backend: Dict[str, List[str]] = {}
            for name in kind_names:
                if name in answered_by:
                    by_backend.setdefault(answered_by[name], []).append(name)
            for answered, names in by_backend.items():
                notes.append("%s: %s; using %s for %s" % (failed, reason, answered, ", ".join(names)))
        notes.extend(str(failure) for failure in self.registry.failures)
        if scan.unreadable:
            notes.append(
                "%d processes not readable (permission denied): %s; their sockets have no owner here"
                % (len(scan.unreadable), _some_processes(scan.unreadable, scan.unreadable_names))
            )
        if scan.hidden:
            notes.append(
                "/proc is mounted %s: other users' processes are hidden, their sockets have no owner here"
                % scan.hidden
            )
        if scan.denied_fds:
            notes.append("%d fds not readable (permission denied): not counted as owners" % scan.denied_fds)
        if scan.malformed:
            notes.append("%d socket fd entries skipped: not socket:[INODE] with a decimal fd and inode" % scan.malformed)
        missing = () if query.netns is None or self.source.kernel else query.netns - {s.record.netns for s in sockets}
        if missing:  # on the live host the door refuses an unknown namespace; here none can be checked
            notes.append(
                "no socket of network namespace %s in this source (a captured or saved source cannot "
                "tell which namespaces existed)" % ", ".join(map(str, sorted(missing)))
            )
        unresolved = {}
        if query.selects_all:
            unlisted = [i for i in owners if i not in seen and (inodes is None or i in inodes)]
            deferred.update(self._explain(frozenset(i for i in unlisted if i not in deferred), scan))
            unresolved = {
                inode: Unresolved(
                    inode, owners[inode],
                    "several network namespaces reported it, none can be believed over the others"
                    if inode in conflicting
                    else self._why_unresolved(owners[inode][0], scan, unread, deferred.get(inode)),
                )
                for inode in unlisted
            }
        names = named_netns() if len(plans) > 1 else {}
        return Snapshot(
            tuple(sockets), answered_by, tuple(notes), tuple(skipped), scan.unreadable, unresolved,
            {inode: name for inode, name in names.items() if any(p.inode == inode for p, _ in plans)},
            retries,
        )

    def _standing(self, answers, scan: FdScan) -> Dict[int, object]:
        """For each inode that more than one namespace reported: the namespace whose record stands.

        A namespace may report only the sockets its own processes hold, or that no other namespace
        reported (a socket created in B and passed to a process in A is reported by B alone). When
        the holders' namespaces do not single out one reporter, none stands (_NOBODY). Inode-0 rows
        (TIME_WAIT ...) are per namespace and never contested.
        """
        first: Dict[int, Optional[int]] = {}  # inode → the first namespace that reported it
        contested: Dict[int, set] = {}
        for records, wanted in answers:
            for record in records:
                inode = record.inode
                if inode and (wanted is None or inode in wanted):
                    reporter = first.setdefault(inode, record.netns)
                    if reporter != record.netns:
                        contested.setdefault(inode, {reporter}).add(record.netns)
        own = self._own_netns.inode
        standing: Dict[int, object] = {}
        for inode, namespaces in contested.items():
            holding = {scan.netns.get(o.pid, own) for o in scan.owners.get(inode, ())} & namespaces
            standing[inode] = holding.pop() if len(holding) == 1 else _NOBODY
        return standing

    def raw_dumps(self, query: Query = Query()) -> Tuple[List[Tuple[SocketKind, Netns, str, bytes]], List[str]]:
        """Raw wire answers (kind, namespace, backend, bytes) for every kind a backend can give one
        for: our namespace first, then each other network namespace whose processes hold sockets.

        Returns them with notes for kinds whose backends with a raw form failed. Used by
        ``--save-diag``.
        """
        dumps, notes = [], []
        live = self.source.kernel and self._own_netns.inode is not None
        plans = self.namespace_plans(self._owners(None), None) if live else [(self._own_netns, None)]
        for netns, _ in plans:
            for kind in self.kinds(query):
                failures = []
                for backend in self._candidates:
                    if kind not in backend.info.kinds:
                        continue
                    try:
                        data = backend.raw_dump(kind, self.source, netns)
                    except Exception as exc:  # ProcsockError or a plugin's bug: try the next one
                        failures.append("%s: %s" % (backend.name, getattr(exc, "reason", None) or exc))
                        continue
                    if data is not None:
                        dumps.append((kind, netns, backend.name, data))
                        break
                else:
                    if failures:  # a kind no backend has a wire form for is simply not saved
                        notes.append("%s: no raw dump (%s)" % (_label(kind, netns), "; ".join(failures)))
        return dumps, notes

    def _explain(self, inodes: FrozenSet[int], scan: FdScan) -> Dict[int, str]:
        """What held sockets that no backend listed are, as the lookup-only backends (pidfd) read
        them from their fds: the reasons they defer them with (unbound, in no kernel table...).
        Asked even when another backend was forced: this explains, it answers nothing."""
        if not (inodes and self.source.kernel and self.source.proc_root is not None):
            return {}
        if self._explainers is None:
            self._explainers = tuple(
                b for b in self.registry.backends if b.info.lookup_only and b.unavailable(self.source) is None
            )
        reasons: Dict[int, str] = {}
        for backend in self._explainers:
            kind_of = {name: kind for kind in backend.info.kinds for name in kind.kernel_names}
            groups: Dict[Tuple[SocketKind, Netns], set] = {}
            for inode in inodes - set(reasons):
                owner = scan.owners[inode][0]
                kind = kind_of.get(protocol_name(self.source.proc_root, owner.task, owner.fd))
                namespace = scan.netns.get(owner.pid, self._own_netns.inode)
                if kind is not None:
                    netns = Netns(namespace, None if namespace == self._own_netns.inode else owner.pid)
                    groups.setdefault((kind, netns), set()).add(inode)
            for (kind, netns), wanted in groups.items():
                reasons.update(self._deferred_by(backend, kind, frozenset(wanted), netns, scan.owners))
        return reasons

    def _deferred_by(self, backend: Backend, kind: SocketKind, inodes: FrozenSet[int], netns: Netns,
                     holders: Dict[int, Tuple[Owner, ...]]) -> Dict[int, str]:
        """The inodes `backend` defers, with its reasons; asked one by one if it declines them all
        at once (a lookup-only backend answers small lookups)."""
        try:
            collected = backend.collect(kind, self.source, inodes, False, netns, holders)
        except NotApplicable:
            if len(inodes) == 1:
                return {}
            reasons: Dict[int, str] = {}
            for inode in inodes:
                reasons.update(self._deferred_by(backend, kind, frozenset((inode,)), netns, holders))
            return reasons
        except Exception:  # an explanation is optional: the generic reason stands
            log.debug("backend %s could not explain %s", backend.name, kind.name, exc_info=True)
            return {}
        return {inode: reason for inode, reason in deferred_reasons(collected).items() if inode in inodes}

    def _why_unresolved(self, owner: Owner, scan: FdScan, unread: Dict[Tuple[Optional[int], SocketKind], str],
                        deferred: Optional[str]) -> str:
        """The likely reason no backend reported a socket `owner` holds (asked of the live fd);
        `deferred` is what a backend that read its fd said it is."""
        namespace = scan.netns.get(owner.pid)  # None: not readable (no ptrace rights) or unknown
        read_as = self._own_netns.inode if namespace is None else namespace
        live = self.source.kernel
        protocol = protocol_name(self.source.proc_root, owner.task, owner.fd) if live else None
        kind = self._kind_by_kernel_name.get(protocol)
        failed = [why for (where, unread_kind), why in unread.items()
                  if where == read_as and (kind is None or unread_kind == kind)]
        if failed:  # its own kind's table, or (kind unknown) any, could not be read there
            return "its network namespace %s could not be fully read (%s)" % (read_as, failed[0])
        if protocol is not None and protocol not in self._kind_by_kernel_name:
            return "no backend serves %s sockets" % protocol
        if deferred is not None:
            return deferred
        if namespace is None and self._own_netns.inode is not None:
            return "its network namespace is not readable here (needs ptrace rights over pid %d)" % owner.pid
        return (
            "no backend reported it (%s): closed during the snapshot, or created in a namespace "
            "no process of ours is in" % (protocol or "protocol unknown")
        )

    def namespace_plans(
        self, scan: FdScan, inodes: Optional[FrozenSet[int]]
    ) -> List[Tuple[Netns, Optional[FrozenSet[int]]]]:
        """(namespace, inodes wanted there) to read: ours, then each other network namespace whose
        processes hold sockets, reached through one of those processes (live host only)."""
        own = self._own_netns
        elsewhere: Dict[int, Tuple[int, set]] = {}
        if own.inode is not None and any(namespace != own.inode for namespace in scan.netns.values()):
            for inode, holders in scan.owners.items():
                for owner in holders:
                    namespace = scan.netns.get(owner.pid, own.inode)
                    if namespace != own.inode:
                        elsewhere.setdefault(namespace, (owner.pid, set()))[1].add(inode)
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

    def _collect(self, kind: SocketKind, inodes: Optional[FrozenSet[int]], details: bool, netns: Netns,
                 holders: Dict[int, Tuple[Owner, ...]]):
        """(backend name, Collected, failures) from the first usable backend serving `kind`; the
        inodes it deferred are asked of the backends after it, and those none reports stay in
        ``deferred`` with the first reason given."""
        rest, collected, failures = self._first_answer(self._candidates, kind, inodes, details, netns, holders)
        if collected is None:
            return None, None, failures
        name = rest[0].name
        records, reasons = list(collected.records), deferred_reasons(collected)
        if reasons:  # a deferral of a socket not asked for, or answered after all, is not believed
            listed = {r.inode for r in records}
            reasons = {i: why for i, why in reasons.items() if (inodes is None or i in inodes) and i not in listed}
        while reasons:
            asked = frozenset(reasons)
            rest, answer, failed = self._first_answer(rest[1:], kind, asked, details, netns, holders)
            failures += failed
            if answer is None:
                break
            for record in answer.records:
                if record.inode in asked and reasons.pop(record.inode, None) is not None:
                    records.append(record)
        if collected.deferred or reasons:
            collected = attrs.evolve(collected, records=tuple(records), deferred=tuple(reasons.items()))
        return name, collected, failures

    def _first_answer(self, backends: Sequence[Backend], kind: SocketKind, inodes: Optional[FrozenSet[int]],
                      details: bool, netns: Netns, holders: Dict[int, Tuple[Owner, ...]]):
        """(the backends from the one that answered on, its Collected, failures) for the first of
        `backends` that answers for `kind`; ((), None, failures) if none does."""
        failures: List[Tuple[str, str]] = []
        for position, backend in enumerate(backends):
            if kind not in backend.info.kinds or (inodes is None and backend.info.lookup_only):
                continue
            try:
                collected = ask(backend, kind, self.source, inodes, details, netns, holders)
            except NotApplicable:
                continue
            except ProcsockError as exc:
                log.debug("backend %s failed on %s", backend.name, kind.name, exc_info=True)
                failures.append((backend.name, getattr(exc, "reason", None) or str(exc)))
                continue
            return backends[position:], collected, failures
        return (), None, failures


def ask(
    backend: Backend,
    kind: SocketKind,
    source: Source,
    inodes: Optional[FrozenSet[int]],
    details: bool = False,
    netns: Netns = Netns(),
    holders: Optional[Dict[int, Tuple[Owner, ...]]] = None,
) -> Collected:
    """`backend`'s records of one kind. Every failure is a ProcsockError saying why: a plugin's
    bug (any exception, MemoryError on hostile input included) or an answer of nothing is
    reported as BackendUnavailable, so that one broken plugin cannot stop the others."""
    try:
        collected = backend.collect(kind, source, inodes, details, netns, holders)
    except ProcsockError:
        raise
    except Exception as exc:
        log.debug("backend %s crashed on %s", backend.name, kind.name, exc_info=True)
        raise BackendUnavailable(backend.name, "plugin error: %s: %s" % (type(exc).__name__, exc)) from None
    if collected is None:
        raise BackendUnavailable(backend.name, "returned nothing")
    return collected
