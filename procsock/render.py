"""Output forms of a snapshot: an aligned table for people, JSON documents and lines for machines.

Text for people never carries a raw control byte: every string that came from the kernel, a file
or a plugin goes through `escape_text` (names, netids, details, notes, comparisons) exactly once.
JSON keeps exact text (and exact bytes as hex beside the escaped names).
"""

import collections
import enum
import itertools
import os
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # imported by `procsock compare` only; -r's names
    from procsock.compare import Comparison, Comparisons, FieldDiff
    from procsock.names import Names
from procsock.model import (
    NO_CONTEXTS, OWNER_PID, OWNER_UID, Context, Contexts, Family, InetAddress, NetlinkAddress, Owner, PacketAddress,
    Row, Snapshot, Socket, SocketRecord, Sockets, UnixAddress, cgroup_moved, endpoint_dict, endpoint_text,
    identity_text_of_row, netid, owner_row,
)
from procsock.schema import SCHEMA_VERSION
from procsock.ssdetails import details_text
from procsock.text import escape_text

TABLE_HEADER = ("Netid", "State", "Recv-Q", "Send-Q", "Local", "Peer", "Inode", "Process")
NETNS_HEADER = "Netns"
CONTEXT_HEADER = ("User", "Context")  # with -C, before Process
_BLOCK = 1024  # rows whose cells table_lines makes at once


Entry = Tuple[tuple, Tuple[tuple, ...], Tuple[tuple, ...]]  # a row, its owner rows, its peer's owner rows


def entries(sockets: Iterable[Socket]) -> Sequence[Entry]:
    """The (row, owner rows, peer owner rows) of each socket: a snapshot's as they are, other
    Sockets converted (the writers work on rows: see procsock.model.Row; the owners' contexts
    are in `Sockets.of(sockets).contexts`)."""
    return Sockets.of(sockets).entries


def owner_to_dict(owner: Owner) -> dict:
    return owner_row_dict(owner_row(owner), owner.context)


def owner_row_dict(owner: tuple, context: Optional[Context] = None) -> dict:
    """The JSON object of an owner row, with its process's Context (None when not computed)."""
    pid, fd, name, uid, tid = owner
    return {"pid": pid, "fd": fd, "process": escape_text(name), "process_hex": os.fsencode(name).hex(),
            "uid": uid, "tid": tid, "context": context_dict(context)}


def context_dict(context: Optional[Context]) -> Optional[dict]:
    """An owner's Context as JSON fields, text escaped (None when not computed)."""
    if context is None:
        return None
    shown = {key: escape_text(value) if isinstance(value, str) else value
             for key, value in context.as_dict().items()}
    shown["extra"] = {key: escape_text(value) if isinstance(value, str) else value
                      for key, value in context.extra.items()}
    return shown


def context_label(context: Optional[Context]) -> str:
    """What holds a process, in a word or two, escaped: its pod (namespace/name, else UID) and
    container (runtime:first 12 characters of its id), else its systemd unit, else its cgroup
    path; "-" when none is known."""
    if context is None:
        return "-"
    parts = []
    if context.pod_uid is not None or context.pod_name is not None:
        name = context.pod_name and "%s/%s" % (context.pod_namespace or "-", context.pod_name)
        parts.append("pod:" + (name or context.pod_uid))
    if context.container_id is not None:
        parts.append("%s:%s" % (context.container_runtime or "container", context.container_id[:12]))
    elif context.unit is not None and not parts:
        parts.append(context.unit)
    if not parts and (context.cgroup or context.cgroup_v1):
        parts.append(context.cgroup or context.cgroup_v1)
    return escape_text(",".join(parts)) if parts else "-"


def socket_to_dict(sock: Socket) -> dict:
    found = Sockets.of((sock,))
    return entry_dict(found.entries[0], contexts=found.contexts)


