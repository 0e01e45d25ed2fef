"""Output forms of a snapshot: an aligned table for people, JSON documents and lines for machines.

Text for people never carries a raw control byte: every string that came from the kernel, a file
or a plugin goes through `escape_text` (names, netids, details, notes, comparisons) exactly once.
JSON keeps exact text (and exact bytes as hex beside the escaped names).
"""

import collections
import enum
import os
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # imported by `procsock compare` only
    from procsock.compare import Comparison, Comparisons, FieldDiff
from procsock.model import InetAddress, NetlinkAddress, Owner, PacketAddress, Socket, SocketRecord, UnixAddress
from procsock.model import Snapshot
from procsock.text import escape_text

TABLE_HEADER = ("Netid", "State", "Recv-Q", "Send-Q", "Local", "Peer", "Inode", "Process")
NETNS_HEADER = "Netns"


def owner_to_dict(owner: Owner) -> dict:
    return {
        "pid": owner.pid,
        "fd": owner.fd,
        "process": escape_text(owner.name),
        "process_hex": os.fsencode(owner.name).hex(),
        "uid": owner.uid,
        "tid": owner.tid,
    }


def socket_to_dict(sock: Socket) -> dict:
    rec = sock.record
    return {
        "inode": rec.inode,
        "kind": rec.kind.name,
        "netid": rec.netid,
        "family": rec.kind.family.name,
        "type": rec.type.name,
        "protocol": rec.protocol,
        "state": rec.state.name,
        "local": rec.local.as_dict(),
        "remote": None if rec.remote is None else rec.remote.as_dict(),
        "peer_inode": rec.peer_inode,
        "recv_q": rec.rx_queue,
        "send_q": rec.tx_queue,
        "uid": rec.uid,
        "netns": rec.netns,
        "interface": rec.interface,
        "cookie": rec.cookie,
        "extended": None if rec.extended is None else rec.extended.as_dict(),
        "backend": rec.backend,
        "owners": [owner_to_dict(o) for o in sock.owners],
        "peer_owners": [owner_to_dict(o) for o in sock.peer_owners],
    }


def snapshot_to_dict(snap: Snapshot) -> dict:
    return {
        "sockets": [socket_to_dict(s) for s in snap.sockets],
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


def _owner_text(owner: Owner) -> str:
    """name,pid,fd; with ",tid=TID" for an fd in a thread's own fd table."""
    text = "%s,%d,%d" % (escape_text(owner.name), owner.pid, owner.fd)
    return text if owner.tid is None else "%s,tid=%d" % (text, owner.tid)


def _owners_text(owners: Sequence[Owner]) -> str:
    if len(owners) == 1:
        return _owner_text(owners[0])
    return " ".join([_owner_text(o) for o in owners])


def _peer_text(sock: Socket) -> str:
    rec = sock.record
    if rec.remote is not None:
        return _shown_value(rec.remote)
    if isinstance(rec.local, UnixAddress) and rec.peer_inode:
        held_by = " " + _owners_text(sock.peer_owners) if sock.peer_owners else ""
        return "* %d%s" % (rec.peer_inode, held_by)
    return "*"


def table_rows(sockets: Iterable[Socket]) -> List[Tuple[str, ...]]:
    rows = []
    for sock in sockets:
        rec = sock.record
        rx_queue, tx_queue = rec.rx_queue, rec.tx_queue
        rows.append((
            escape_text(rec.netid),
            rec.state.label,
            "-" if rx_queue is None else str(rx_queue),
            "-" if tx_queue is None else str(tx_queue),
            _shown_value(rec.local),
            _peer_text(sock),
            str(rec.inode),
            _owners_text(sock.owners),
        ))
    return rows


def details_text(rec: SocketRecord) -> str:
    """The `ss -iem` style line of a record's details: key:value pairs, only those known."""
    parts = []
    if rec.uid is not None:
        parts.append("uid:%d" % rec.uid)
    if rec.cookie is not None:
        parts.append("cookie:0x%x" % rec.cookie)
    ext = rec.extended
    if ext is not None:
        for key in ("mark", "cgroup_id", "shutdown", "congestion", "vfs_inode", "vfs_dev"):
            value = getattr(ext, key)
            if value:
                parts.append("%s:%s" % (key, escape_text(str(value))))
        if ext.pending:
            parts.append("pending:%s" % ",".join(map(str, ext.pending)))
        if ext.meminfo is not None:
            parts.append("skmem:(%s)" % ",".join("%s%d" % (k, v) for k, v in ext.meminfo.as_dict().items()))
        if ext.tcp_info is not None:
            parts.extend("%s:%d" % kv for kv in ext.tcp_info.as_dict().items())
    return " ".join(parts)


def table_lines(
    sockets: Iterable[Socket],
    header: bool = True,
    details: bool = False,
    netns: bool = False,
    netns_names: Optional[Dict[int, str]] = None,
) -> Iterator[str]:
    """Aligned columns like `ss`: queues right-aligned, text left-aligned, last column unpadded.

    With `details`, each socket is followed by an indented line of its details; with `netns`, a
    first column names each socket's network namespace (its `ip netns` name, else its inode).
    """
    names = netns_names or {}
    sockets = list(sockets)
    rows = table_rows(sockets)
    titles = TABLE_HEADER
    right = {2, 3, 6}
    if netns:
        titles = (NETNS_HEADER,) + titles
        right = {i + 1 for i in right}
        rows = [
            (escape_text(names.get(sock.record.netns) or str(sock.record.netns or "-")),) + row
            for row, sock in zip(rows, sockets)
        ]
    if header:
        rows.insert(0, titles)
    if not rows:
        return
    widths = [max(map(len, column)) for column in zip(*rows)][:-1]
    line = " ".join(["%%%ds" % w if i in right else "%%-%ds" % w for i, w in enumerate(widths)] + ["%s"])
    extra = [None] * header + [details_text(s.record) for s in sockets] if details else []
    for index, row in enumerate(rows):
        yield (line % row).rstrip()
        if extra and extra[index]:
            yield "\t " + extra[index]


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
    yield "%s vs %s on %s: %s (%d sockets compared, %d only in %s, %d only in %s, %d field differences, " \
        "%d unexplained)" % (
        a, b, escape_text(",".join(result.kinds)), verdict, result.compared,
        len(result.only_a), a, len(result.only_b), b,
        len(result.differences), len(result.unexplained),
    )
