"""Output forms of a Diff (procsock.changes): a table for people, a JSON document, and osquery's
differential results log lines.

Text for people is escaped once (procsock.render's cells already are); JSON carries each socket's
object of the record format (`render.socket_to_dict`, with its `id`).
"""

import json
import time
from typing import Dict, Iterator, List, Optional, Tuple

from procsock.changes import Change, Diff, context_changes
from procsock.model import Family, InetAddress, Socket, endpoint_text
from procsock.render import TABLE_HEADER, context_label, socket_to_dict, table_rows
from procsock.schema import SCHEMA_VERSION
from procsock.text import escape_text

__all__ = ["diff_lines", "diff_to_dict", "osquery_lines", "OSQUERY_NAME"]

OSQUERY_NAME = "procsock_sockets"


def _holders_text(holders) -> str:
    return " ".join("%d,%d" % holder for holder in sorted(holders))


def _change_text(change: Change) -> str:
    """What changed, one line: `state ESTAB->CLOSE-WAIT; owners +PID,FD -PID,FD; ...`."""
    a, b = change.old.record, change.new.record
    parts = []
    for field in change.fields:
        if field == "state":
            parts.append("state %s->%s" % (a.state.label, b.state.label))
        elif field in ("local", "remote"):
            before, after = getattr(a, field), getattr(b, field)
            parts.append("%s %s->%s" % (field, "*" if before is None else escape_text(str(before)),
                                        "*" if after is None else escape_text(str(after))))
        elif field in ("recv_q", "send_q"):
            name = "rx_queue" if field == "recv_q" else "tx_queue"
            parts.append("%s %s->%s" % (field, getattr(a, name), getattr(b, name)))
        elif field == "owners":
            shown = ["+" + _holders_text([h]) for h in sorted(change.gained)]
            shown += ["-" + _holders_text([h]) for h in sorted(change.lost)]
            parts.append("owners " + " ".join(shown))
        elif field == "context":
            parts.append("context " + _context_text(change))
        else:
            parts.append(field)
    return "; ".join(parts)


def _context_text(change: Change) -> str:
    """Each process whose owners' context changed: `PID LABEL->LABEL` (render.context_label), or
    `PID (FIELD,...)` naming the fields when the label stayed the same (a command line, a user)."""
    shown = {}
    for (pid, _), (was, now) in sorted(context_changes(change.old, change.new).items()):
        before, after = context_label(was), context_label(now)
        if before == after:
            fields = sorted(k for k, v in was.as_dict().items() if v != now.as_dict()[k])
            shown.setdefault(pid, "%d (%s)" % (pid, ",".join(fields)))
        else:
            shown.setdefault(pid, "%d %s->%s" % (pid, before, after))
    return " ".join(shown.values())


def diff_lines(result: Diff, header: bool = True) -> Iterator[str]:
    """`+` added, `-` removed, `~` changed (its new form, then an indented line of what changed),
    in aligned columns like the main table; then one summary line."""
    marked: List[Tuple[str, Socket, Optional[str]]] = [("+", s, None) for s in result.added]
    marked += [("-", s, None) for s in result.removed]
    marked += [("~", c.new, _change_text(c)) for c in result.changed]
    rows = [(sign,) + cells for (sign, _, _), cells in zip(marked, table_rows([s for _, s, _ in marked]))]
    if header and rows:
        rows.insert(0, ("",) + TABLE_HEADER)
    notes = [None] * (header and bool(marked)) + [note for _, _, note in marked]
    if rows:
        widths = [max(map(len, column)) for column in zip(*rows)][:-1]
        right = {3, 4, 7}
        line = " ".join(["%%%ds" % w if i in right else "%%-%ds" % w for i, w in enumerate(widths)] + ["%s"])
        for row, note in zip(rows, notes):
            yield (line % row).rstrip()
            if note:
                yield "\t " + note
    yield "%d added, %d removed, %d changed" % (len(result.added), len(result.removed), len(result.changed))


def _change_dict(change: Change) -> dict:
    return {
        "id": change.identity.text,
        "fields": list(change.fields),
        "owners_gained": [{"pid": pid, "fd": fd} for pid, fd in sorted(change.gained)],
        "owners_lost": [{"pid": pid, "fd": fd} for pid, fd in sorted(change.lost)],
        "old": socket_to_dict(change.old),
        "new": socket_to_dict(change.new),
    }


def diff_to_dict(result: Diff) -> dict:
    """The JSON document of a Diff: sockets in the record format (see `procsock schema`)."""
    return {
        "schema": SCHEMA_VERSION,
        "same": result.same,
        "added": [socket_to_dict(s) for s in result.added],
        "removed": [socket_to_dict(s) for s in result.removed],
        "changed": [_change_dict(c) for c in result.changed],
    }


def _endpoint_columns(family: Family, endpoint, prefix: str) -> Dict[str, str]:
    if isinstance(endpoint, InetAddress):
        return {prefix + "_address": endpoint.host, prefix + "_port": str(endpoint.port)}
    if endpoint is None:
        return {prefix + "_address": "", prefix + "_port": ""}
    return {prefix + "_address": endpoint_text(family, endpoint), prefix + "_port": ""}


def _osquery_rows(sock: Socket) -> List[Dict[str, str]]:
    """One osquery row (all values text, as osquery logs them) per owner of `sock`, or one row
    with empty owner columns when no process holds it."""
    record = sock.record
    common = {
        "id": record.identity.text, "inode": str(record.inode), "kind": record.kind.name, "netid": record.netid,
        "family": record.family.name, "state": record.state.label,
        **_endpoint_columns(record.family, record.local, "local"),
        **_endpoint_columns(record.family, record.remote, "remote"),
        "netns": "" if record.netns is None else str(record.netns),
        "cookie": "" if record.cookie is None else str(record.cookie),
    }
    holders = [(str(o.pid), str(o.fd), o.name, "" if o.uid is None else str(o.uid)) for o in sock.owners]
    return [
        dict(common, pid=pid, fd=fd, process=escape_text(name), uid=uid)
        for pid, fd, name, uid in holders or [("", "", "", "")]
    ]


def _key(row: Dict[str, str]) -> tuple:
    return tuple(sorted(row.items()))


def osquery_lines(result: Diff, host_identifier: str, name: str = OSQUERY_NAME,
                  now: Optional[float] = None) -> Iterator[str]:
    """osquery's differential results log: one JSON line per row `added` or `removed` (a changed
    socket: its old rows that went, its new rows that came), with `name`, `hostIdentifier`,
    `calendarTime`, `unixTime` (of `now`, default: this moment), `epoch`, `counter`, `numerics`
    and `columns` (text values), so a pipeline that ingests osquery logs takes them unchanged."""
    moment = time.time() if now is None else now
    head = {
        "name": name, "hostIdentifier": host_identifier,
        "calendarTime": time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime(moment)),
        "unixTime": int(moment), "epoch": 0, "counter": 0, "numerics": False,
    }
    actions: List[Tuple[str, Dict[str, str]]] = []
    actions += [("removed", row) for sock in result.removed for row in _osquery_rows(sock)]
    actions += [("added", row) for sock in result.added for row in _osquery_rows(sock)]
    for change in result.changed:
        before, after = _osquery_rows(change.old), _osquery_rows(change.new)
        kept = {_key(row) for row in before} & {_key(row) for row in after}
        actions += [("removed", row) for row in before if _key(row) not in kept]
        actions += [("added", row) for row in after if _key(row) not in kept]
    encode = json.JSONEncoder(check_circular=False).encode
    for action, row in actions:
        yield encode(dict(head, columns=row, action=action))