def entry_dict(entry: Entry, owner_dicts: Optional[Dict[tuple, dict]] = None,
               contexts: Contexts = NO_CONTEXTS) -> dict:
    """The JSON object of one socket, its owners with their processes' `contexts` (pid →
    Context). `owner_dicts` caches each owner's object across sockets (a process's name is
    escaped once)."""
    row, owners, peer_owners = entry
    kind, family = row[Row.KIND], row[Row.KIND].family
    extended = row[Row.EXTENDED]
    if owner_dicts is None:
        owner_dicts = {}

    def shown(owner: tuple) -> dict:
        found = owner_dicts.get(owner)
        if found is None:
            found = owner_dicts[owner] = owner_row_dict(owner, contexts.get(owner[OWNER_PID]))
        return found

    return {
        "id": identity_text_of_row(row),
        "inode": row[Row.INODE],
        "kind": kind.name,
        "netid": netid(kind, row[Row.TYPE]),
        "family": family.name,
        "type": row[Row.TYPE].name,
        "protocol": row[Row.PROTOCOL],
        "state": row[Row.STATE].name,
        "local": endpoint_dict(family, row[Row.LOCAL]),
        "remote": endpoint_dict(family, row[Row.REMOTE]),
        "peer_inode": row[Row.PEER_INODE],
        "recv_q": row[Row.RX_QUEUE],
        "send_q": row[Row.TX_QUEUE],
        "uid": row[Row.UID],
        "netns": row[Row.NETNS],
        "interface": row[Row.INTERFACE],
        "cookie": row[Row.COOKIE],
        "extended": None if extended is None else extended.as_dict(),
        "cgroup_moved": cgroup_moved(row, owners, contexts),
        "backend": row[Row.BACKEND],
        "owners": [shown(o) for o in owners],
        "peer_owners": [shown(o) for o in peer_owners],
    }


def snapshot_to_dict(snap: Snapshot) -> dict:
    owner_dicts: Dict[tuple, dict] = {}
    found = Sockets.of(snap.sockets)
    return {
        "schema": SCHEMA_VERSION,
        "sockets": [entry_dict(entry, owner_dicts, found.contexts) for entry in found.entries],
        **_snapshot_fields(snap),
    }


def _snapshot_fields(snap: Snapshot) -> dict:
    """Everything of the JSON document but its sockets, in its order."""
    return {
        "answered_by": snap.answered_by,
        "notes": [note.as_dict() for note in snap.notes],
        "skipped": list(snap.skipped),
        "unreadable_processes": list(snap.unreadable_processes),
        "netns_names": {str(inode): name for inode, name in snap.netns_names.items()},
        "retries": snap.retries,
        "unresolved": [
            {"inode": u.inode, "owners": [owner_to_dict(o) for o in u.owners], "reason": u.reason}
            for _, u in sorted(snap.unresolved.items())
        ],
    }


_CHUNK = 512  # sockets per piece of JSON text handed to the writer


def _encoded_sockets(snap: Snapshot, separator: str, lines: bool = False) -> Iterator[str]:
    """The sockets' JSON objects (`lines`: each `line_dict`'s, else `entry_dict`'s), `separator`
    after each but the last, joined in chunks, so memory holds a chunk of text, not the whole
    document (see `_SocketJson` for how each is written)."""
    sockets = Sockets.of(snap.sockets)
    found, write = sockets.entries, _SocketJson(sockets.contexts, lines).text
    for at in range(0, len(found), _CHUNK):
        chunk = separator.join([write(entry) for entry in found[at:at + _CHUNK]])
        yield chunk if at + _CHUNK >= len(found) else chunk + separator


def _type_name(value) -> str:
    return "<%s>" % type(value).__name__


