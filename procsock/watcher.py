"""`procsock.watch()`: sockets coming and going, with their owners, as a stream of events. (This
module is `watcher`, so that `procsock.watch` is always the function, never a module.)

Three sources, layered. A full snapshot is the baseline. Every `interval` another snapshot is
diffed with the last one by socket identity (`SocketIdentity`: namespace, kind, inode, cookie):
what appeared opened, what vanished closed, a state or the set of fds holding it changed. Between
polls the kernel's destroy notifications (a backend's ``procsock_destroy_listener``: sock_diag
multicast for TCP and UDP) say at once which socket closed, even one that lived less than an
interval: a destroy names the socket by cookie (its inode is 0 by then), so it is matched by cookie,
else by addresses, with what the last poll saw, and takes the owners of that sighting. What cannot
be known is said, never guessed: a `gap` event says what may have been missed (the kernel dropped
notifications, a table could not be read, a namespace appeared or went, owners we may not read).
"""

import collections
import os
import selectors
import time
from typing import Dict, Iterator, List, Optional, Tuple

import attrs

from procsock.api import check_backend, make_query, registry_or_default
from procsock.errors import BadArgument, ProcsockError
from procsock.fdscan import netns_inode
from procsock.model import (
    NETLINK, NO_CONTEXTS, OWNER_FD, OWNER_PID, OWNER_TID, Contexts, Netns, NoteCode, Query, Row, Snapshot, Socket,
    SocketIdentity, Sockets, Source, State, identity_of_row,
)
from procsock.resolver import Resolver
from procsock.scope import keeping

__all__ = ["Event", "Events", "watch", "watch_query"]

OPEN, CLOSE, CHANGE, GAP = "open", "close", "change", "gap"
BASELINE, POLL, DESTROY = "baseline", "poll", "destroy"
NOW, LAST_SEEN, UNKNOWN = "now", "last-seen", "unknown"
# Notes that say owners may be missing: said once per watch.
_OWNER_NOTES = (NoteCode.UNREADABLE_PROCESSES, NoteCode.HIDDEN_PROCESSES, NoteCode.DENIED_FDS)
# States of sockets no destroy notification is about: a TIME_WAIT socket shares the cookie of the
# full socket it replaced, a SYN_RECV one is a request, not a socket.
_NOT_DESTROYED = (State.TIME_WAIT, State.SYN_RECV)

Entry = Tuple[tuple, Tuple[tuple, ...], Tuple[tuple, ...]]  # a row, its owner rows, its peer's owner rows
Key = Tuple[tuple, Optional[int]]  # SocketIdentity.key, cookie


@attrs.frozen
class Event:
    """One thing that happened to a socket, or a `gap` in what the watch could see.

    `kind`: "open" (a socket not seen before), "close" (gone), "change" (`changed` names what:
    "state", "owners"; `previous` is the socket as seen before) or "gap" (`text` says what may
    have been missed). `source`: how it was learnt: "baseline" (the first snapshot, with
    ``initial``), "poll" (a snapshot diffed with the last) or "destroy" (the kernel's
    notification). `owners` says whose owners `socket.owners` are: "now" (this sighting),
    "last-seen" (a closed socket's, from the last poll that saw it) or "unknown" (no poll saw the
    socket: its owners are empty, not guessed). `time` is the wall clock (time.time()).
    """

    kind: str
    time: float
    source: str
    socket: Optional[Socket] = None
    owners: str = NOW
    changed: Tuple[str, ...] = ()
    previous: Optional[Socket] = None
    text: str = ""

    @property
    def identity(self) -> Optional[SocketIdentity]:
        return None if self.socket is None else self.socket.record.identity


def _socket(entry: Entry, contexts: Contexts = NO_CONTEXTS) -> Socket:
    """The Socket of an entry, its owners with their processes' `contexts` (of the poll that saw it)."""
    return Sockets((entry,), contexts)[0]


