"""Saved output as input: `procsock.load(path)` turns a saved `--json` document or `--jsonl`
file back into a Snapshot.

A saved file is untrusted input: it is read within `Source.max_input_bytes`
(`procsock.inputs.read_named_file`), parsed without floats, NaN or unbounded nesting, and every
value is checked before it becomes part of a record (the door `is_row` keeps for plugins):
types, ranges, each endpoint in its family's form, escaped text that matches its exact bytes,
and an `id` that names the socket its fields describe. Anything else is an InputError naming the
file and where in it (`FILE:LINE: ...` for a line, `FILE: sockets[N].field: ...` in a document).

`selected(snapshot, query)` keeps what a query asks for of a snapshot already taken (a loaded one):
how filters apply to saved output, a bundle and both sides of `procsock diff`.
"""

import json
import os
import socket
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import attrs

from procsock.errors import InputError
from procsock.inputs import read_named_file
from procsock.model import (
    BUILTIN_KINDS, CONTEXT_FIELDS, DEFAULT_MAX_INPUT_BYTES, OWNER_PID, Context, Family, FrozenDict,
    InetAddress, Note, NoteCode, Owner, Query, Row,
    Snapshot, SocketKind, Sockets, SockType, State, UnixAddress, Unresolved, cgroup_moved, identity_text_of_row, is_row,
    netid,
)
from procsock.schema import SCHEMA_MAJOR
from procsock.text import escape_text, unescape_text

__all__ = ["SavedEndpoint", "load", "load_text", "selected"]

_U64 = 2**64 - 1
_DEPTH = 32  # far more nesting than the format has
_OWNER_KEYS = ("pid", "fd", "process", "process_hex", "uid", "tid", "context")
_SOCKET_KEYS = (
    "id", "inode", "kind", "netid", "family", "type", "protocol", "state", "local", "remote", "peer_inode", "recv_q",
    "send_q", "uid", "netns", "interface", "cookie", "extended", "cgroup_moved", "backend", "owners", "peer_owners",
)
_DOCUMENT_KEYS = (
    "schema", "sockets", "answered_by", "notes", "skipped", "unreadable_processes", "netns_names", "retries",
    "unresolved",
)
_BUILTIN_ENDPOINTS = {
    Family.INET: ("address", "port"), Family.INET6: ("address", "port"), Family.UNIX: ("name", "name_hex", "abstract"),
    Family.PACKET: ("ifindex", "ethertype"), Family.NETLINK: ("protocol", "portid", "groups"),
}
_OWN_PROTOCOL = {Family.UNIX: "unix", Family.PACKET: "packet", Family.NETLINK: "netlink"}
_U32 = 2**32 - 1
# A netlink socket's groups are the bitmap of every group it joined (group N is bit N-1): sock_diag
# gives them all, past sockaddr_nl's 32. Bounded at 4096 groups, far above any netlink family's.
_ENDPOINT_HIGHS = {(Family.NETLINK, "groups"): 2**4096 - 1}  # the other numbers: u32
_TIMER_KEYS = (("timer", 0xFF), ("expires_ms", _U32), ("retrans", 0xFF))  # Extended.timer's, in its order
_PACKET_HIGHS = {"fanout_id": 0xFFFF, "fanout_type": 0xFF, "fanout_flags": 0xFF}  # the others: u32
_RING_KEYS = ("block_size", "block_nr", "frame_size", "frame_nr", "retire_tmo", "sizeof_priv", "features")


