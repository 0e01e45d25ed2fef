"""What the user should know about a snapshot: Notes (fallbacks, tables nobody could read, skipped
input, unreadable processes, contested sockets) and why each held socket no backend listed went
unreported. Texts are raw here: renderers escape them."""

from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

import attrs

from procsock import log
from procsock.backends import Backend, PluginFailure, Registry
from procsock.errors import NotApplicable
from procsock.fdscan import FdScan, protocol_name
from procsock.model import Netns, Note, NoteCode, Owner, SocketKind, Source, Unresolved
from procsock.resolve.collect import Answer, Holders, deferred_reasons
from procsock.resolve.join import Joined
from procsock.resolve.plan import label


Unread = Dict[Tuple[Optional[int], SocketKind], str]  # (namespace, kind) → why it was not read


@attrs.frozen
class Reading:
    """What reading the tables gave besides records: which backend answered each kind (by label),
    tables read again, deferred inodes → reason, skipped entries, the notes of the reading itself,
    fallbacks ((failed backend, reason) → kind labels) and the tables no backend could read."""

    answered_by: Dict[str, str]
    retries: int
    deferred: Dict[int, str]
    skipped: Tuple[str, ...]
    notes: Tuple[Note, ...]
    fallbacks: Dict[Tuple[str, str], List[str]]
    unread: Unread


def _failures_text(failures: Sequence[Tuple[str, str]]) -> str:
    return "; ".join("%s: %s" % f for f in failures)


def reading(answers: Sequence[Answer]) -> Reading:
    """Account for the answers, in order; one input (a saved file) may serve several kinds, so each
    skipped entry is said once."""
    answered_by: Dict[str, str] = {}
    fallbacks: Dict[Tuple[str, str], List[str]] = {}
    unread: Unread = {}
    deferred: Dict[int, str] = {}
    notes: List[Note] = []
    skipped: List[str] = []
    seen_skips = set()
    retries = 0
    for answer in answers:
        kind, netns, collected = answer.kind, answer.netns, answer.collected
        where = label(kind, netns)
        for failed in answer.failures:
            fallbacks.setdefault(failed, []).append(where)
        if collected is None:
            unread.setdefault((netns.inode, kind), _failures_text(answer.failures) or "no backend")
            notes.append(Note(
                NoteCode.UNREADABLE_TABLE,
                "%s: no backend could read it (%s)"
                % (where, _failures_text(answer.failures) or "none serves it here"),
                kind=kind.name, netns=netns.inode,
            ))
            continue
        answered_by[where] = answer.backend
        retries += collected.retries
        deferred.update(collected.deferred)  # already checked and escaped by collect
        fresh = [entry for entry in collected.skipped if entry not in seen_skips]
        if fresh:
            seen_skips.update(fresh)
            skipped.extend(fresh)
            notes.append(Note(
                NoteCode.SKIPPED_ENTRIES,
                "%s skipped %d unreadable entries of %s (first: %s)"
                % (answer.backend, len(fresh), kind.name, fresh[0]),
                kind=kind.name, backend=answer.backend, netns=netns.inode,
            ))
    return Reading(answered_by, retries, deferred, tuple(skipped), tuple(notes), fallbacks, unread)


def notes(read: Reading, joined: Joined, broken: Sequence[PluginFailure], scan: FdScan,
          missing: FrozenSet[int]) -> Tuple[Note, ...]:
    """Every note of a snapshot, in the order users read them: the reading, the join, fallbacks,
    broken plugins, the fd walk, and namespaces asked for that the source does not show."""
    said = list(read.notes)
    for netns, count in joined.claimed:
        said.append(Note(
            NoteCode.CLAIMED_ELSEWHERE,
            "netns %s reported %d sockets that processes of another namespace hold and that namespace "
            "reported too: left out (forged?)" % (netns, count),
            netns=netns,
        ))
    if joined.conflicting:
        said.append(Note(
            NoteCode.CONTESTED,
            "%d sockets were reported by several network namespaces, none or several of whose processes "
            "hold them: left out (first: inode %d)" % (len(joined.conflicting), min(joined.conflicting)),
        ))
    for (failed, reason), kind_names in read.fallbacks.items():
        by_backend: Dict[str, List[str]] = {}
        for name in kind_names:
            if name in read.answered_by:
                by_backend.setdefault(read.answered_by[name], []).append(name)
        for answered, names in by_backend.items():
            text = "%s: %s; using %s for %s" % (failed, reason, answered, ", ".join(names))
            said.append(Note(NoteCode.FALLBACK, text, backend=failed))
    said.extend(Note(NoteCode.BROKEN_PLUGIN, str(failure), backend=failure.name) for failure in broken)
    said.extend(_scan_notes(scan))
    if missing:  # on the live host the door refuses an unknown namespace; here none can be checked
        said.append(Note(
            NoteCode.NETNS_MISSING,
            "no socket of network namespace %s in this source (a captured or saved source cannot "
            "tell which namespaces existed)" % ", ".join(map(str, sorted(missing))),
        ))
    return tuple(said)