class _SocketJson:
    """Writes `entry_dict(entry)` as JSON text, the same text `json.dumps` writes, several times
    faster: what repeats (a kind's names, a state, a backend, a process's name, an inet address,
    an unnamed unix socket) is encoded once, inet and unix endpoints, owners and numbers are
    formatted in place, and anything else (details, other families' endpoints, a plugin's values
    of other types) goes through json's own encoder, as does the whole socket if any value is
    not what a row holds."""

    _FORMAT = (
        '{"id": %s, "inode": %s, %s, "protocol": %s, "state": %s, "local": %s, "remote": %s, "peer_inode": %s, '
        '"recv_q": %s, "send_q": %s, "uid": %s, "netns": %s, "interface": %s, "cookie": %s, "extended": %s, '
        '"cgroup_moved": %s, "backend": %s, "owners": [%s], "peer_owners": [%s]}'
    )

    def __init__(self, contexts: Contexts = NO_CONTEXTS, lines: bool = False) -> None:
        import json  # only here: the table, the common case, needs none of it
        from json.encoder import encode_basestring_ascii

        self.encode = json.JSONEncoder(check_circular=False).encode
        # the last resort for a plugin's value json cannot write: its type's name
        self.lenient = json.JSONEncoder(check_circular=False, default=_type_name).encode
        self.string = encode_basestring_ascii
        self.heads: Dict[tuple, str] = {}  # (kind's id, type) → '"kind": ..., "type": ...'
        self.texts: Dict[object, str] = {}  # states, backends, addresses, contexts → their JSON text
        self.processes: Dict[str, str] = {}  # process name → its two JSON fields
        self.contexts = contexts  # pid → Context of the owners' processes
        # a --jsonl line (line_dict) is the socket's object with the schema version first
        self.format = '{"schema": "%s", %s' % (SCHEMA_VERSION, self._FORMAT[1:]) if lines else self._FORMAT
        self.whole = line_dict if lines else entry_dict

    def text(self, entry: Entry) -> str:
        try:
            return self._formatted(entry)
        except (TypeError, ValueError, AttributeError):
            return self.lenient(self.whole(entry, contexts=self.contexts))

    def _other(self, value) -> str:
        """A value that is not an int: null, or what json writes for it."""
        return "null" if value is None else self.encode(value)

    def _endpoint(self, family: Family, value) -> str:
        texts = self.texts
        if type(value) is tuple:
            if family is Family.INET or family is Family.INET6:
                packed, port = value
                if type(port) is int and type(packed) is bytes and len(packed) in (4, 16):
                    address = texts.get(packed)
                    if address is None:
                        address = texts[packed] = InetAddress.fields_dict(packed, port)["address"]
                    return '{"address": "%s", "port": %d}' % (address, port)
            elif family is Family.UNIX and type(value[0]) is bytes:
                (name,) = value
                return '{"name": %s, "name_hex": "%s", "abstract": %s}' % (
                    self.string(UnixAddress.text(name)), name.hex(), "true" if name[:1] == b"\0" else "false"
                )
        return "null" if value is None else self.encode(endpoint_dict(family, value))

    def _context(self, context: Optional[Context]) -> str:
        if context is None:
            return "null"
        text = self.texts.get(("context", id(context)))  # one Context per process
        if text is None:
            text = self.texts["context", id(context)] = self.encode(context_dict(context))
        return text

    def _owners(self, owners: Sequence[tuple]) -> str:
        shown, processes, contexts = [], self.processes, self.contexts
        for owner in owners:
            pid, fd, name, uid, tid = owner
            process = processes.get(name)
            if process is None:
                process = processes[name] = '"process": %s, "process_hex": "%s"' % (
                    self.string(escape_text(name)), os.fsencode(name).hex()
                )
            if type(pid) is int and type(fd) is int and (uid is None or type(uid) is int) and (
                    tid is None or type(tid) is int):
                shown.append('{"pid": %d, "fd": %d, %s, "uid": %s, "tid": %s, "context": %s}' % (
                    pid, fd, process, "null" if uid is None else uid, "null" if tid is None else tid,
                    self._context(contexts.get(pid)) if contexts else "null",
                ))
            else:
                shown.append(self.encode(owner_row_dict(owner, contexts.get(pid))))
        return ", ".join(shown)

    def _formatted(self, entry: Entry) -> str:
        (kind, inode, sock_type, protocol, state, local, remote, rx_queue, tx_queue, uid, backend, peer, netns,
         interface, cookie, extended), owners, peer_owners = entry
        head = self.heads.get((id(kind), sock_type))  # by identity: a kind's attrs hash is Python code
        if head is None:
            string = self.string
            head = self.heads[id(kind), sock_type] = '"kind": %s, "netid": %s, "family": %s, "type": %s' % (
                string(kind.name), string(netid(kind, sock_type)), string(kind.family.name), string(sock_type.name)
            )
        texts, other, family = self.texts, self._other, kind.family
        state_text = texts.get(state)
        if state_text is None:
            state_text = texts[state] = self.string(state.name)
        backend_text = texts.get(("backend", backend))
        if backend_text is None:
            backend_text = texts["backend", backend] = self.string(backend)
        return self.format % (
            self.string(identity_text_of_row(entry[0])),
            inode if type(inode) is int else other(inode), head,
            protocol if type(protocol) is int else other(protocol), state_text,
            self._endpoint(family, local), self._endpoint(family, remote),
            peer if type(peer) is int else other(peer),
            rx_queue if type(rx_queue) is int else other(rx_queue),
            tx_queue if type(tx_queue) is int else other(tx_queue),
            uid if type(uid) is int else other(uid),
            netns if type(netns) is int else other(netns),
            interface if type(interface) is int else other(interface),
            cookie if type(cookie) is int else other(cookie),
            "null" if extended is None else self.encode(extended.as_dict()),
            "null" if extended is None else self.encode(cgroup_moved(entry[0], owners, self.contexts)),
            backend_text, self._owners(owners) if owners else "", self._owners(peer_owners) if peer_owners else "",
        )