def _key(row: tuple) -> Key:
    identity = identity_of_row(row)
    return identity.key, identity.cookie


def _cookie(row: tuple) -> tuple:
    """(namespace, kind, cookie) of a row: what a destroy notification names."""
    return row[Row.NETNS], row[Row.KIND].name, row[Row.COOKIE]


def _keyed(entries, keys: Dict[int, Tuple[tuple, Key]]) -> Tuple[Dict[Key, Entry], Dict[int, Tuple[tuple, Key]]]:
    """The entries by key, and the keys by id of their rows for the next poll: `keys` holds the
    last poll's, so a row the backends gave again (the same object: procsock.scope.keeping) is
    not keyed again."""
    keyed, made = {}, {}
    for entry in entries:
        row = entry[0]
        known = keys.get(id(row))
        key = known[1] if known is not None and known[0] is row else _key(row)
        keyed[key] = entry
        made[id(row)] = (row, key)
    return keyed, made


NETLINK_SOCK_DIAG = 4  # the netlink protocol of the sockets every poll opens to dump the tables


def _instrument(entry: Entry, pid: int) -> bool:
    """Whether a netlink socket's entry is one of the watch's own instruments: a sock_diag socket
    held by process `pid` (the watching one) alone. Each poll opens one to dump the tables and
    closes it: not a socket the user watches."""
    return (entry[0][Row.PROTOCOL] == NETLINK_SOCK_DIAG and bool(entry[1])
            and all(owner[OWNER_PID] == pid for owner in entry[1]))


def _holders(entry: Entry) -> frozenset:
    return frozenset((o[OWNER_PID], o[OWNER_FD], o[OWNER_TID]) for o in entry[1])


class _Destroys:
    """Which known socket a destroy notification is about: by (namespace, kind, cookie), else by
    (namespace, kind, local, remote) among sockets whose cookie no backend gave. The index is made
    when the first notification asks (most polls see none of a known socket)."""

    def __init__(self, known: Dict[Key, Entry]) -> None:
        self.known: Optional[Dict[Key, Entry]] = known
        self.by_cookie: Dict[tuple, Key] = {}
        self.by_address: Dict[tuple, Key] = {}

    def _index(self) -> None:
        known, self.known = self.known, None
        for key, entry in known.items():
            self.add(key, entry[0])

    def add(self, key: Key, row: tuple) -> None:
        if row[Row.STATE] in _NOT_DESTROYED:
            return
        cookie = row[Row.COOKIE]
        if cookie is not None:
            self.by_cookie[row[Row.NETNS], row[Row.KIND].name, cookie] = key
        else:
            self.by_address[row[Row.NETNS], row[Row.KIND].name, row[Row.LOCAL], row[Row.REMOTE]] = key

    def find(self, row: tuple) -> Optional[Key]:
        if self.known is not None:
            self._index()
        where = (row[Row.NETNS], row[Row.KIND].name)
        key = self.by_cookie.pop(where + (row[Row.COOKIE],), None)
        if key is None:
            key = self.by_address.pop(where + (row[Row.LOCAL], row[Row.REMOTE]), None)
        return key


