"""The resolver: for each socket kind, ask the best backend that works here, then join owners.

Backends are tried per kind in priority order; one that is unavailable for the source is passed
over silently, one that fails is reported in the snapshot's notes and the next one answers. Every
record is joined with the fds holding its inode; sockets no process holds are still listed.
`Resolver` drives the rooms of `procsock.resolve` (plan, collect, join, explain); the values it
returns live in the model, and `ask`/`deferred_reasons` are re-exported from `collect`. Each
operation that asks backends runs in one `procsock.scope`: what they open for it (a diag socket
per namespace) serves the whole operation and is closed when it ends.
"""

import functools
import gc
import os
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from procsock import log
from procsock.context import with_context
from procsock.backends import Backend, Registry
from procsock.errors import BackendUnavailable, ProcsockError, SocketNotFound
from procsock.fdscan import FdScan, named_netns, netns_inode, scan_all_in_background, scan_fds, socket_inode
from procsock.model import (
    OWNER_FD, Netns, Query, Row, Snapshot, Socket, Sockets, SocketKind, Source, Unresolved, owner_task,
)
from procsock.resolve import explain, join, plan
from procsock.resolve.collect import Answer, ask, collect, deferred_reasons
from procsock.rewalk import repeated_walk
from procsock.scope import scope

__all__ = ["Query", "Resolver", "Snapshot", "Unresolved", "ask", "deferred_reasons"]