def json_document(snap: Snapshot) -> Iterator[str]:
    """`snapshot_to_dict` as JSON text, in pieces: one line per socket and per unresolved inode."""
    import json

    encode = json.JSONEncoder(check_circular=False).encode
    yield '{\n "schema": %s,\n "sockets": [' % encode(SCHEMA_VERSION)
    if len(snap.sockets):
        yield "\n  "
        yield from _encoded_sockets(snap, ",\n  ")
        yield "\n ]"
    else:
        yield "]"
    for key, value in _snapshot_fields(snap).items():
        head = ",\n %s: " % encode(key)
        if isinstance(value, list) and value:
            yield head + "[\n  " + ",\n  ".join(map(encode, value)) + "\n ]"
        else:
            yield head + encode(value)
    yield "\n}\n"


def line_dict(entry: Entry, contexts: Contexts = NO_CONTEXTS) -> dict:
    """The JSON object of one `--jsonl` line: the schema version, then the socket's fields."""
    return {"schema": SCHEMA_VERSION, **entry_dict(entry, contexts=contexts)}


def json_lines(snap: Snapshot) -> Iterator[str]:
    """One JSON object per socket and line (`--jsonl`), each `line_dict`: the socket's object
    with the schema version first."""
    yield from _encoded_sockets(snap, "\n", lines=True)
    if len(snap.sockets):
        yield "\n"


def _owner_text(owner: tuple, names: Dict[str, str]) -> str:
    """name,pid,fd; with ",tid=TID" for an fd in a thread's own fd table (an owner row). `names`
    caches each process name escaped."""
    pid, fd, name, _, tid = owner
    shown = names.get(name)
    if shown is None:
        shown = names[name] = escape_text(name)
    text = "%s,%d,%d" % (shown, pid, fd)
    return text if tid is None else "%s,tid=%d" % (text, tid)


def _owners_text(owners: Sequence[tuple], names: Dict[str, str]) -> str:
    if len(owners) == 1:
        return _owner_text(owners[0], names)
    return " ".join([_owner_text(owner, names) for owner in owners])


def table_rows(sockets: Iterable[Socket]) -> List[Tuple[str, ...]]:
    """The table's text cells of each socket (a snapshot's Sockets, or any Socket objects)."""
    return list(_cells(entries(sockets)))


def _cells(found: Iterable[Entry], resolved: Optional["Names"] = None) -> Iterator[Tuple[str, ...]]:
    """The cells of each entry: the hot loop of the table (one tuple unpacking a row; what repeats,
    a kind's netid and state label, an inet address, a process's name, is made once). With
    `resolved` names (-r), inet endpoints show host and service names where known."""
    names: Dict[str, str] = {}  # process name → escaped
    hosts: Dict[bytes, str] = {}  # packed inet address → its text
    labels: Dict[tuple, Tuple[str, str]] = {}  # (kind's id, type, state) → (netid, state label)

    def endpoint(family: Family, value, protocol: str = "") -> str:
        if type(value) is tuple and (family is Family.INET or family is Family.INET6) and type(value[0]) is bytes:
            packed, port = value
            host = hosts.get(packed)
            if host is None:
                host = hosts[packed] = InetAddress.host_of(packed)
            if resolved is not None:
                return resolved.endpoint_text(packed, port, protocol, host)
            return InetAddress.text(packed, port, host)
        return endpoint_text(family, value)

    unix = Family.UNIX
    for (kind, inode, sock_type, _, state, local, remote, rx_queue, tx_queue, _, _, peer, _, _, _, _), owners, \
            peer_owners in found:
        label = labels.get((id(kind), sock_type, state))  # by identity: a kind's attrs hash is Python code
        if label is None:
            label = labels[id(kind), sock_type, state] = (escape_text(netid(kind, sock_type)), state.label)
        family = kind.family
        if remote is not None:
            peer_text = endpoint(family, remote, kind.protocol)
        elif peer and family is unix:
            peer_text = "* %d %s" % (peer, _owners_text(peer_owners, names)) if peer_owners else "* %d" % peer
        else:
            peer_text = "*"
        yield (
            label[0], label[1], "-" if rx_queue is None else str(rx_queue), "-" if tx_queue is None else str(tx_queue),
            endpoint(family, local, kind.protocol), peer_text, str(inode),
            _owners_text(owners, names) if owners else "",
        )


