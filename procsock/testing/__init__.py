"""procsock for test suites: assert on a program's sockets, compare backends, find leaked sockets.

Importing this module does not import pytest. The pytest plugin (``procsock.testing.plugin``,
registered through the ``pytest11`` entry point) adds the ``procsock_backend`` fixture, the leak
check and ``--procsock-backend``; ``procsock.testing.conformance`` is the suite a backend plugin
runs against itself.
"""

import contextlib
from typing import FrozenSet, Iterator, List, Optional, Tuple

from procsock.api import make_query, make_source, registry_or_default, snapshot
from procsock.backends import Registry
from procsock.compare import Comparisons, compare_backends
from procsock.errors import BadArgument, NothingCompared
from procsock.fdscan import scan_fds
from procsock.model import Family, Socket, State
from procsock.render import comparison_lines
from procsock.testing.leaks import allow_lingering  # noqa: F401 (public: declared session-lived sockets)
from procsock.watcher import Event, watch


def listening(
    pid: Optional[int] = None,
    port: Optional[int] = None,
    *,
    protocol=None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Tuple[Socket, ...]:
    """The sockets that accept traffic: LISTEN stream sockets and bound, unconnected datagram ones
    (what ``ss -l`` lists), of one process and/or on one port.

    ``assert listening(pid=server.pid, port=8080)`` holds once the server is up.
    """
    snap = snapshot(pid=pid, port=port, protocol=protocol, backend=backend, registry=registry)
    return tuple(s for s in snap.sockets if _accepts(s))


def _accepts(sock: Socket) -> bool:
    record = sock.record
    if record.state is State.LISTEN:
        return True
    if record.state is not State.CLOSE or record.local is None:
        return False
    return bool(getattr(record.local, "port", None) or getattr(record.local, "name", None))


# psutil's connection kinds (``Process.net_connections(kind=)``) → (families, protocols); "all"
# is every socket procsock can list, not only psutil's inet and unix ones.
_V4, _V6, _BOTH = frozenset({Family.INET}), frozenset({Family.INET6}), frozenset({Family.INET, Family.INET6})
PSUTIL_KINDS = {
    "inet": (_BOTH, ("tcp", "udp")),
    "inet4": (_V4, ("tcp", "udp")),
    "inet6": (_V6, ("tcp", "udp")),
    "tcp": (_BOTH, ("tcp",)),
    "tcp4": (_V4, ("tcp",)),
    "tcp6": (_V6, ("tcp",)),
    "udp": (_BOTH, ("udp",)),
    "udp4": (_V4, ("udp",)),
    "udp6": (_V6, ("udp",)),
    "unix": (frozenset({Family.UNIX}), ("unix",)),
    "all": (None, None),
}


def _psutil_kind(kind: Optional[str]):
    """(families, protocols) of one of psutil's kind names; anything else is refused naming them."""
    if kind is None:
        return None, None
    if not isinstance(kind, str):
        raise TypeError("kind takes one of psutil's kind names (str), not %s %r" % (type(kind).__name__, kind))
    if kind not in PSUTIL_KINDS:
        raise BadArgument("kind", "bad kind %r (accepted: %s)" % (kind, ", ".join(PSUTIL_KINDS)))
    return PSUTIL_KINDS[kind]


def connections_of(
    pid: int,
    *,
    kind: Optional[str] = None,
    protocol=None,
    state=None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Tuple[Socket, ...]:
    """Every socket process `pid` holds (like psutil's ``Process.net_connections``), optionally
    narrowed by psutil's kind names ("inet", "tcp4", "udp6", "unix", "all"...; "tcp" is TCP over
    IPv4 and IPv6 as in psutil), protocol or state (``state="ESTAB"``)."""
    families, protocols = _psutil_kind(kind)
    snap = snapshot(
        pid=pid, family=families, protocol=protocols if protocol is None else protocol, state=state,
        backend=backend, registry=registry,
    )
    if protocol is None or protocols is None:
        return snap.sockets
    return tuple(s for s in snap.sockets if s.record.kind.protocol in protocols)


def assert_backends_agree(
    a: Optional[str] = None,
    b: Optional[str] = None,
    *,
    pid=None,
    kind=None,
    proc_root: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Comparisons:
    """Read the same kinds through backends `a` and `b` (default: per kind, the two best here) and raise
    AssertionError listing the sockets only one saw and the unexplained field differences, or
    saying why nothing could be compared (a check that compares nothing does not pass).

    With `pid`, only that process's sockets are compared: the check to use on a busy host, where
    sockets elsewhere come and go between the two reads; lookup-only backends (pidfd) need it."""
    registry = registry_or_default(registry)
    query = make_query(kind=kind, pid=pid, registry=registry)
    try:
        result = compare_backends(registry, make_source(proc_root), a, b, query)
    except NothingCompared as exc:
        raise AssertionError("backends not compared: %s" % exc) from None
    if not result.agree:
        raise AssertionError("backends disagree:\n" + "\n".join(comparison_lines(result)))
    return result


def held_socket_inodes(pid: int) -> FrozenSet[int]:
    """The socket inodes process `pid` (or processes) holds now (one walk of its fds, no backend asked)."""
    return frozenset(scan_fds("/proc", sorted(make_query(pid=pid).pid)).owners)



@contextlib.contextmanager
def record_events(**filters) -> Iterator[List[Event]]:
    """The socket events (procsock.watch) of the block: ``with record_events(pid=server.pid) as
    ev: ...``, then assert on ``ev``, a list filled when the block ends.

    The baseline is taken on entry; on exit one poll, with every destroy notification the kernel
    sent meanwhile, gives what opened, changed and closed, also sockets that lived a moment (their
    close from the kernel, owners "unknown" when no poll saw them). A socket opened and closed
    within the block with no destroy notification (unix, raw) is not seen. `filters` are those
    of ``procsock.watch`` (kind, protocol, state, pid, port, ...).
    """
    recorded: List[Event] = []
    with watch(**filters) as events:
        yield recorded
        recorded.extend(events.poll_now())
