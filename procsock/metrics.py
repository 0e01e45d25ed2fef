"""Prometheus counts of a host's sockets: one snapshot per scrape, counted, never one series per socket.

`SnapshotCollector` is a prometheus_client Collector (extra `procsock[prometheus]`; imported only
here, so the core never needs it). Each collect() takes one snapshot and yields counts whose label
values come from small sets (kinds, states, listening ports, note codes), so a host's series stay
bounded however many connections it holds: Prometheus refuses per-connection cardinality.
"""

import threading
import time
from typing import Dict, Iterator, Optional, Tuple

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from procsock import log
from procsock.errors import ProcsockError
from procsock.model import (Context, NoteCode, Query, Row, Snapshot, Sockets, Source, State, endpoint_port,
                            owner_contexts)
from procsock.text import escape_text

PREFIX = "procsock_"
# context labels come from cgroup names processes choose (a user may make thousands of cgroups):
# at most this many context series a scrape; the rest are summed into one unit="other" series
# (no real unit is named without a suffix) and counted by procsock_context_series_dropped
CONTEXT_SERIES_MAX = 100
OTHER_CONTEXT = ("other", "", "")


def context_labels(context: Optional[Context]) -> Optional[Tuple[str, str, str]]:
    """(systemd unit, container id, pod uid) of an owner's Context ("" for each unknown), or None
    where no context is known: the one place context series take their labels from (escaped)."""
    if context is None:
        return None
    labels = tuple("" if value is None else escape_text(value)
                   for value in (context.unit, context.container_id, context.pod_uid))
    return labels if any(labels) else None


def counts(snap: Snapshot) -> Dict[str, Dict[tuple, int]]:
    """The counts a scrape exposes, by series name and label values: sockets by (kind, state),
    listeners by (kind, local port), sockets by owner context (unit, container, pod; a socket
    counted once per context that holds it; at most CONTEXT_SERIES_MAX series, the most sockets
    first, the rest summed into OTHER_CONTEXT), and "context_series_dropped": {(): how many
    context label sets were summed so}."""
    by_state: Dict[tuple, int] = {}
    listeners: Dict[tuple, int] = {}
    by_context: Dict[tuple, int] = {}
    listen = State.LISTEN
    sockets = Sockets.of(snap.sockets)
    for row, owners, _ in sockets.entries:
        kind = row[Row.KIND]
        state = row[Row.STATE]
        key = (kind.name, state.name)
        by_state[key] = by_state.get(key, 0) + 1
        if state is listen:
            port = endpoint_port(kind.family, row[Row.LOCAL])
            if port is not None:
                key = (kind.name, str(port))
                listeners[key] = listeners.get(key, 0) + 1
        for context in {context_labels(c) for c in owner_contexts(owners, sockets.contexts)} - {None}:
            by_context[context] = by_context.get(context, 0) + 1
    by_context, dropped = _capped(by_context, CONTEXT_SERIES_MAX)
    return {"sockets": by_state, "listeners": listeners, "sockets_by_context": by_context,
            "context_series_dropped": {(): dropped}}


def _capped(counted: Dict[tuple, int], most: int) -> Tuple[Dict[tuple, int], int]:
    """`counted` with at most `most` keys: the largest counts (then the first labels) kept, the
    others summed under OTHER_CONTEXT; and how many keys were summed so."""
    if len(counted) <= most:
        return counted, 0
    ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[:most - 1])
    kept[OTHER_CONTEXT] = kept.get(OTHER_CONTEXT, 0) + sum(count for _, count in ranked[most - 1:])
    return kept, len(ranked) - (most - 1)


_SERIES = (  # name, help, label names
    ("sockets", "Sockets by kind and state (State name: ESTABLISHED, LISTEN, ...)", ("kind", "state")),
    ("listeners", "Listening sockets by kind and local port", ("kind", "port")),
    ("sockets_by_context", "Sockets by the systemd unit, container and pod of their owners",
     ("unit", "container", "pod")),
    ("context_series_dropped", "Context label sets summed into unit=\"other\" this scrape (more than %d)"
     % CONTEXT_SERIES_MAX, ()),
)


class SnapshotCollector:
    """Counts of one snapshot per scrape (`query` narrows it like the list command's options).

    Scrapes are served one at a time (a lock): concurrent scrapes wait rather than walk the host
    in parallel. A snapshot that fails yields `procsock_up 0` and the duration, not an HTTP error.
    """

    def __init__(self, registry, source: Source, query: Query, backend: Optional[str] = None) -> None:
        self.registry, self.source, self.query, self.backend = registry, source, query, backend
        self._lock = threading.Lock()

    def describe(self):
        return []  # no collect() at registration: the first scrape takes the first snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from procsock.resolver import Resolver

        with self._lock:
            started = time.monotonic()
            try:
                snap = Resolver(self.registry, self.source, self.backend).snapshot(self.query)
            except (ProcsockError, OSError):
                log.debug("scrape failed", exc_info=True)
                snap = None
            duration = time.monotonic() - started
        yield GaugeMetricFamily(PREFIX + "scrape_duration_seconds", "Time this scrape's snapshot took",
                                value=duration)
        yield GaugeMetricFamily(PREFIX + "up", "1 when this scrape's snapshot succeeded", value=int(snap is not None))
        if snap is None:
            return
        counted = counts(snap)
        for name, help_text, labels in _SERIES:
            family = GaugeMetricFamily(PREFIX + name, help_text, labels=labels)
            for values, count in sorted(counted[name].items()):
                family.add_metric(values, count)
            yield family
        yield GaugeMetricFamily(PREFIX + "unresolved_sockets", "Held socket inodes no backend reported",
                                value=len(snap.unresolved))
        yield GaugeMetricFamily(PREFIX + "fallbacks", "Backends that failed this scrape while a later one answered",
                                value=sum(note.code is NoteCode.FALLBACK for note in snap.notes))
        notes = GaugeMetricFamily(PREFIX + "notes", "This scrape's notes by code (see procsock --json)",
                                  labels=("code",))
        for code in NoteCode:
            notes.add_metric((code.value,), sum(note.code is code for note in snap.notes))
        yield notes


def collector_registry(collector: SnapshotCollector) -> CollectorRegistry:
    """A prometheus_client registry holding only `collector` (no process or platform series)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> str:
    """The Prometheus text exposition (format 0.0.4, as node exporter's textfile collector reads)."""
    from prometheus_client import generate_latest

    return generate_latest(registry).decode("utf-8")


def serve(address: str, port: int, registry: CollectorRegistry):
    """Serve `registry` over HTTP on address:port (port 0: any free one) from a daemon thread;
    returns (server, thread): `server.server_address` is where it listens, `server.shutdown()` stops it."""
    from prometheus_client import start_http_server

    return start_http_server(port, address, registry=registry)