RawDump = Tuple[SocketKind, Netns, str, bytes]  # kind, namespace, backend, its wire answer


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
        self._kind_by_kernel_name = plan.kinds_by_kernel_name(self._candidates)
        live = source.kernel and source.proc_root is not None
        self._own_netns = Netns(netns_inode(source.proc_root, "self") if live else None)
        self._explainer = explain.Explainer(registry, source, self._own_netns, self._kind_by_kernel_name)

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
        return plan.served_kinds(self._candidates, query)

    def namespace_plans(self, scan: FdScan, inodes: Optional[FrozenSet[int]]) -> List[plan.Plan]:
        """(namespace, inodes wanted there) to read: ours, then each other network namespace whose
        processes hold sockets, reached through one of those processes (live host only)."""
        return plan.namespace_plans(self._own_netns, scan, inodes)

    def _owners(self, pids: Optional[Iterable[int]], context: bool = False) -> FdScan:
        if self.source.proc_root is None:
            return FdScan({}, 0, (), 0)
        kernel = self.source.kernel
        return scan_fds(self.source.proc_root, pids, captured=not kernel, threads=kernel, context=context)

    def _collect(self, kind: SocketKind, inodes: Optional[FrozenSet[int]], details: bool, netns: Netns,
                 holders, raw: bool = False) -> Answer:
        return collect(self._candidates, self.source, kind, inodes, details, netns, holders, raw)

    def _kind_held(self, scan: FdScan, inode: int) -> Optional[SocketKind]:
        """The served kind a live socket's first holder's fd says it is; None when unknown."""
        held = scan.owner_rows.get(inode)
        if not held or not self.source.kernel:
            return None
        return self._kind_hint(owner_task(held[0]), held[0][OWNER_FD])

    def _kind_hint(self, task: int, fd: int) -> Optional[SocketKind]:
        return plan.kind_hint(self._kind_by_kernel_name, self.source.proc_root, task, fd)

    @_without_gc_passes
    @scope()
    def snapshot(self, query: Query = Query()) -> Snapshot:
        if query.pid is None:
            return self._snapshot_all(query)
        scan = self._owners(sorted(query.pid), query.wants_context)
        kinds = self.kinds(query)
        if self.source.kernel:  # only the kinds its socket fds are, when every fd says
            kinds = plan.hinted(kinds, {self._kind_held(scan, inode) for inode in scan.owner_rows})
        return self._resolve(query, kinds, scan, frozenset(scan.owner_rows))

    def _snapshot_all(self, query: Query, kept: Optional[List[Answer]] = None) -> Snapshot:
        """Every socket. On the live host the fd walk runs in the background while our own
        namespace's tables are read; the other namespaces are known only after the walk. With
        `kept`, every answer goes there too, with its wire form (see `capture`)."""
        kinds = self.kinds(query)
        live = self.source.kernel and self.source.proc_root is not None
        if not (live and self._own_netns.inode is not None):
            return self._resolve(query, kinds, self._owners(None, query.wants_context), None, kept=kept)
        walk = (repeated_walk(self.source.proc_root, query.wants_context)
                or scan_all_in_background(self.source.proc_root, query.wants_context))
        raw = kept is not None
        try:
            early = {kind: self._collect(kind, None, query.details, self._own_netns, {}, raw) for kind in kinds}
        finally:  # even when interrupted: the walker is read to its end and reaped
            scan = walk()
        return self._resolve(query, kinds, scan, None, early, kept)

    @_without_gc_passes
    @scope()
    def describe_inode(self, inode: int, details: bool = False, context: bool = False) -> Socket:
        """The socket with that inode, with every fd that holds it (one walk of all fd tables);
        with `context`, each owner's Context."""
        scan = self._owners(None, context)
        return self._one(inode, scan, self._kind_held(scan, inode), details, context)

    @scope()
    def describe_fd(self, pid: int, fd: int, details: bool = False, context: bool = False) -> Socket:
        """The socket at /proc/pid/fd/fd, with the fds of `pid` that hold it (and their Context)."""
        if self.source.proc_root is None:
            raise ProcsockError("describing an fd needs a /proc tree")
        inode = socket_inode(self.source.proc_root, pid, fd, not self.source.kernel)
        hint = self._kind_hint(pid, fd) if self.source.kernel else None
        return self._one(inode, self._owners((pid,), context), hint, details, context)

    def _one(self, inode: int, scan: FdScan, hint: Optional[SocketKind], details: bool,
             context: bool = False) -> Socket:
        query = Query(details=details, context=context)
        kinds = self.kinds(query)
        if hint is not None and hint in kinds:
            kinds = (hint,)
        found = self._resolve(query, kinds, scan, frozenset((inode,)))
        for sock in found.sockets:
            if sock.record.inode == inode:
                return sock
        if inode in found.unresolved:
            raise SocketNotFound(inode, found.unresolved[inode].reason)
        raise SocketNotFound(inode, "; ".join(note.text for note in found.notes))

    def _resolve(
        self,
        query: Query,
        kinds: Sequence[SocketKind],
        scan: FdScan,
        inodes: Optional[FrozenSet[int]],
        early: Optional[Dict[SocketKind, Answer]] = None,
        kept: Optional[List[Answer]] = None,
    ) -> Snapshot:
        """Collect `kinds` in each namespace the scan shows and join the owners. `early` holds
        the whole-table answers of our own namespace, already read while the walk ran. When the
        query wants context, the sockets carry their owners' (by pid) and context filters keep the
        sockets they select. `kept` receives the answers, namespace by namespace, each with its
        wire form."""
        context_notes: Tuple = ()
        if query.wants_context:
            scan, context_notes = with_context(self.registry, self.source, scan)
        plans = self.namespace_plans(scan, inodes)
        answers = [
            early[kind] if early is not None and netns.pid is None
            else self._collect(kind, wanted, query.details, netns, scan.owners, kept is not None)
            for kind in kinds for netns, wanted in plans
        ]
        if kept is not None:  # ours first, then each other namespace: the order of raw_dumps
            order = {netns: position for position, (netns, _) in enumerate(plans)}
            kept += sorted(answers, key=lambda answer: order[answer.netns])
        read = explain.reading(answers)
        answered = [answer for answer in answers if answer.collected is not None]
        contest = len(plans) > 1 or self.source.diag_file
        stands = join.standing(answered, scan, self._own_netns.inode) if contest else {}
        joined = join.join(answered, scan.owner_rows, query, stands, functools.partial(self._kind_held, scan),
                           scan.contexts)
        missing = () if query.netns is None or self.source.kernel else query.netns - {
            row[Row.NETNS] for row, _, _ in joined.entries
        }
        notes = explain.notes(read, joined, self.registry.failures, scan, frozenset(missing)) + context_notes
        unresolved = {}
        if query.selects_all:
            unlisted = [i for i in scan.owner_rows if i not in joined.listed and (inodes is None or i in inodes)]
            unresolved = self._explainer.unresolved(unlisted, scan, read, joined.conflicting)
        names = named_netns() if len(plans) > 1 else {}
        read_here = {netns.inode for netns, _ in plans}
        kept = joined.entries
        if query.filters_context:
            kept = [entry for entry in kept if query.wants_owners(entry[1], scan.contexts)]
        return Snapshot(
            sockets=Sockets(kept, scan.contexts), answered_by=read.answered_by, notes=notes, skipped=read.skipped,
            unreadable_processes=scan.unreadable, unresolved=unresolved,
            netns_names={inode: name for inode, name in names.items() if inode in read_here},
            retries=read.retries,
        )

    @scope()
    def raw_dumps(self, query: Query = Query()) -> Tuple[List[RawDump], List[str]]:
        """Raw wire answers (kind, namespace, backend, bytes) for every kind a backend can give one
        for: our namespace first, then each other network namespace whose processes hold sockets.

        Returns them with notes for kinds whose backends with a raw form failed, and for kinds
        left out because no backend here reads that kind back from a saved file (its replies
        would come back as another kind). Used by ``--save-diag``.
        """
        live = self.source.kernel and self._own_netns.inode is not None
        plans = self.namespace_plans(self._owners(None), None) if live else [(self._own_netns, None)]
        return self._raw_forms([Answer(kind, netns, None, None, None) for netns, _ in plans
                                for kind in self.kinds(query)])

    @_without_gc_passes
    @scope()
    def capture(self, query: Query = Query()) -> Tuple[Snapshot, List[RawDump], List[str]]:
        """A snapshot of every socket, and what `raw_dumps` gives, from the same answers: each kind
        is read once per namespace, and the saved replies are those the snapshot was decoded from."""
        kept: List[Answer] = []
        snap = self._snapshot_all(query, kept)
        return (snap,) + self._raw_forms(kept)

    def _raw_forms(self, answers: Sequence[Answer]) -> Tuple[List[RawDump], List[str]]:
        """The wire form of each answer (see `raw_dumps`): the one it kept, else the first a
        backend gives (`procsock_raw_dump`, which reads its source again)."""
        dumps, notes = [], []
        saved = Source.saved_diag(os.devnull)
        readers = {kind for b in self.registry.backends if b.unavailable(saved) is None for kind in b.info.kinds}
        for answer in answers:
            kind, netns = answer.kind, answer.netns
            if answer.collected is not None and answer.collected.raw is not None:
                name, data, failures = answer.backend, answer.collected.raw, []
            else:
                name, data, failures = self._raw_dump(kind, netns)
            if data is not None and kind not in readers:
                notes.append("%s: left out: no backend here reads %s back from a saved file"
                             % (plan.label(kind, netns), kind.name))
            elif data is not None:
                dumps.append((kind, netns, name, data))
            elif failures:  # a kind no backend has a wire form for is simply not saved
                notes.append("%s: no raw dump (%s)" % (plan.label(kind, netns), "; ".join(failures)))
        return dumps, notes

    def _raw_dump(self, kind: SocketKind, netns: Netns) -> Tuple[Optional[str], Optional[bytes], List[str]]:
        """(backend, wire answer) of the first backend giving one for `kind` in `netns`, or (None,
        None), and why those before it failed."""
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
                return backend.name, data, failures
        return None, None, failures
