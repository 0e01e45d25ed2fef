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
    Family,
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


def own_holders():
    """This process's socket fds, as the fd walk gives them to a backend (`holders`)."""
    return scan_fds("/proc", (os.getpid(),)).owners


def _listed(lines: List[str], limit: int = 20) -> str:
    more = ["... and %d more" % (len(lines) - limit)] if len(lines) > limit else []
    return "\n".join(lines[:limit] + more)


def record_errors(records, kind: SocketKind, backend: Backend, netns: Netns) -> List[str]:
    """What is wrong with records as a whole: each must be of `kind`, from `backend`, and carry
    the namespace it was read in (``--netns`` and the resolver's per-namespace reads rely on it)."""
    wrong = []
    for r in records:
        fields = (("kind", r.kind, kind), ("backend", r.backend, backend.name), ("netns", r.netns, netns.inode))
        for field, got, want in fields:
            if got != want:
                wrong.append("socket:[%d] (%s): %s: got %s, want %s"
                             % (r.inode, backend.name, field, _text(got), _text(want)))
    return wrong


def assert_reported(records, zoo: List[Expected], kind: SocketKind, backend: Backend, netns: Netns) -> None:
    """Each zoo socket is among `records` exactly once and as it is; every record is of `kind`,
    from `backend`, in namespace `netns`."""
    wrong = record_errors(records, kind, backend, netns)
    for want in zoo:
        matching = [r for r in records if r.inode == want.inode]
        if len(matching) != 1:
            wrong.append("%s (%s): socket:[%d] reported %d times, want once"
                         % (want.label, backend.name, want.inode, len(matching)))
        else:
            wrong += mismatches(matching[0], want, kind, backend.name)
    assert not wrong, _listed(wrong)