class _Bad(Exception):
    """A value refused: where (a path in the document) and why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(where, reason)
        self.where, self.reason = where, reason


@attrs.frozen
class SavedEndpoint:
    """A plugin's endpoint as a saved file has it: the fields its `as_dict()` gave (scalars), so
    that saving it again writes the same object; shown by its `text` field, else by its fields."""

    fields: FrozenDict

    def as_dict(self) -> dict:
        return dict(self.fields)

    def __str__(self) -> str:
        text = self.fields.get("text")
        if isinstance(text, str):
            return text
        return " ".join("%s=%s" % item for item in sorted(self.fields.items()))


def _int(value: Any, where: str, low: int = 0, high: int = _U64, null: bool = False) -> Optional[int]:
    if value is None and null:
        return None
    if type(value) is not int:
        raise _Bad(where, "not %s" % ("an integer or null" if null else "an integer"))
    if not low <= value <= high:
        raise _Bad(where, "%d is outside %d..%d" % (value, low, high))
    return value


def _str(value: Any, where: str, null: bool = False) -> Optional[str]:
    if value is None and null:
        return None
    if type(value) is not str:
        raise _Bad(where, "not a string" + (" or null" if null else ""))
    return value


def _list(value: Any, where: str) -> list:
    if type(value) is not list:
        raise _Bad(where, "not a list")
    return value


def _object(value: Any, where: str, keys: Iterable[str], optional: Iterable[str] = ()) -> dict:
    """`value`, if an object with exactly the `keys`, and any of the `optional` ones."""
    if type(value) is not dict:
        raise _Bad(where, "not an object")
    keys = tuple(keys)
    if set(value) - set(optional) != set(keys):
        unknown = sorted(set(value) - set(keys) - set(optional))
        missing = [k for k in keys if k not in value]
        raise _Bad(where, "unknown field %s" % escape_text(repr(unknown[0])[:40]) if unknown
                   else "missing field %r" % missing[0])
    return value


def _hex(value: Any, where: str) -> bytes:
    text = _str(value, where)
    try:
        if text != text.lower():
            raise ValueError
        return bytes.fromhex(text) if len(text) % 2 == 0 and " " not in text else bytes.fromhex("x")
    except ValueError:
        raise _Bad(where, "not lowercase hex bytes") from None


def _enum(cls, value: Any, where: str):
    try:
        return cls[_str(value, where)]
    except KeyError:
        raise _Bad(where, "not a %s name" % cls.__name__) from None


def _text(value: Any, where: str) -> Optional[str]:
    """Escaped text (or null) as the text it shows."""
    shown = _str(value, where, null=True)
    try:
        return None if shown is None else unescape_text(shown)
    except ValueError as exc:
        raise _Bad(where, str(exc)) from None


def _context(value: Any, where: str) -> Optional[Context]:
    """An owner's saved context: the fields a context plugin may give (procsock.context's door)."""
    if value is None:
        return None
    from procsock.context import checked_answer

    fields = _object(value, where, CONTEXT_FIELDS + ("extra",))
    extra = fields["extra"]
    if type(extra) is not dict or len(extra) > 256:
        raise _Bad(where + ".extra", "not an object of at most 256 fields")
    if set(extra) & set(CONTEXT_FIELDS):
        raise _Bad(where + ".extra", "holds a field of the context itself")
    given = {key: _int(fields[key], "%s.%s" % (where, key), null=True) if key == "cgroup_id"
             else _text(fields[key], "%s.%s" % (where, key)) for key in CONTEXT_FIELDS}
    for key, shown in extra.items():
        given[key] = shown if type(shown) is int else _text(shown, "%s.extra.%s" % (where, escape_text(key[:64])))
    try:
        checked = checked_answer(given)
    except ValueError as exc:
        raise _Bad(where, "not a context procsock holds (%s)" % exc) from None
    return Context(**{key: checked[key] for key in CONTEXT_FIELDS},
                   extra={key: checked[key] for key in extra})


def _owner(value: Any, where: str) -> Tuple[tuple, Optional[Context]]:
    """An owner row and its process's saved Context (None when the owner had none)."""
    fields = _object(value, where, _OWNER_KEYS)
    name = os.fsdecode(_hex(fields["process_hex"], where + ".process_hex"))
    if escape_text(name) != _str(fields["process"], where + ".process"):
        raise _Bad(where + ".process", "does not match process_hex")
    owner = (
        _int(fields["pid"], where + ".pid", 1), _int(fields["fd"], where + ".fd", 0, 2**31 - 1), name,
        _int(fields["uid"], where + ".uid", 0, _U32, null=True),
        _int(fields["tid"], where + ".tid", 1, 2**31 - 1, null=True),
    )
    return owner, _context(fields["context"], where + ".context")