def context_failure(plugin: str, processes: int, reason: str) -> Note:
    """The note of a context plugin that failed (or answered what it may not) for some processes."""
    return Note(NoteCode.CONTEXT_FAILED, "context plugin %s failed for %d process%s: %s" % (
        plugin, processes, "" if processes == 1 else "es", reason[:200]))


def _scan_notes(scan: FdScan) -> List[Note]:
    said = []
    if scan.unreadable:
        said.append(Note(
            NoteCode.UNREADABLE_PROCESSES,
            "%d processes not readable (permission denied): %s; their sockets have no owner here"
            % (len(scan.unreadable), _some_processes(scan.unreadable, scan.unreadable_names)),
        ))
    if scan.hidden:
        said.append(Note(
            NoteCode.HIDDEN_PROCESSES,
            "/proc is mounted %s: other users' processes are hidden, their sockets have no owner here"
            % scan.hidden,
        ))
    if scan.denied_fds:
        said.append(Note(
            NoteCode.DENIED_FDS,
            "%d fds not readable (permission denied): not counted as owners" % scan.denied_fds,
        ))
    if scan.malformed:
        said.append(Note(
            NoteCode.MALFORMED_FDS,
            "%d socket fd entries skipped: not socket:[INODE] with a decimal fd and inode" % scan.malformed,
        ))
    return said


def _some_processes(pids: Sequence[int], names: Dict[int, str]) -> str:
    """"1 (systemd), 2 (kthreadd) and 5 more": the pids that have a name known (raw text: notes are
    escaped where they are shown)."""
    named = [pid for pid in pids if pid in names]
    shown = ", ".join("%d (%s)" % (pid, names[pid]) if names[pid] else str(pid) for pid in named)
    rest = len(pids) - len(named)
    return shown + (" and %d more" % rest if rest else "")