def decoys(kind: SocketKind) -> List[socket.socket]:
    """Sockets that are not of `kind` (another family), for asking a backend about inodes it must
    not answer for."""
    if kind.family is Family.UNIX:
        return [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
    return list(socket.socketpair())


def closed_inode() -> int:
    """The inode of a socket that existed and is closed now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        return inode_of(sock)


class NoOpener(Exception):
    """The default open_sockets() was asked for a kind procsock's zoo cannot open."""


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

        The default opens the built-in kinds, and fails the check for any other kind: a plugin's
        own kinds need a subclass that overrides it. Record a kind this host cannot open in
        ``zoo.missing[kind.name]`` with the reason (its checks are then skipped).
        """
        if kind.name not in KNOWN_KINDS:
            raise NoOpener(kind.name)
        zoo.build([kind.name])

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
    def zoo(self, conformance_backend: Backend, kind: SocketKind):
        with tempfile.TemporaryDirectory() as tmpdir:
            zoo = SocketZoo(tmpdir)
            try:
                try:
                    self.open_sockets(zoo, kind)
                except NoOpener:
                    pytest.fail(
                        "backend %r serves kind %r, which procsock cannot open: subclass "
                        "procsock.testing.conformance.BackendConformance in your plugin's tests, set backend_name = %r "
                        "and override open_sockets(zoo, kind) to open real %s sockets (see docs/plugins.md)"
                        % (conformance_backend.name, kind.name, conformance_backend.name, kind.name),
                        pytrace=False,
                    )
                if kind.name in zoo.missing:
                    pytest.skip(zoo.missing[kind.name])
                opened = [item for item in zoo.expected if item.kind == kind.name]
                if not opened:
                    pytest.fail("open_sockets() opened no socket of kind %r: the checks would test nothing" % kind.name,
                                pytrace=False)
                yield opened
            finally:
                zoo.close()

    # --- the checks ------------------------------------------------------------------------

    def test_describes_itself(self, conformance_backend: Backend) -> None:
        info = conformance_backend.info
        assert info.name and isinstance(info.priority, int), "BackendInfo needs a name and an int priority: %r" % (
            info,
        )
        kinds_ok = info.kinds and all(isinstance(k, SocketKind) for k in info.kinds)
        assert kinds_ok, "kinds must be SocketKinds: %r" % (info.kinds,)
        assert len({k.name for k in info.kinds}) == len(info.kinds), "kind names must be unique: %r" % (info.kinds,)

    def test_answers_availability_for_a_capture(self, conformance_backend: Backend, tmp_path) -> None:
        reason = conformance_backend.hooks.procsock_unavailable(source=Source.capture(str(tmp_path)))
        assert reason is None or (isinstance(reason, str) and reason), "a reason must be a non-empty str: %r" % (
            reason,
        )

    def test_lookup_reports_each_socket_exactly(self, conformance_backend: Backend, kind, zoo) -> None:
        """Asked for given inodes (as describe_fd and snapshot(pid=...) ask), each comes back once;
        asked also for sockets of another family and a closed one, it invents nothing for them."""
        others = decoys(kind)
        try:
            foreign = {inode_of(sock): "a %s socket" % sock.family.name for sock in others}
            holders = own_holders()
            with readable_here(kind):
                records = conformance_backend.collect(
                    kind, Source.live(), frozenset(want.inode for want in zoo) | frozenset(foreign),
                    netns=own_netns(), holders=holders,
                ).socket_records()
        finally:
            for sock in others:
                sock.close()
        gone = closed_inode()
        foreign[gone] = "a closed socket"
        try:  # a lookup-only backend may answer that it has no holder to read it through
            after = conformance_backend.collect(kind, Source.live(), frozenset([gone]), netns=own_netns())
            after = after.socket_records()
        except ProcsockError:
            after = ()
        invented = ["socket:[%d] is %s, yet reported as %s %s" % (r.inode, foreign[r.inode], kind.name, r.state.name)
                    for r in records + after if r.inode in foreign]
        assert not invented, "records for inodes that are no %s socket:\n%s" % (kind.name, _listed(invented))
        assert_reported(records, zoo, kind, conformance_backend, own_netns())

    def test_table_lists_each_socket_once(self, conformance_backend: Backend, kind, zoo) -> None:
        if conformance_backend.info.lookup_only:
            pytest.skip("lookup-only backend: it never lists whole tables")
        with readable_here(kind):
            records = conformance_backend.collect(kind, Source.live(), None, netns=own_netns()).socket_records()
        assert_reported(records, zoo, kind, conformance_backend, own_netns())

    def test_closed_socket_is_not_reported(self, conformance_backend: Backend, kind, zoo) -> None:
        """Sockets read while open, then closed: a later lookup or table read does not report them
        (no cached dump, no remembered records)."""
        backend, live, netns = conformance_backend, Source.live(), own_netns()
        wanted = frozenset(want.inode for want in zoo)
        with readable_here(kind):
            asked = backend.collect(kind, live, wanted, netns=netns, holders=own_holders())
            seen = {r.inode for r in asked.socket_records()}
            if not backend.info.lookup_only:
                seen |= {r.inode for r in backend.collect(kind, live, None, netns=netns).socket_records()}
        assert wanted <= seen, "the open sockets were not reported, so this check tests nothing"
        gone = {want.inode: want.label for want in zoo}
        for want in zoo:
            want.sock.close()
        reads = [("lookup", frozenset(gone))] + ([] if backend.info.lookup_only else [("table", None)])
        stale = []
        for how, inodes in reads:
            try:
                records = backend.collect(kind, live, inodes, netns=netns, holders=own_holders()).socket_records()
            except ProcsockError:  # a lookup-only backend may find no holder to read through
                continue
            stale += [
                "%s read: %s (socket:[%d]) is closed, yet reported %s" % (how, gone[r.inode], r.inode, r.state.name)
                for r in records if r.inode in gone
            ]
        assert not stale, "closed sockets reported (a cached dump or remembered records?):\n" + _listed(stale)

    def test_capture_is_read_from_files_only(self, conformance_backend: Backend, kind, zoo, tmp_path) -> None:
        """An empty captured tree, while live sockets of `kind` are open: the backend says it
        cannot read it, fails with a ProcsockError, or finds nothing. It never crashes, invents
        sockets, or answers from the live kernel for a capture."""
        source = Source.capture(str(tmp_path))
        if conformance_backend.unavailable(source) is not None:
            return
        wanted = frozenset(want.inode for want in zoo)
        for inodes in (None, wanted):
            try:
                collected = conformance_backend.collect(kind, source, inodes, holders=own_holders())
            except ProcsockError:
                continue
            live = [w.label for w in zoo if w.inode in {r.inode for r in collected.socket_records()}]
            assert not live, "asked to read an empty captured tree, it reported live sockets: %s" % ", ".join(live)
            assert collected.socket_records() == (), "an empty captured tree has no sockets, yet: %s" % _listed(
                ["socket:[%d] %s" % (r.inode, r.state.name) for r in collected.socket_records()])
