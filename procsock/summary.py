"""`procsock --summary`: socket counts by kind and state (as `ss -s`), and per unit, container and
pod, with the sockets listening on any address first: what an auditor asks before anything else
("which containers listen on 0.0.0.0").

`summarize` computes from a snapshot whose owners carry their context; `summary_lines` renders.
A socket held by owners in several places counts once in each; one no process holds counts under
"(no process)".
"""

import collections
from typing import Dict, Iterator, List, Tuple

import attrs

from procsock.model import Family, Snapshot, Sockets, State, endpoint_text
from procsock.render import context_label
from procsock.text import escape_text

NO_PROCESS = "(no process)"
_INET = (Family.INET, Family.INET6)
# states with a column of their own; the others add up under "other"
STATE_COLUMNS = (State.LISTEN, State.ESTABLISHED, State.CLOSE, State.TIME_WAIT)


@attrs.frozen
class Counts:
    """How many sockets one group (a kind, a unit, a container...) has, in all and per state label."""

    name: str
    total: int
    states: Tuple[Tuple[str, int], ...]

    def state(self, label: str) -> int:
        return dict(self.states).get(label, 0)


@attrs.frozen
class Listener:
    """A socket listening (or, without connection, bound) on a wildcard address: where it is held
    (context label), its netid, local address text and holders ("name,pid" each)."""

    where: str
    netid: str
    local: str
    holders: str


@attrs.frozen
class Summary:
    total: int
    held: int
    kinds: Tuple[Counts, ...]
    places: Tuple[Counts, ...]
    listeners: Tuple[Listener, ...]


def _is_wildcard_listener(row: tuple) -> bool:
    """A TCP-like socket in LISTEN, or an unconnected bound UDP/raw one, on 0.0.0.0 or ::."""
    family = row[0].family
    local = row[5]
    if family not in _INET or type(local) is not tuple or any(local[0]) or not local[1]:
        return False
    return row[4] is State.LISTEN or (row[4] is State.CLOSE and row[6] is not None and not row[6][1])


def summarize(snap: Snapshot) -> Summary:
    kinds: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    places: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    listeners: List[Listener] = []
    held = 0
    sockets = Sockets.of(snap.sockets)
    found, contexts = sockets.entries, sockets.contexts
    for row, owners, _ in found:
        label = row[4].label
        kinds[escape_text(row[0].name)][label] += 1
        wheres = list(dict.fromkeys(context_label(contexts.get(o[0])) for o in owners)) or [NO_PROCESS]
        held += bool(owners)
        for where in wheres:
            places[where][label] += 1
        if _is_wildcard_listener(row):
            holders = " ".join(dict.fromkeys("%s,%d" % (escape_text(o[2]), o[0]) for o in owners)) or "-"
            local = endpoint_text(row[0].family, row[5])
            for where in wheres:
                listeners.append(Listener(where, escape_text(row[0].protocol), local, holders))

    def counted(table: Dict[str, collections.Counter]) -> Tuple[Counts, ...]:
        ordered = sorted(table.items(), key=lambda item: (-sum(item[1].values()), item[0]))
        return tuple(Counts(name, sum(c.values()), tuple(sorted(c.items()))) for name, c in ordered)

    listeners.sort(key=lambda listener: (listener.where == NO_PROCESS, listener.where, listener.local))
    return Summary(len(found), held, counted(kinds), counted(places), tuple(listeners))


def _table(title: str, rows: List[Tuple[str, ...]]) -> Iterator[str]:
    """A titled, aligned table: columns of numbers right-aligned, others left-aligned."""
    columns = list(zip(*rows))
    widths = [max(map(len, column)) for column in columns]
    numeric = [all(cell.isdigit() for cell in column[1:]) for column in columns]
    yield title
    for row in rows:
        cells = [cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(row, widths, numeric)]
        yield ("  " + " ".join(cells)).rstrip()


def summary_lines(summary: Summary) -> Iterator[str]:
    """The summary as text: totals, listeners on any address, per kind, per place."""
    labels = [state.label for state in STATE_COLUMNS]
    yield "Total: %d sockets, %d held by processes" % (summary.total, summary.held)
    if summary.listeners:
        yield ""
        rows = [("Where", "Netid", "Local", "Process")]
        rows += [(listener.where, listener.netid, listener.local, listener.holders) for listener in summary.listeners]
        yield from _table("Listening on any address:", rows)
    for title, groups in (("By kind:", summary.kinds), ("By unit, container, pod:", summary.places)):
        if not groups:
            continue
        yield ""
        rows = [("Kind" if groups is summary.kinds else "Where", "Total", *labels, "other")]
        for group in groups:
            shown = [group.state(label) for label in labels]
            rows.append((group.name, str(group.total), *map(str, shown), str(group.total - sum(shown))))
        yield from _table(title, rows)
