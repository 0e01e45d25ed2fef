"""The conformance suite for backend plugins: real sockets of every kind a backend claims, and
the checks that it reports them exactly.

Run it on an installed backend with ``pytest --pyargs procsock.testing.conformance
--procsock-backend NAME``, or subclass ``BackendConformance`` in your plugin's tests (set
``backend_name`` and, for kinds the built-in zoo cannot open, override ``open_sockets``).
"""

import contextlib
import os
import socket
import tempfile
from typing import List, Optional

import pytest

from procsock.api import default_registry
from procsock.backends import Backend
from procsock.fdscan import scan_fds
from procsock.errors import BackendUnavailable, ProcsockError
from procsock.model import (
    InetAddress,
    NetlinkAddress,
    Netns,
    PacketAddress,
    SocketKind,
    SocketRecord,
    SockType,
    Source,
    UnixAddress,
)
from procsock.testing.plugin import backend_names, usable_backend
from procsock.testing.zoo import KNOWN_KINDS, Expected, SocketZoo, inode_of


def expected_protocol(sock: socket.socket) -> int:
    """The protocol number a record carries: the IP (or netlink) protocol the socket was opened
    with; for AF_PACKET the ethertype in host order."""
    if sock.family == socket.AF_PACKET:
        return sock.getsockname()[1]
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)


def mismatches(record: SocketRecord, want: Expected, kind: SocketKind, backend: str) -> List[str]:
    """How `record` differs from what the zoo socket `want` is. Identity, state and local
    endpoint must be given and equal; other fields must be equal where the backend fills them
    (None means "this backend cannot know")."""
    sock = want.sock
    required = {
        "kind": (record.kind, kind),
        "inode": (record.inode, want.inode),
        "state": (record.state, want.state),
        "local": (record.local, want.local),
        "backend": (record.backend, backend),
    }
    optional = {
        "type": (record.type, SockType(sock.type)),
        "protocol": (record.protocol, expected_protocol(sock)),
        "remote": (record.remote, want.remote),
        "uid": (record.uid, os.geteuid()),
    }
    wrong = [(f, got, exp) for f, (got, exp) in required.items() if got != exp]
    wrong += [(f, got, exp) for f, (got, exp) in optional.items() if got is not None and got != exp]
    return ["%s (%s): %s: got %s, want %s" % (want.label, backend, f, _text(got), _text(exp)) for f, got, exp in wrong]


def _text(value) -> str:
    """Endpoints as ss prints them, anything else as its repr."""
    return str(value) if isinstance(value, (InetAddress, UnixAddress, PacketAddress, NetlinkAddress)) else repr(value)


def own_netns() -> Netns:
    return Netns(os.stat("/proc/self/ns/net").st_ino)


def assert_reported(records, zoo: List[Expected], kind: SocketKind, backend: Backend) -> None:
    """Each zoo socket is among `records` exactly once and as it is; every record is of `kind`,
    from `backend`, in this namespace (or without one)."""
    assert all(r.kind == kind and r.backend == backend.name for r in records)
    assert all(r.netns in (None, own_netns().inode) for r in records)
    wrong = []
    for want in zoo:
        matching = [r for r in records if r.inode == want.inode]
        if len(matching) != 1:
            wrong.append("%s: reported %d times" % (want.label, len(matching)))
        else:
            wrong += mismatches(matching[0], want, kind, backend.name)
    assert not wrong, "\n".join(wrong)


@contextlib.contextmanager
def readable_here(kind: SocketKind):
    """Skip the check when the backend says this host cannot give it `kind` (BackendUnavailable:
    e.g. no sock_diag handler for raw sockets in this kernel); the resolver falls back then."""
    try:
        yield
    except BackendUnavailable as exc:
        pytest.skip("%s cannot read %s here: %s" % (exc.backend, kind.name, exc.reason))