def _diff(old: Dict[Key, Entry], new: Dict[Key, Entry], kept: frozenset):
    """(opened, changed, closed) from one poll to the next: keys of `new`, (old entry, new entry,
    what changed) and keys of `old`. A socket whose cookie only one of the polls knows (another
    backend answered) is matched by the rest of its identity; one that lost its inode when its last
    fd closed (orphaned, still in FIN-WAIT or LAST-ACK) by its cookie. Sockets of the (namespace, kind)
    tables in `kept` (unreadable this time) are not closed: they are carried into `new`."""
    unmatched = dict(old)
    opened, changed = [], []
    for key, entry in new.items():
        before = unmatched.pop(key, None)
        if before is None:
            opened.append(key)
        elif before[0] is not entry[0] or before[1] != entry[1]:  # else the same row and holders: unchanged
            _compare(before, entry, changed)
    if opened and unmatched:
        loose: Dict[tuple, List[Key]] = {}
        for key in unmatched:
            loose.setdefault(key[0], []).append(key)
        still = []
        for key in opened:
            candidates = loose.get(key[0], ())
            found = next((c for c in candidates if c[1] is None or key[1] is None), None)
            if found is None:
                still.append(key)
            else:
                candidates.remove(found)
                _compare(unmatched.pop(found), new[key], changed)
        opened = still
    if opened and unmatched:  # a socket closed by its last fd lives on orphaned (FIN-WAIT...): inode 0, same cookie
        by_cookie = {(k[0][0], k[0][1], k[1]): k for k in unmatched if k[1] is not None and k[0][2]}
        still = []
        for key in opened:
            orphan = key[1] is not None and not key[0][2]
            found = by_cookie.pop((key[0][0], key[0][1], key[1]), None) if orphan else None
            if found is None:
                still.append(key)
            else:
                _compare(unmatched.pop(found), new[key], changed)
        opened = still
    closed = []
    for key, entry in unmatched.items():
        if (entry[0][Row.NETNS], entry[0][Row.KIND].name) in kept:
            new[key] = entry  # still known: the next poll that reads its table says what became of it
        else:
            closed.append(key)
    return opened, changed, closed


def _compare(before: Entry, after: Entry, changed: list) -> None:
    what = ()
    if before[0][Row.STATE] is not after[0][Row.STATE]:
        what += ("state",)
    if before[1] != after[1] and _holders(before) != _holders(after):
        what += ("owners",)
    if what:
        changed.append((before, after, what))


def _wanted(query: Query, entry: Entry, contexts: Contexts) -> bool:
    """Whether the user's filters keep this socket, its owners' processes having `contexts` (the
    poll itself reads every state, port and process: a socket leaving LISTEN or a process's hands
    has not closed)."""
    if not query.wants_row(entry[0], entry[1], contexts):
        return False
    if query.filters_context and not query.wants_owners(entry[1], contexts):
        return False
    return query.pid is None or any(owner[OWNER_PID] in query.pid for owner in entry[1])


def _check_seconds(argument: str, value, allow_none: bool) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s takes a number of seconds, not %s %r" % (argument, type(value).__name__, value))
    if not value > 0 or value != value or value == float("inf"):
        raise BadArgument(argument, "bad %s %r (accepted: a number of seconds above 0)" % (argument, value))
    return float(value)


def watch(
    *,
    interval: float = 1.0,
    initial: bool = False,
    duration: Optional[float] = None,
    backend: Optional[str] = None,
    registry=None,
    **filters,
) -> "Events":
    """Events of the sockets of this host (every network namespace whose processes hold sockets)
    as they open, change and close, until `duration` seconds pass (None: until closed).

    `filters` are those of `snapshot()` (kind, state, pid, port, unit, filter="dport = :443", ...);
    an event is kept when the socket matches them before or after it. `initial` first gives an
    "open" event (source "baseline") per existing socket. Bad values raise BadArgument (or
    TypeError) at once. Closing the iterator (or leaving a `with contextlib.closing(...)`)
    releases every socket and child it holds.
    """
    registry = registry_or_default(registry)
    query = make_query(registry=registry, **filters)
    interval = _check_seconds("interval", interval, False)
    duration = _check_seconds("duration", duration, True)
    return watch_query(query, registry, backend, interval, initial, duration)


def watch_query(query: Query, registry, backend: Optional[str] = None, interval: float = 1.0, initial: bool = False,
                duration: Optional[float] = None) -> "Events":
    """`watch()` of a checked Query (the command builds one from its options)."""
    check_backend(registry, backend, query)
    resolver = Resolver(registry, Source.live(), backend)
    return Events(_Watch(resolver, query, interval, initial, duration))