def _endpoint(family: Family, value: Any, where: str):
    """The compact form (a row's) of a saved endpoint of `family`."""
    keys = _BUILTIN_ENDPOINTS.get(family)
    if keys is None and type(value) is dict and set(value) == {"address", "port"}:  # a plugin's InetAddress (smc)
        fields = _object(value, where, ("address", "port"))
        v6 = ":" in _str(fields["address"], where + ".address")
        return InetAddress(*_inet(Family.INET6 if v6 else Family.INET, fields, where))
    if keys is None:  # a plugin's family: its fields as they were saved
        if type(value) is not dict or not all(
                type(v) in (str, int, bool, type(None)) for v in value.values()) or len(value) > 64:
            raise _Bad(where, "not an object of plain values")
        return SavedEndpoint(FrozenDict(value))
    fields = _object(value, where, keys)
    if family in (Family.INET, Family.INET6):
        return _inet(family, fields, where)
    if family is Family.UNIX:
        name = _hex(fields["name_hex"], where + ".name_hex")
        if len(name) > 108:
            raise _Bad(where + ".name_hex", "longer than sun_path (108 bytes)")
        if UnixAddress.text(name) != fields["name"] or fields["abstract"] is not (name[:1] == b"\0"):
            raise _Bad(where, "name and abstract do not match name_hex")
        return (name,)
    return tuple(_int(fields[key], "%s.%s" % (where, key), 0, _ENDPOINT_HIGHS.get((family, key), _U32)) for key in keys)


def _inet(family: Family, fields: dict, where: str) -> tuple:
    """The (packed, port) of an inet endpoint's fields."""
    address = _str(fields["address"], where + ".address")
    try:
        packed = socket.inet_pton(socket.AF_INET if family is Family.INET else socket.AF_INET6, address)
    except (OSError, ValueError):
        raise _Bad(where + ".address", "not an address of family %s" % family.name) from None
    if InetAddress.host_of(packed) != address:
        raise _Bad(where + ".address", "not written as procsock writes it")
    return (packed, _int(fields["port"], where + ".port", 0, 0xFFFF))


def _packet(value: Any, where: str):
    from procsock.details import PacketInfo, PacketRing

    fields = _object(value, where, (f.name for f in attrs.fields(PacketInfo)))
    rings = {}
    for key in ("rx_ring", "tx_ring"):
        ring = None if fields[key] is None else _object(fields[key], "%s.%s" % (where, key), _RING_KEYS)
        rings[key] = ring and PacketRing(**{k: _int(v, "%s.%s.%s" % (where, key, k), 0, _U32) for k, v in ring.items()})
    numbers = {k: _int(v, "%s.%s" % (where, k), 0, _PACKET_HIGHS.get(k, _U32), null=True)
               for k, v in fields.items() if k not in rings}
    return PacketInfo(**numbers, **rings)


def _netlink(value: Any, where: str):
    from procsock.details import NetlinkInfo

    fields = _object(value, where, ("groups", "flags"))
    groups = tuple(_int(g, where + ".groups", 1, _U32) for g in _list(fields["groups"], where + ".groups"))
    if list(groups) != sorted(set(groups)):
        raise _Bad(where + ".groups", "not ascending group numbers")
    return NetlinkInfo(groups, _int(fields["flags"], where + ".flags", 0, _U32, null=True))


def _timer(value: Any, where: str) -> Tuple[int, int, int]:
    fields = _object(value, where, (key for key, _ in _TIMER_KEYS))
    return tuple(_int(fields[key], "%s.%s" % (where, key), 0, high) for key, high in _TIMER_KEYS)