class BackendConformance:
    """Checks one backend (or each backend that runs here) against real sockets it claims to serve.

    Subclass it as ``class TestMine(BackendConformance)`` with ``backend_name = "mine"``. Each
    check runs once per kind the backend lists in its BackendInfo.
    """

    backend_name: Optional[str] = None  # None: --procsock-backend NAME, else every backend here

    def open_sockets(self, zoo: SocketZoo, kind: SocketKind) -> None:
        """Open sockets of `kind` into `zoo` with ``zoo.add(label, sock, kind.name, state)``.

        The default opens the built-in kinds. Override it for your plugin's kinds; record a kind
        this host cannot open in ``zoo.missing[kind.name]`` (its checks are then skipped).
        """
        if kind.name in KNOWN_KINDS:
            zoo.build([kind.name])
        else:
            zoo.missing[kind.name] = "no sockets for kind %r: override open_sockets()" % kind.name

    def pytest_generate_tests(self, metafunc) -> None:
        names = [self.backend_name] if self.backend_name else backend_names(metafunc.config)
        served = default_registry().by_name()
        pairs = [
            (name, kind) for name in names for kind in (served[name].info.kinds if name in served else (None,))
        ]
        if "kind" in metafunc.fixturenames:
            ids = ["%s-%s" % (name, kind.name if kind else "missing") for name, kind in pairs]
            metafunc.parametrize(("conformance_backend", "kind"), pairs, indirect=["conformance_backend"], ids=ids)
        else:
            metafunc.parametrize("conformance_backend", names, indirect=True, ids=names)

    @pytest.fixture
    def conformance_backend(self, request) -> Backend:
        return usable_backend(request.param)

    @pytest.fixture
    def zoo(self, kind: SocketKind):
        with tempfile.TemporaryDirectory() as tmpdir:
            zoo = SocketZoo(tmpdir)
            try:
                self.open_sockets(zoo, kind)
                if kind.name in zoo.missing:
                    pytest.skip(zoo.missing[kind.name])
                yield [item for item in zoo.expected if item.kind == kind.name]
            finally:
                zoo.close()

    # --- the checks ------------------------------------------------------------------------

    def test_describes_itself(self, conformance_backend: Backend) -> None:
        info = conformance_backend.info
        assert info.name and isinstance(info.priority, int)
        assert info.kinds and all(isinstance(k, SocketKind) for k in info.kinds)
        assert len({k.name for k in info.kinds}) == len(info.kinds), "kind names must be unique"

    def test_answers_availability_for_a_capture(self, conformance_backend: Backend, tmp_path) -> None:
        reason = conformance_backend.hooks.procsock_unavailable(source=Source.capture(str(tmp_path)))
        assert reason is None or (isinstance(reason, str) and reason)

    def test_lookup_reports_each_socket_exactly(self, conformance_backend: Backend, kind, zoo) -> None:
        """Asked for given inodes (as describe_fd and snapshot(pid=...) ask), each comes back once."""
        wanted = frozenset(want.inode for want in zoo)
        holders = scan_fds("/proc", (os.getpid(),)).owners
        with readable_here(kind):
            records = conformance_backend.collect(
                kind, Source.live(), wanted, netns=own_netns(), holders=holders
            ).records
        assert_reported(records, zoo, kind, conformance_backend)

    def test_table_lists_each_socket_once(self, conformance_backend: Backend, kind, zoo) -> None:
        if conformance_backend.info.lookup_only:
            pytest.skip("lookup-only backend: it never lists whole tables")
        with readable_here(kind):
            records = conformance_backend.collect(kind, Source.live(), None, netns=own_netns()).records
        assert_reported(records, zoo, kind, conformance_backend)

    def test_closed_socket_is_not_reported(self, conformance_backend: Backend, kind, zoo) -> None:
        gone = {inode_of(want.sock): want.label for want in zoo}
        for want in zoo:
            want.sock.close()
        try:
            records = conformance_backend.collect(kind, Source.live(), frozenset(gone), netns=own_netns()).records
        except ProcsockError:  # a lookup-only backend may find no holder to read through
            return
        assert not [gone[r.inode] for r in records if r.inode in gone]

    def test_unreadable_source_is_a_typed_answer(self, conformance_backend: Backend, kind, tmp_path) -> None:
        """A capture with nothing in it: the backend says it cannot read it, fails with a
        ProcsockError, or finds nothing; it never crashes or invents sockets."""
        source = Source.capture(str(tmp_path))
        if conformance_backend.unavailable(source) is not None:
            return
        try:
            collected = conformance_backend.collect(kind, source, None)
        except ProcsockError:
            return
        assert collected.records == ()