def row_details_text(row: tuple) -> str:
    """The `ss -eomi` style line of a row's details (procsock.ssdetails): only what is known."""
    return details_text(row)


def table_lines(
    sockets: Iterable[Socket],
    header: bool = True,
    details: bool = False,
    netns: bool = False,
    netns_names: Optional[Dict[int, str]] = None,
    context: bool = False,
    resolved: Optional["Names"] = None,
) -> Iterator[str]:
    """Aligned columns like `ss`: queues right-aligned, text left-aligned, last column unpadded.

    With `details`, each socket is followed by an indented line of its details; with `netns`, a
    first column names each socket's network namespace (its `ip netns` name, else its inode);
    with `context`, User and Context columns (see `context_cells`) come before Process; with
    `resolved` names (procsock.names, -r), host and service names stand for numbers where known.
    """
    names = netns_names or {}
    sockets = Sockets.of(sockets)
    found, contexts = sockets.entries, sockets.contexts
    titles = TABLE_HEADER
    right = {2, 3, 6}
    if context:
        titles = titles[:-1] + CONTEXT_HEADER + titles[-1:]
    if netns:
        titles = (NETNS_HEADER,) + titles
        right = {i + 1 for i in right}
    if not found and not header:
        return
    # The widths need every row's cells before the first line. Each row's are kept as one string,
    # NUL between them (escaped text holds none: see Sockets.of), a third of the memory of a tuple
    # of strings or less (13 MB against 49 at 100k sockets). The cells are made a block at a time,
    # measured, joined; the details lines (-e) are made as they are written.
    widths = [len(title) if header else 0 for title in titles]
    joined: List[str] = []
    cells = _cells(found, resolved)
    shown: Dict[tuple, Tuple[str, str]] = {}
    for start in range(0, len(found), _BLOCK):
        rows = list(itertools.islice(cells, _BLOCK))
        block = found[start:start + _BLOCK]
        if context:
            rows = [row[:-1] + context_cells(entry[1], contexts, shown) + row[-1:] for row, entry in zip(rows, block)]
        if netns:
            rows = [
                (escape_text(names.get(entry[0][Row.NETNS]) or str(entry[0][Row.NETNS] or "-")),) + row
                for row, entry in zip(rows, block)
            ]
        widths = [max(width, max(map(len, column))) for width, column in zip(widths, zip(*rows))]
        joined.extend(map("\0".join, rows))
    line = " ".join(["%%%ds" % w if i in right else "%%-%ds" % w for i, w in enumerate(widths[:-1])] + ["%s"])
    if header:
        yield (line % titles).rstrip()
    for row, entry in zip(joined, found):
        yield (line % tuple(row.split("\0"))).rstrip()
        if details:
            extra = row_details_text(entry[0])
            if context and cgroup_moved(entry[0], entry[1], contexts):
                extra += " cgroup_moved"  # the kernel's cgroup of the socket against its holders'
            if extra:
                yield "\t " + extra


def context_cells(owners: Sequence[tuple], contexts: Contexts,
                  shown: Optional[Dict[tuple, Tuple[str, str]]] = None) -> Tuple[str, str]:
    """The User and Context cells of a socket's owner rows, their processes' Contexts in
    `contexts`: each distinct value once, in order ("-" when unknown or not computed). `shown`
    caches each process's pair of cells across sockets."""
    if shown is None:
        shown = {}
    users, labels = [], []
    for owner in owners:
        key = (owner[OWNER_PID], owner[OWNER_UID])
        cells = shown.get(key)
        if cells is None:
            found = contexts.get(key[0])
            user = found.user if found is not None and found.user is not None else key[1]
            user_text = escape_text(str(user)) if user is not None else ""
            cells = shown[key] = (user_text or "-", context_label(found) or "-")
        if len(owners) == 1:
            return cells
        if cells[0] not in users:
            users.append(cells[0])
        if cells[1] not in labels:
            labels.append(cells[1])
    return ",".join(users) or "-", ",".join(labels) or "-"