def _extended(value: Any, where: str):
    if value is None:
        return None
    from procsock.details import Extended, MemInfo, TcpInfo

    fields = _object(value, where, Extended().as_dict(), ("packet", "netlink", "timer"))  # those: only when set
    tcp_info = meminfo = pending = None
    if fields["tcp_info"] is not None:
        info = fields["tcp_info"]
        known = {f.name for f in attrs.fields(TcpInfo)}
        if type(info) is not dict or not set(info) <= known:
            raise _Bad(where + ".tcp_info", "not an object of tcp_info fields")
        tcp_info = TcpInfo(**{k: _int(v, "%s.tcp_info.%s" % (where, k)) for k, v in info.items()})
    if fields["meminfo"] is not None:
        names = [f.name for f in attrs.fields(MemInfo)]
        mem = _object(fields["meminfo"], where + ".meminfo", names)
        meminfo = MemInfo(**{k: _int(mem[k], "%s.meminfo.%s" % (where, k)) for k in names})
    if fields["pending"] is not None:
        pending = tuple(_int(i, where + ".pending") for i in _list(fields["pending"], where + ".pending"))
    numbers = {k: _int(fields[k], "%s.%s" % (where, k), null=True)
               for k in ("shutdown", "mark", "cgroup_id", "vfs_inode", "vfs_dev")}
    own = {key: read(fields[key], "%s.%s" % (where, key))
           for key, read in (("packet", _packet), ("netlink", _netlink), ("timer", _timer)) if key in fields}
    return Extended(tcp_info=tcp_info, meminfo=meminfo, pending=pending,
                    congestion=_str(fields["congestion"], where + ".congestion", null=True), **numbers, **own)