class Explainer:
    """Says why held sockets went unreported, for one source: `kinds_by_name` are the kernel's
    protocol names of the kinds served, `own` our namespace; the lookup-only backends of `registry`
    (pidfd), found when first needed, say what a socket is from its fd."""

    def __init__(self, registry: Registry, source: Source, own: Netns, kinds_by_name: Dict[str, SocketKind]):
        self.registry = registry
        self.source = source
        self.own = own
        self.kinds_by_name = kinds_by_name
        self._lookups: Optional[Tuple[Backend, ...]] = None

    def unresolved(self, unlisted: Sequence[int], scan: FdScan, read: Reading,
                   conflicting: FrozenSet[int]) -> Dict[int, Unresolved]:
        """An Unresolved, with its likely reason, for each held inode in `unlisted`."""
        deferred = dict(read.deferred)
        deferred.update(self._deferred(frozenset(i for i in unlisted if i not in deferred), scan))
        owners = scan.owners
        return {
            inode: Unresolved(
                inode, owners[inode],
                "several network namespaces reported it, none can be believed over the others"
                if inode in conflicting
                else self._why(owners[inode][0], scan, read, deferred.get(inode)),
            )
            for inode in unlisted
        }

    def _deferred(self, inodes: FrozenSet[int], scan: FdScan) -> Dict[int, str]:
        """What held sockets that no backend listed are, as the lookup-only backends read them
        from their fds: the reasons they defer them with (unbound, in no kernel table...).
        Asked even when another backend was forced: this explains, it answers nothing."""
        if not (inodes and self.source.kernel and self.source.proc_root is not None):
            return {}
        if self._lookups is None:
            self._lookups = tuple(
                b for b in self.registry.backends if b.info.lookup_only and b.unavailable(self.source) is None
            )
        reasons: Dict[int, str] = {}
        for backend in self._lookups:
            kind_of = {name: kind for kind in backend.info.kinds for name in kind.kernel_names}
            groups: Dict[Tuple[SocketKind, Netns], set] = {}
            for inode in inodes - set(reasons):
                owner = scan.owners[inode][0]
                kind = kind_of.get(protocol_name(self.source.proc_root, owner.task, owner.fd))
                namespace = scan.netns.get(owner.pid, self.own.inode)
                if kind is not None:
                    netns = Netns(namespace, None if namespace == self.own.inode else owner.pid)
                    groups.setdefault((kind, netns), set()).add(inode)
            for (kind, netns), wanted in groups.items():
                reasons.update(self._deferred_by(backend, kind, frozenset(wanted), netns, scan.owners))
        return reasons

    def _deferred_by(self, backend: Backend, kind: SocketKind, inodes: FrozenSet[int], netns: Netns,
                     holders: Holders) -> Dict[int, str]:
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
        said = {**deferred_reasons(collected), **deferred_reasons(collected, "settled")}
        return {inode: reason for inode, reason in said.items() if inode in inodes}

    def _why(self, owner: Owner, scan: FdScan, read: Reading, deferred: Optional[str]) -> str:
        """The likely reason no backend reported a socket `owner` holds (asked of the live fd);
        `deferred` is what a backend that read its fd said it is."""
        namespace = scan.netns.get(owner.pid)  # None: not readable (no ptrace rights) or unknown
        read_as = self.own.inode if namespace is None else namespace
        live = self.source.kernel
        protocol = protocol_name(self.source.proc_root, owner.task, owner.fd) if live else None
        kind = self.kinds_by_name.get(protocol)
        failed = [why for (where, unread_kind), why in read.unread.items()
                  if where == read_as and (kind is None or unread_kind == kind)]
        if failed:  # its own kind's table, or (kind unknown) any, could not be read there
            return "its network namespace %s could not be fully read (%s)" % (read_as, failed[0])
        if protocol is not None and protocol not in self.kinds_by_name:
            return "no backend serves %s sockets%s" % (protocol, self._unavailable_for(protocol))
        if deferred is not None:  # read from its fd: what it is, whichever backend answered the table
            return deferred
        if namespace is not None:  # (else which namespace's answer left it out is unknown)
            where = Netns(namespace, None if namespace == self.own.inode else owner.pid)
            left_out = self._left_out(kind, where, read)
            if left_out is not None:
                return "%s: likely one of those, or it closed during the snapshot" % left_out
        if namespace is None and self.own.inode is not None:
            return "its network namespace is not readable here (needs ptrace rights over pid %d)" % owner.pid
        return (
            "no backend reported it (%s): closed during the snapshot, or created in a namespace "
            "no process of ours is in" % (protocol or "protocol unknown")
        )

    def _unavailable_for(self, protocol: str) -> str:
        """" here (NAME: REASON)" when a backend serving the kernel's `protocol` cannot run here
        (no diag handler in this kernel, a captured tree), else ""."""
        for backend in self.registry.backends:
            if any(protocol in kind.kernel_names for kind in backend.info.kinds):
                reason = backend.unavailable(self.source)
                if reason is not None:
                    return " here (%s: %s)" % (backend.name, reason)
        return ""

    def _left_out(self, kind: Optional[SocketKind], netns: Netns, read: Reading) -> Optional[str]:
        """"<backend> does not list <what>" when the backend that answered `kind` there declares
        (BackendInfo.leaves_out) that its source leaves such sockets out; else None."""
        backend = self.registry.by_name().get(read.answered_by.get(label(kind, netns))) if kind else None
        said = [what for name, what in backend.info.leaves_out if name == kind.name] if backend else []
        return "%s does not list %s" % (backend.name, " or ".join(said)) if said else None
