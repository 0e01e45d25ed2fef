"""`procsock.diff(old, new)`: what changed between two snapshots, socket by socket.

Sockets are matched by identity (`SocketIdentity.same_socket`: namespace, kind, inode, and the
cookie where both sides know it, so a reused inode is a new socket). A socket only in `new` is
added, only in `old` removed; one in both is changed when its state or an endpoint differs, when
its owners, compared as (pid, fd) sets, gained or lost one, when its queues moved by more than
`queue_threshold` (None: queues are not compared), or when its owners' context changed (an
owner, by (pid, fd), whose Context differs; only where both snapshots computed it: a snapshot
taken without context says nothing of it).
"""

from typing import Dict, FrozenSet, List, Optional, Tuple

import attrs

from procsock.model import Context, Owner, Snapshot, Socket, SocketIdentity

__all__ = ["Change", "Diff", "context_changes", "diff"]

Holder = Tuple[int, int]  # (pid, fd)


@attrs.frozen
class Change:
    """One socket in both snapshots that differs: `fields` names what ("state", "local", "remote",
    "recv_q", "send_q", "owners", "context"); `gained`/`lost` are the (pid, fd) of its owners only
    in `new`/only in `old`."""

    old: Socket
    new: Socket
    fields: Tuple[str, ...]
    gained: FrozenSet[Holder] = frozenset()
    lost: FrozenSet[Holder] = frozenset()

    @property
    def identity(self) -> SocketIdentity:
        return self.new.record.identity


@attrs.frozen
class Diff:
    """Sockets added, removed and changed from `old` to `new`, each in the order its snapshot lists them."""

    added: Tuple[Socket, ...]
    removed: Tuple[Socket, ...]
    changed: Tuple[Change, ...]

    @property
    def same(self) -> bool:
        """Whether nothing differs."""
        return not (self.added or self.removed or self.changed)


def _holders(owners: Tuple[Owner, ...]) -> FrozenSet[Holder]:
    return frozenset((owner.pid, owner.fd) for owner in owners)


def context_changes(old: Socket, new: Socket) -> Dict[Holder, Tuple[Context, Context]]:
    """The owners, by (pid, fd), in both `old` and `new` whose Context (cgroup, unit, container,
    pod, user, command line, plugins' fields) differs, with it before and after; owners without
    a computed context on either side are left out. The one place owner context is compared."""
    before = {(owner.pid, owner.fd): owner.context for owner in old.owners if owner.context is not None}
    changed = {}
    for owner in new.owners:
        was = before.get((owner.pid, owner.fd))
        if was is not None and owner.context is not None and was != owner.context:
            changed[owner.pid, owner.fd] = (was, owner.context)
    return changed


def _changed(old: Socket, new: Socket, queue_threshold: Optional[int]) -> Optional[Change]:
    a, b = old.record, new.record
    fields = [name for name in ("state", "local", "remote") if getattr(a, name) != getattr(b, name)]
    if queue_threshold is not None:
        for name in ("rx_queue", "tx_queue"):
            before, after = getattr(a, name), getattr(b, name)
            if (before is None) != (after is None) or (before is not None and abs(after - before) > queue_threshold):
                fields.append("recv_q" if name == "rx_queue" else "send_q")
    was, now = _holders(old.owners), _holders(new.owners)
    if was != now:
        fields.append("owners")
    if context_changes(old, new):
        fields.append("context")
    if not fields:
        return None
    return Change(old, new, tuple(fields), now - was, was - now)


def diff(old: Snapshot, new: Snapshot, queue_threshold: Optional[int] = None) -> Diff:
    """What changed from `old` to `new` (see the module); `queue_threshold` in bytes (or
    connections, for a listener), None to leave queues out."""
    if queue_threshold is not None and (isinstance(queue_threshold, bool) or not isinstance(queue_threshold, int)
                                        or queue_threshold < 0):
        raise TypeError("queue_threshold takes a whole number of 0 or more, or None")
    waiting: Dict[tuple, List[Tuple[SocketIdentity, Socket]]] = {}
    for sock in old.sockets:
        identity = sock.record.identity
        waiting.setdefault(identity.key, []).append((identity, sock))
    matched = set()  # ids of old Sockets matched
    added, changed = [], []
    for sock in new.sockets:
        identity = sock.record.identity
        candidates = waiting.get(identity.key, ())
        found = next((i for i, (other, _) in enumerate(candidates) if other.same_socket(identity)), None)
        if found is None:
            added.append(sock)
            continue
        _, before = candidates.pop(found)
        matched.add(id(before))
        change = _changed(before, sock, queue_threshold)
        if change is not None:
            changed.append(change)
    removed = tuple(sock for sock in old.sockets if id(sock) not in matched)
    return Diff(tuple(added), removed, tuple(changed))