class _Reader:
    """Turns saved JSON objects into rows, owners and the rest; `kinds` are the kinds known by name."""

    def __init__(self, kinds: Iterable[SocketKind]) -> None:
        self.kinds: Dict[str, SocketKind] = {kind.name: kind for kind in kinds}
        self.contexts: Dict[int, Optional[Context]] = {}  # pid → its Context, as every owner of it says

    def owners(self, value: Any, where: str) -> Tuple[tuple, ...]:
        """Owner rows; each owner's context is its process's, so every owner of a pid must give the same."""
        found = []
        for i, item in enumerate(_list(value, where)):
            at = "%s[%d]" % (where, i)
            owner, context = _owner(item, at)
            if self.contexts.setdefault(owner[OWNER_PID], context) != context:
                raise _Bad(at + ".context", "differs from another owner's of process %d (a process has one)" % owner[0])
            found.append(owner)
        return tuple(found)

    def known_contexts(self) -> FrozenDict:
        return FrozenDict({pid: context for pid, context in self.contexts.items() if context is not None})

    def kind(self, name: str, family: Family, shown_netid: str, sock_type: SockType, where: str) -> SocketKind:
        kind = self.kinds.get(name)
        if kind is None:  # a plugin's kind this installation does not have: as the file describes it
            kind = self.kinds[name] = SocketKind(name, family, _OWN_PROTOCOL.get(family, shown_netid))
        if kind.family is not family:
            raise _Bad(where + ".family", "%s is not the family of kind %s" % (family.name, escape_text(name)))
        if netid(kind, sock_type) != shown_netid:
            raise _Bad(where + ".netid", "does not match kind and type")
        return kind

    def entry(self, value: Any, where: str, keys: Tuple[str, ...] = _SOCKET_KEYS):
        fields = _object(value, where, keys)
        at = lambda key: "%s.%s" % (where, key)  # noqa: E731
        family = _enum(Family, fields["family"], at("family"))
        sock_type = _enum(SockType, fields["type"], at("type"))
        kind = self.kind(_str(fields["kind"], at("kind")), family, _str(fields["netid"], at("netid")), sock_type, where)
        remote = fields["remote"]
        row = (
            kind, _int(fields["inode"], at("inode")), sock_type, _int(fields["protocol"], at("protocol"), 0, 2**32 - 1),
            _enum(State, fields["state"], at("state")), _endpoint(family, fields["local"], at("local")),
            None if remote is None else _endpoint(family, remote, at("remote")),
            _int(fields["recv_q"], at("recv_q"), null=True), _int(fields["send_q"], at("send_q"), null=True),
            _int(fields["uid"], at("uid"), 0, 2**32 - 1, null=True), _str(fields["backend"], at("backend")),
            _int(fields["peer_inode"], at("peer_inode"), null=True), _int(fields["netns"], at("netns"), null=True),
            _int(fields["interface"], at("interface"), 0, 2**32 - 1, null=True),
            _int(fields["cookie"], at("cookie"), null=True), _extended(fields["extended"], at("extended")),
        )
        if not is_row(row):
            raise _Bad(where, "not a socket procsock can hold")
        if identity_text_of_row(row) != fields["id"]:
            raise _Bad(at("id"), "does not name the socket its fields describe")
        owners = self.owners(fields["owners"], at("owners"))
        if fields["cgroup_moved"] is not cgroup_moved(row, owners, self.contexts):  # true, false, null: as written
            raise _Bad(at("cgroup_moved"), "does not follow from extended.cgroup_id and the owners' context")
        return row, owners, self.owners(fields["peer_owners"], at("peer_owners"))

    def snapshot(self, document: Any) -> Snapshot:
        fields = _object(document, "document", _DOCUMENT_KEYS)
        _version(fields["schema"], "schema")
        sockets = _list(fields["sockets"], "sockets")
        entries = [self.entry(s, "sockets[%d]" % i) for i, s in enumerate(sockets)]
        answered = fields["answered_by"]
        if type(answered) is not dict:
            raise _Bad("answered_by", "not an object")
        notes = []
        for i, note in enumerate(_list(fields["notes"], "notes")):
            where = "notes[%d]" % i
            note = _object(note, where, ("code", "text", "kind", "backend", "netns"))
            try:
                code = NoteCode(_str(note["code"], where + ".code"))
            except ValueError:
                raise _Bad(where + ".code", "not a note code") from None
            notes.append(Note(code, _str(note["text"], where + ".text"), _str(note["kind"], where + ".kind", True),
                              _str(note["backend"], where + ".backend", True),
                              _int(note["netns"], where + ".netns", null=True)))
        unresolved = {}
        for i, item in enumerate(_list(fields["unresolved"], "unresolved")):
            where = "unresolved[%d]" % i
            item = _object(item, where, ("inode", "owners", "reason"))
            inode = _int(item["inode"], where + ".inode")
            held = self.owners(item["owners"], where + ".owners")
            owners = tuple(Owner(*o, self.contexts[o[OWNER_PID]]) for o in held)
            unresolved[inode] = Unresolved(inode, owners, _str(item["reason"], where + ".reason"))
        names = fields["netns_names"]
        if type(names) is not dict or not all(k.isascii() and k.isdigit() and len(k) <= 20 for k in names):
            raise _Bad("netns_names", "not an object of namespace inodes")
        return Snapshot(
            sockets=Sockets(entries, self.known_contexts()),
            answered_by={_str(k, "answered_by"): _str(v, "answered_by." + k) for k, v in answered.items()},
            notes=tuple(notes),
            skipped=tuple(_str(s, "skipped") for s in _list(fields["skipped"], "skipped")),
            unreadable_processes=tuple(_int(p, "unreadable_processes", 1)
                                       for p in _list(fields["unreadable_processes"], "unreadable_processes")),
            unresolved=unresolved,
            netns_names={int(k): _str(v, "netns_names." + k) for k, v in names.items()},
            retries=_int(fields["retries"], "retries"),
        )


def _version(value: Any, where: str) -> None:
    version = _str(value, where)
    if version.split(".")[0] != SCHEMA_MAJOR:
        raise _Bad(where, "version %s: this procsock reads schema %s.x" % (escape_text(version[:20]), SCHEMA_MAJOR))


def _refuse_constant(name: str):
    raise ValueError("%s is not a number procsock writes" % name)


def _parse(text: str) -> Any:
    """JSON text as Python values, refusing floats, NaN and deep nesting."""
    if text.count("[") + text.count("{") > _DEPTH and _too_deep(text):
        raise ValueError("nested deeper than %d" % _DEPTH)
    return json.loads(text, parse_float=_refuse_float, parse_constant=_refuse_constant)


