"""Resolver: backend choice per kind, fallback with a note, forced backends, broken plugins, joins.

The backends here are real plugin objects registered through the public Registry API; their
records name real sockets this test opens, so the owner join runs on the live /proc.
"""

import os
import socket

import pytest

from procsock import hookimpl
from procsock.backends import Registry
from procsock.errors import BackendUnavailable, ProcsockError, SocketNotFound
from procsock.model import (
    TCP,
    UDP,
    UNIX,
    InetAddress,
    SocketRecord,
    SockType,
    Source,
    State,
    UnixAddress,
)
from procsock.resolver import Query, Resolver
from procsock.testing import held_socket_inodes
from sockzoo import inode_of
from stubs import StubBackend, registry_of


def tcp_record(sock, backend):
    host, port = sock.getsockname()
    return SocketRecord(
        kind=TCP, inode=inode_of(sock), type=SockType.STREAM, protocol=6, state=State.LISTEN,
        local=InetAddress(socket.inet_aton(host), port), remote=InetAddress(bytes(4), 0),
        rx_queue=0, tx_queue=0, uid=0, backend=backend,
    )


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_highest_priority_backend_answers_and_owner_is_joined(listener):
    high = StubBackend("high", 100, [TCP], [tcp_record(listener, "high")])
    low = StubBackend("low", 10, [TCP], [tcp_record(listener, "low")])
    snap = Resolver(registry_of(low, high), Source.live()).snapshot(Query(pid=os.getpid()))
    (sock,) = snap.sockets
    assert sock.record.backend == "high" and low.calls == []
    assert [(o.pid, o.fd) for o in sock.owners] == [(os.getpid(), listener.fileno())]
    assert snap.answered_by == {"tcp": "high"}
    # One call, for tcp, asking only for sockets this process holds (the listener among them).
    ((kind, inodes),) = high.calls
    assert kind == "tcp" and inode_of(listener) in inodes <= held_socket_inodes(os.getpid())


@pytest.mark.parametrize(
    "error, reason",
    [
        (BackendUnavailable("high", "sock_diag refused (EPERM)"), "sock_diag refused (EPERM)"),
        (RuntimeError("boom"), "plugin error: RuntimeError: boom"),
    ],
)
def test_a_failing_backend_falls_back_per_kind_with_a_note(listener, error, reason):
    high = StubBackend("high", 100, [TCP, UDP], error=error)
    low = StubBackend("low", 10, [TCP], [tcp_record(listener, "low")])
    snap = Resolver(registry_of(high, low), Source.live()).snapshot()
    assert [s.record.backend for s in snap.sockets] == ["low"]
    # Other network namespaces of a busy host add "tcp (netns N)" entries: all answered by low too.
    assert snap.answered_by["tcp"] == "low" and set(snap.answered_by.values()) == {"low"}
    assert any(n.text.startswith("high: %s; using low for tcp" % reason) for n in snap.notes)
    assert any(n.text.startswith("udp: no backend could read it (high: ") for n in snap.notes)


def test_unavailable_backend_is_passed_over_silently(listener):
    high = StubBackend("high", 100, [TCP], unavailable="not for captured trees")
    low = StubBackend("low", 10, [TCP], [tcp_record(listener, "low")])
    snap = Resolver(registry_of(high, low), Source.live()).snapshot()
    assert snap.answered_by["tcp"] == "low" and set(snap.answered_by.values()) == {"low"} and high.calls == []
    assert not any("high" in note.text for note in snap.notes)


def test_forced_backend_never_falls_back(listener):
    high = StubBackend("high", 100, [TCP], [tcp_record(listener, "high")])
    low = StubBackend("low", 10, [TCP], [tcp_record(listener, "low")])
    snap = Resolver(registry_of(high, low), Source.live(), backend="low").snapshot()
    assert [s.record.backend for s in snap.sockets] == ["low"] and high.calls == []
    with pytest.raises(BackendUnavailable, match="no such backend"):
        Resolver(registry_of(high, low), Source.live(), backend="nope")
    off = StubBackend("off", 1, [TCP], unavailable="kernel too old")
    with pytest.raises(BackendUnavailable, match="kernel too old"):
        Resolver(registry_of(off), Source.live(), backend="off")


def test_filters_and_unowned_sockets(listener):
    other = SocketRecord(
        kind=TCP, inode=0, type=SockType.STREAM, protocol=6, state=State.TIME_WAIT,
        local=InetAddress(socket.inet_aton("127.0.0.1"), 40000), remote=InetAddress(socket.inet_aton("127.0.0.1"), 1),
        rx_queue=0, tx_queue=0, uid=0, backend="b",
    )
    backend = StubBackend("b", 1, [TCP], [tcp_record(listener, "b"), other, other])
    resolver = Resolver(registry_of(backend), Source.live())
    all_tcp = resolver.snapshot()
    assert all_tcp.sockets.count(all_tcp.sockets[-1]) == 2  # inode-0 rows are never merged
    assert [s.owners for s in all_tcp.sockets if s.record.inode == 0] == [(), ()]
    port = listener.getsockname()[1]
    by_port = resolver.snapshot(Query(port=port)).sockets
    assert [s.record.inode for s in by_port] == [inode_of(listener)]
    by_state = resolver.snapshot(Query(states=frozenset({State.TIME_WAIT}))).sockets
    assert [s.record.state for s in by_state] == [State.TIME_WAIT, State.TIME_WAIT]
    assert resolver.snapshot(Query(protocols=frozenset({"udp"}))).sockets == ()


