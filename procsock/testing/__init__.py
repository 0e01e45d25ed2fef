"""procsock for test suites: assert on a program's sockets, compare backends, find leaked sockets.

Importing this module does not import pytest. The pytest plugin (``procsock.testing.plugin``,
registered through the ``pytest11`` entry point) adds the ``procsock_backend`` fixture, the leak
check and ``--procsock-backend``; ``procsock.testing.conformance`` is the suite a backend plugin
runs against itself.
"""

from typing import FrozenSet, Optional, Tuple

from procsock.api import default_registry, make_query, make_source, snapshot
from procsock.backends import Registry
from procsock.compare import Comparison, compare_backends
from procsock.fdscan import scan_fds
from procsock.model import Socket, State
from procsock.render import comparison_lines
from procsock.testing.leaks import allow_lingering


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


def connections_of(
    pid: int,
    *,
    kind=None,
    protocol=None,
    state=None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Tuple[Socket, ...]:
    """Every socket process `pid` holds (like psutil's ``Process.net_connections``), optionally
    narrowed by kind, protocol or state (``state="ESTAB"``)."""
    snap = snapshot(pid=pid, kind=kind, protocol=protocol, state=state, backend=backend, registry=registry)
    return snap.sockets


def assert_backends_agree(
    a: Optional[str] = None,
    b: Optional[str] = None,
    *,
    pid: Optional[int] = None,
    kind=None,
    proc_root: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Comparison:
    """Read the same kinds through backends `a` and `b` (default: the two best here) and raise
    AssertionError listing the sockets only one saw and the unexplained field differences.

    With `pid`, only that process's sockets are compared: the check to use on a busy host, where
    sockets elsewhere come and go between the two reads."""
    result = compare_backends(
        registry or default_registry(), make_source(proc_root), a, b, make_query(kind=kind, pid=pid)
    )
    if not result.agree:
        raise AssertionError("backends disagree:\n" + "\n".join(comparison_lines(result)))
    return result


def held_socket_inodes(pid: int) -> FrozenSet[int]:
    """The socket inodes process `pid` holds now (one walk of its fds, no backend asked)."""
    return frozenset(scan_fds("/proc", (pid,)).owners)