def _refuse_float(text: str):
    raise ValueError("%s: procsock writes no fractions" % text[:20])


def _too_deep(text: str) -> bool:
    """Whether brackets outside strings nest deeper than _DEPTH (json.loads would recurse that deep)."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > _DEPTH:
                return True
        elif char in "]}":
            depth -= 1
    return False


def load_text(text: str, source: str = "<text>", kinds: Iterable[SocketKind] = BUILTIN_KINDS) -> Snapshot:
    """A Snapshot from the text of a `--json` document or of `--jsonl` lines (`source` names it in
    errors); `kinds` are the kinds known by name (others are taken as the text describes them)."""
    reader = _Reader(kinds)
    stripped = text.lstrip()
    if not stripped:  # a truncated file must not read as a host without sockets
        raise InputError(source, "empty: neither a --json document nor --jsonl lines (truncated?)")
    # a document: --json writes its opening brace alone on a line; one line may be either form
    if stripped.split("\n", 1)[0].strip() == "{" or "\n" not in stripped.rstrip():
        try:
            document = _parse(text)
        except (ValueError, RecursionError) as exc:
            raise InputError(source, "not a procsock --json document (%s)" % _reason(exc)) from None
        if type(document) is not dict or "sockets" in document or "schema" not in document:
            try:
                return reader.snapshot(document)
            except _Bad as exc:
                raise InputError(source, "%s: %s" % (exc.where, exc.reason)) from None
    entries: List[tuple] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = "%s:%d" % (source, number)
        try:
            value = _parse(line)
        except (ValueError, RecursionError) as exc:
            raise InputError(where, "not a procsock --jsonl line (%s)" % _reason(exc)) from None
        try:
            if type(value) is not dict or "schema" not in value:
                raise _Bad("line", "not a procsock --jsonl line (no schema field)")
            _version(value["schema"], "schema")
            entries.append(reader.entry(value, "line", ("schema",) + _SOCKET_KEYS))
        except _Bad as exc:
            raise InputError(where, "%s: %s" % (exc.where, exc.reason)) from None
    return Snapshot(sockets=Sockets(entries, reader.known_contexts()), answered_by={})


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deep"
    return escape_text(str(exc).splitlines()[0][:120])


def load(path: str, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
         kinds: Optional[Iterable[SocketKind]] = None) -> Snapshot:
    """The Snapshot a saved `procsock --json` or `--jsonl` file holds (the model objects the run
    that wrote it had; a `--jsonl` file holds sockets only). `kinds` default to every kind the
    installed backends serve. Raises InputError naming the file (and line) on bad input."""
    data = read_named_file(os.fspath(path), max_input_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, "not UTF-8 text (byte %d)" % exc.start) from None
    if kinds is None:
        from procsock.api import default_registry

        kinds = BUILTIN_KINDS + default_registry().kinds()
    return load_text(text, os.fspath(path), kinds)


def selected(snapshot: Snapshot, query: Query) -> Snapshot:
    """`snapshot` with only the sockets `query` keeps (its kinds, states, ports, namespaces, filter
    expression, owners' context, and with `pid`, the sockets those processes hold), as a snapshot
    taken with the query would list them (with details only if the query asks for them)."""
    found = Sockets.of(snapshot.sockets)
    contexts = found.contexts

    def keeps(row: tuple, owners: Sequence[tuple]) -> bool:
        return query.wants_kind(row[Row.KIND]) and query.wants_row(row, owners, contexts) and (
            query.pid is None or any(owner[OWNER_PID] in query.pid for owner in owners)) and (
            not query.filters_context or query.wants_owners(owners, contexts))

    def plain(row: tuple) -> tuple:  # details only when asked for, as a snapshot gives them
        return row if query.details or row[Row.EXTENDED] is None else row[:Row.EXTENDED] + (None,)

    kept = Sockets([(plain(e[0]),) + e[1:] for e in found.entries if keeps(e[0], e[1])], contexts)
    unresolved = snapshot.unresolved if query.selects_all and query.pid is None else {}
    return attrs.evolve(snapshot, sockets=kept, unresolved=unresolved)