def test_unix_peer_owners_are_joined():
    a, b = socket.socketpair()
    with a, b:
        records = [
            SocketRecord(kind=UNIX, inode=inode_of(x), type=SockType.STREAM, protocol=0, state=State.ESTABLISHED,
                         local=UnixAddress(b""), remote=None, rx_queue=0, tx_queue=0, uid=None, backend="u",
                         peer_inode=inode_of(y))
            for x, y in ((a, b), (b, a))
        ]
        resolver = Resolver(registry_of(StubBackend("u", 1, [UNIX], records)), Source.live())
        sock = resolver.describe_fd(os.getpid(), a.fileno())
        assert sock.record.inode == inode_of(a)
        assert [(o.pid, o.fd) for o in sock.peer_owners] == [(os.getpid(), b.fileno())]
        with pytest.raises(SocketNotFound):
            resolver.describe_inode(1)


class BrokenInfo:
    @hookimpl
    def procsock_backend_info(self):
        raise ValueError("cannot describe myself")


def test_broken_plugins_are_reported_not_fatal():
    registry = Registry()
    registry.register(BrokenInfo(), "broken")
    assert registry.backends == ()
    (failure,) = registry.failures
    assert failure.name == "broken" and "cannot describe myself" in failure.reason

    class UnknownHook:
        @hookimpl
        def procsock_no_such_hook(self):
            pass

    with pytest.raises(ValueError, match="unknown hook"):
        Registry().register(UnknownHook(), "unknown")


def test_missing_proc_root_is_a_typed_error(tmp_path):
    with pytest.raises(ProcsockError, match="not a directory"):
        Resolver(Registry(), Source.capture(str(tmp_path / "nope")))


def test_a_process_lookup_asks_only_the_kinds_its_fds_are(listener):
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # keeps only the listener (and the pipe) open
        for fd in range(3, 1024):
            if fd not in (listener.fileno(), read_end):
                try:
                    os.close(fd)
                except OSError:
                    pass
        os.read(read_end, 1)
        os._exit(0)
    try:
        backend = StubBackend("b", 1, [TCP, UDP, UNIX], [tcp_record(listener, "b")])
        snap = Resolver(registry_of(backend), Source.live()).snapshot(Query(pid=child))
        assert [c[0] for c in backend.calls] == ["tcp"]
        assert [(o.pid, o.fd) for o in snap.sockets[0].owners] == [(child, listener.fileno())]
    finally:
        os.write(write_end, b"x")
        os.waitpid(child, 0)
        os.close(read_end)
        os.close(write_end)


def test_a_deferred_socket_is_asked_of_the_next_backend(listener):
    inode = inode_of(listener)
    first = StubBackend("first", 200, [TCP], deferred=[(inode, "connecting: no peer yet")], lookup_only=True)
    second = StubBackend("second", 100, [TCP], [tcp_record(listener, "second")])
    resolver = Resolver(registry_of(first, second), Source.live())
    snap = resolver.snapshot(Query(pid=os.getpid()))
    assert [s.record.backend for s in snap.sockets if s.record.inode == inode] == ["second"]
    assert second.calls == [("tcp", frozenset({inode}))]  # asked for the deferred inode only
    assert inode not in snap.unresolved
    assert resolver.describe_fd(os.getpid(), listener.fileno()).record.backend == "second"


def test_a_socket_no_backend_reports_keeps_the_reason_it_was_deferred_with(listener):
    inode = inode_of(listener)
    first = StubBackend("first", 200, [TCP], deferred=[(inode, "unbound: in no table")], lookup_only=True)
    second = StubBackend("second", 100, [TCP])
    resolver = Resolver(registry_of(first, second), Source.live())
    assert resolver.snapshot(Query(pid=os.getpid())).unresolved[inode].reason == "unbound: in no table"
    # The whole-table path never asks a lookup-only backend for records, but learns the reason from it.
    assert resolver.snapshot().unresolved[inode].reason == "unbound: in no table"
    with pytest.raises(SocketNotFound) as raised:
        resolver.describe_fd(os.getpid(), listener.fileno())
    assert raised.value.reason == "unbound: in no table"
    with pytest.raises(SocketNotFound) as raised:
        resolver.describe_inode(inode)
    assert raised.value.reason == "unbound: in no table"


def test_hostile_deferrals_are_ignored_or_escaped_never_believed(listener):
    inode = inode_of(listener)
    deferred = [inode, (inode,), ("1", "x"), (inode, b"bytes"), (inode, "\x1b[31mred\nline" + "x" * 10000)]
    first = StubBackend("first", 200, [TCP], deferred=deferred, lookup_only=True)
    second = StubBackend("second", 100, [TCP])
    snap = Resolver(registry_of(first, second), Source.live()).snapshot(Query(pid=os.getpid()))
    reason = snap.unresolved[inode].reason
    assert reason.startswith("\\x1b[31mred\\nline") and reason.isprintable() and len(reason) < 1000
    # A deferral of a socket the backend was not asked about is not believed either.
    stranger = StubBackend("first", 200, [TCP], deferred=[(inode + 1, "x")], lookup_only=True)
    snap = Resolver(registry_of(stranger, StubBackend("second", 100, [TCP])), Source.live()).snapshot(
        Query(pid=os.getpid()))
    assert inode + 1 not in snap.unresolved