def notes_lines(snap: Snapshot, unresolved_hint: Optional[str] = None) -> Iterator[str]:
    """One line per note, for standard error (escaped: notes quote paths, names, plugins' words)."""
    for note in snap.notes:
        yield "procsock: " + escape_text(note.text)
    reasons = collections.Counter(u.reason for u in snap.unresolved.values())
    for reason, count in sorted(reasons.items()):
        yield "procsock: %d socket inodes held by processes not resolved: %s%s" % (
            count, escape_text(reason), unresolved_hint or ""
        )


def _record_line(record: SocketRecord) -> str:
    remote = "" if record.remote is None else " " + _shown_value(record.remote)
    return "%s %s %s%s inode %d" % (
        escape_text(record.kind.name), record.state.label, _shown_value(record.local), remote, record.inode
    )


def _value_text(value: object) -> str:
    return value.name if isinstance(value, enum.Enum) else str(value)


def _shown_value(value: object) -> str:
    """A compared field for people: addresses show themselves escaped, other text is escaped here."""
    if isinstance(value, (InetAddress, UnixAddress, PacketAddress, NetlinkAddress)):
        return str(value)
    return escape_text(_value_text(value))


def _diff_dict(diff: "FieldDiff") -> dict:
    return {
        "kind": diff.kind, "inode": diff.inode, "field": diff.field,
        "a": _value_text(diff.a), "b": _value_text(diff.b), "explained": diff.explained,
    }


def _comparison_dict(result: Union["Comparison", "Comparisons"]) -> dict:
    return {
        "a": result.a,
        "b": result.b,
        "kinds": list(result.kinds),
        "agree": result.agree,
        "only_a": [socket_to_dict(Socket(r, ())) for r in result.only_a],
        "only_b": [socket_to_dict(Socket(r, ())) for r in result.only_b],
        "differences": [_diff_dict(d) for d in result.differences],
        "not_compared": list(result.not_compared),
        "compared": result.compared,
        "explained_only": [{"inode": r.inode, "explained": why} for r, why in result.explained_only],
        **({"a_read": result.a_read, "b_read": result.b_read} if result.a_read or result.b_read else {}),
    }


def comparison_to_dict(result: "Comparisons") -> dict:
    """Every pair gathered (`a`/`b` null when several pairs), and each pair alone in `pairs`."""
    return dict(_comparison_dict(result), pairs=[_comparison_dict(pair) for pair in result.pairs])


def comparison_lines(result: "Comparisons") -> Iterator[str]:
    """Why kinds were not compared, then each pair's readable diff ending with its verdict line,
    and one overall verdict when there are several pairs."""
    for reason in result.unpaired:
        yield "not compared: " + escape_text(reason)
    for pair in result.pairs:
        yield from _pair_lines(pair)
    if len(result.pairs) > 1:
        yield "%d pairs compared: %s (%d sockets compared)" % (
            len(result.pairs), "agree" if result.agree else "DISAGREE", result.compared
        )


def _pair_lines(result: "Comparison") -> Iterator[str]:
    """A readable diff: sockets only one backend saw, then fields that differ (explained or not)."""
    a, b = escape_text(result.a), escape_text(result.b)
    known = dict(result.explained_only)
    for label, records in (("only in " + a, result.only_a), ("only in " + b, result.only_b)):
        for record in records:
            why = " (expected: %s)" % escape_text(known[record]) if record in known else ""
            yield "%s: %s%s" % (label, _record_line(record), why)
    for diff in result.differences:
        why = " (expected: %s)" % escape_text(diff.explained) if diff.explained else ""
        yield "differs: %s inode %d %s: %s=%s %s=%s%s" % (
            escape_text(diff.kind), diff.inode, diff.field, a, _shown_value(diff.a), b, _shown_value(diff.b), why,
        )
    for reason in result.not_compared:
        yield "not compared: " + escape_text(reason)
    verdict = "agree" if result.agree else "DISAGREE"
    read = tuple(" (%s)" % escape_text(part) if part else "" for part in (result.a_read, result.b_read))
    yield "%s%s vs %s%s on %s: %s (%d sockets compared, %d only in %s, %d only in %s, %d field differences, " \
        "%d unexplained)" % (
        a, read[0], b, read[1], escape_text(",".join(result.kinds)), verdict, result.compared,
        len(result.only_a), a, len(result.only_b), b,
        len(result.differences), len(result.unexplained),
    )