class Events:
    """The events of one watch, an iterator: the baseline is taken (and the destroy listeners
    open) before it is returned. `close()` (or the end of a ``with`` block) releases every
    socket; `polls` counts the polls done so far.

    Each step of the watch (a poll, a read of a listener) is done whole and its events queued:
    what a step read is never left inside a suspended step, so `poll_now` after some of a step's
    events were returned still returns the others."""

    def __init__(self, watching: "_Watch") -> None:
        self._watch = watching
        self._queued = collections.deque(watching.start())
        self._steps = watching.events()

    @property
    def polls(self) -> int:
        return self._watch.polls

    def __iter__(self) -> "Events":
        return self

    def __next__(self) -> Event:
        while not self._queued:
            self._queued.extend(next(self._steps))
        return self._queued.popleft()

    def poll_now(self) -> List[Event]:
        """Poll at once, with what the destroy listeners hold: the events not yet returned, for
        a caller that does not wait on the iterator (procsock.testing.record_events)."""
        queued = list(self._queued)
        self._queued.clear()
        return queued + list(self._watch._poll(POLL))

    def close(self) -> None:
        self._steps.close()
        self._watch.close()

    def __enter__(self) -> "Events":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Watch:
    """The state of one watch: what the last poll saw, the destroy listeners per namespace."""

    def __init__(self, resolver: Resolver, query: Query, interval: float, initial: bool,
                 duration: Optional[float]) -> None:
        self.resolver = resolver
        self.query = query
        self.poll_query = attrs.evolve(  # context filters and the filter expression are applied to events too
            query, states=None, port=None, pid=None, filter=None, units=None, containers=None, pods=None, cgroups=None,
            users=None, context=query.wants_context)
        self.interval = interval
        self.initial = initial
        self.end = None if duration is None else time.monotonic() + duration
        self.known: Dict[Key, Entry] = {}
        self.contexts: Contexts = NO_CONTEXTS  # of the owners' processes in `known`
        self.keys: Dict[int, Tuple[tuple, Key]] = {}  # the keys of the last poll's rows, by id
        self.kept: dict = {}  # what backends keep from one poll for the next (procsock.scope.keeping)
        self.destroys = _Destroys({})
        self.listeners: Dict[Optional[int], object] = {}  # namespace inode -> listener
        self.selector = selectors.DefaultSelector()
        self.problems: frozenset = frozenset()  # the unreadable tables of the last poll
        self.said_owners: set = set()
        self.said_destroy_gap = False  # a destroy read's gap was said since the last poll
        self.held_first, self.held_count = "", 0  # the destroy gaps held back since: the first, how many
        self.polls = 0
        # (namespace, kind, cookie) of sockets a destroy closed whose remnant (a TIME-WAIT or
        # FIN-WAIT-2 mini socket with the same cookie) the last poll still listed
        self.destroyed: set = set()
        self.own = Netns(netns_inode(resolver.source.proc_root, "self"))

    def start(self) -> Iterator[Event]:
        """Listen in our namespace, then take the baseline (and listen in the others it shows)."""
        try:
            yield from self._listen(self.own, time.time(), announce=False)
            yield from self._poll(BASELINE)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for listener in list(self.listeners.values()):
            self._unlisten(listener)
        self.selector.close()

    def events(self) -> Iterator[List[Event]]:
        """The events after the baseline, one list per step (a read of a listener, a poll), until
        the end (`duration`) or until closed."""
        try:
            next_poll = time.monotonic() + self.interval
            while True:
                now = time.monotonic()
                if self.end is not None and now >= self.end:
                    return
                wake = next_poll if self.end is None else min(next_poll, self.end)
                if now < wake:
                    for ready, _ in self.selector.select(wake - now):
                        yield list(self._destroyed(ready.data, self._read(ready.data), self.known, self.destroys))
                    continue
                yield list(self._poll(POLL))
                next_poll = time.monotonic() + self.interval
        finally:
            self.close()

    # --- destroy notifications ---------------------------------------------------------------

    def _listen(self, netns: Netns, when: float, announce: bool) -> Iterator[Event]:
        """Open the destroy listener of a namespace: the first backend that has one."""
        reasons = []
        for backend in self.resolver.usable_backends():
            try:
                listener = backend.destroy_listener(self.resolver.source, netns)
            except Exception as exc:  # ProcsockError or a plugin's bug: the next backend, then say it
                reasons.append("%s: %s" % (backend.name, getattr(exc, "reason", None) or exc))
                continue
            if listener is not None:
                self.listeners[netns.inode] = listener
                self.selector.register(listener, selectors.EVENT_READ, listener)
                if announce:
                    yield Event(GAP, when, POLL, text="network namespace %s appeared: sockets that opened and "
                                "closed in it before now were not seen" % netns.inode)
                return
        if reasons:
            yield Event(GAP, when, POLL, text="no destroy notifications in network namespace %s (%s): closes of "
                        "sockets living less than an interval may be missed there" % (netns.inode, "; ".join(reasons)))

    def _unlisten(self, listener) -> None:
        self.selector.unregister(listener)
        self.listeners = {k: v for k, v in self.listeners.items() if v is not listener}
        listener.close()

    def _read(self, listener):
        try:
            return listener.read()
        except Exception as exc:  # the listener is done for: say so, the polls go on
            self._unlisten(listener)
            return exc

    def _destroyed(self, listener, read, known: Dict[Key, Entry], index: "_Destroys") -> Iterator[Event]:
        """Close events for what a listener read; matched sockets leave `known`."""
        when = time.time()
        if isinstance(read, Exception):
            yield Event(GAP, when, DESTROY, text="destroy notifications stopped (%s): closes of sockets living "
                        "less than an interval may be missed" % (getattr(read, "reason", None) or read))
            return
        for text in read.lost + read.skipped:  # one said at once, the rest once per poll (a flood of forgeries)
            if not self.said_destroy_gap:
                self.said_destroy_gap = True
                yield Event(GAP, when, DESTROY, text=text)
            else:
                self.held_first = self.held_first or text
                self.held_count += 1
        for row in read.records:
            if not self.query.wants_kind(row[Row.KIND]):
                continue
            key = index.find(row)
            entry = known.pop(key, None) if key is not None else None
            self.destroyed.add(_cookie(row))
            if entry is not None:
                if _wanted(self.query, entry, self.contexts):
                    yield Event(CLOSE, when, DESTROY, _socket(entry, self.contexts), LAST_SEEN)
            elif self.query.pid is None and self.query.states is None and self.query.wants_row(row):
                yield Event(CLOSE, when, DESTROY, _socket((row, (), ())), UNKNOWN)

    # --- polls -------------------------------------------------------------------------------

    def _held_gaps(self, when: float) -> Iterator[Event]:
        """The destroy reads' gaps held back since the last poll, as one."""
        if self.held_count:
            yield Event(GAP, when, DESTROY, text="%d more destroy gaps since the last poll, the first: %s"
                        % (self.held_count, self.held_first))
        self.said_destroy_gap, self.held_first, self.held_count = False, "", 0

    def _poll(self, source: str) -> Iterator[Event]:
        when = time.time()
        self.polls += 1
        yield from self._held_gaps(when)
        try:
            with keeping(self.kept):
                snap = self.resolver.snapshot(self.poll_query)
        except ProcsockError as exc:
            yield Event(GAP, when, source, text="poll failed (%s): opens and closes since the last poll may be "
                        "missed" % exc)
            return
        yield from self._notes(snap, when, source)
        yield from self._namespaces(snap, when, source != BASELINE)
        pid = os.getpid()
        entries = [entry for entry in snap.sockets.entries
                   if entry[0][Row.KIND] is not NETLINK or not _instrument(entry, pid)]
        new, self.keys = _keyed(entries, self.keys)
        # notifications read now may be of sockets this poll saw: matched with it, not the last
        pending = [(listener, self._read(listener)) for listener in list(self.listeners.values())]
        opened, changed, closed = _diff(self.known, new, self.problems)
        if self.destroyed:  # what the kernel left of a socket it said it destroyed is no socket of its own
            opened = [key for key in opened if _cookie(new[key][0]) not in self.destroyed]
            changed = [change for change in changed if _cookie(change[1][0]) not in self.destroyed]
            closed = [key for key in closed if _cookie(self.known[key][0]) not in self.destroyed]
            self.destroyed &= {_cookie(entry[0]) for entry in new.values()}  # only while a remnant is listed
        old, old_contexts = self.known, self.contexts
        self.known, self.contexts = new, snap.sockets.contexts
        self.destroys = _Destroys(new)
        if source == BASELINE:
            opened = opened if self.initial else []
        for key in opened:
            if _wanted(self.query, new[key], self.contexts):
                yield Event(OPEN, when, source, _socket(new[key], self.contexts))
        for before, after, what in changed:
            if _wanted(self.query, after, self.contexts) or _wanted(self.query, before, old_contexts):
                yield Event(CHANGE, when, source, _socket(after, self.contexts), NOW, what,
                            _socket(before, old_contexts))
        gone = {key: old[key] for key in closed}
        gone_index = _Destroys(gone)
        for listener, read in pending:
            if isinstance(read, Exception):
                yield from self._destroyed(listener, read, new, self.destroys)
                continue
            # a destroy of a socket the poll no longer lists is that socket's close
            unmatched = []
            for row in read.records:
                key = gone_index.find(row)
                entry = gone.pop(key, None) if key is not None else None
                if entry is not None:
                    self.destroyed.add(_cookie(row))
                    if _wanted(self.query, entry, old_contexts):
                        yield Event(CLOSE, when, DESTROY, _socket(entry, old_contexts), LAST_SEEN)
                else:
                    unmatched.append(row)
            yield from self._destroyed(listener, attrs.evolve(read, records=tuple(unmatched)), new, self.destroys)
        for entry in gone.values():
            if _wanted(self.query, entry, old_contexts):
                yield Event(CLOSE, when, source, _socket(entry, old_contexts), LAST_SEEN)

    def _notes(self, snap: Snapshot, when: float, source: str) -> Iterator[Event]:
        """Gaps for tables that could not be read (when one becomes so) and, once, owners we may not read."""
        problems = set()
        for note in snap.notes:
            if note.code is NoteCode.UNREADABLE_TABLE:
                problems.add((note.netns, note.kind))
                if (note.netns, note.kind) not in self.problems:
                    yield Event(GAP, when, source, text="%s: opens and closes there may be missed" % note.text)
            elif note.code in _OWNER_NOTES and note.code not in self.said_owners:
                self.said_owners.add(note.code)
                yield Event(GAP, when, source, text="%s (said once)" % note.text)
        self.problems = frozenset(problems)

    def _namespaces(self, snap: Snapshot, when: float, announce: bool) -> Iterator[Event]:
        """Listen in each namespace whose processes hold sockets; stop in those gone."""
        holders: Dict[int, int] = {}
        for row, owners, _ in snap.sockets.entries:
            if owners and row[Row.NETNS] is not None:
                holders.setdefault(row[Row.NETNS], owners[0][OWNER_PID])
        own = self.own.inode
        for inode, pid in sorted(holders.items()):
            if inode not in self.listeners and inode != own:
                yield from self._listen(Netns(inode, pid), when, announce)
        for inode, listener in list(self.listeners.items()):
            if inode != own and inode not in holders:
                self._unlisten(listener)
                yield Event(GAP, when, POLL, text="network namespace %s: no process holds a socket in it any more; "
                            "its destroy notifications are no longer heard" % inode)
