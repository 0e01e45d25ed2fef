"""One inode, two kinds: the kind its fd names stands, else the kind that supersedes the other,
else backend priority (issue: an MPTCP socket shown as tcp, its plugin's record dropped)."""

import os
import socket

import pytest

from procsock import hookimpl
from procsock.backends import Registry
from procsock.model import (
    BackendInfo, Collected, Family, InetAddress, Query, SocketKind, SocketRecord, SockType, Source, State,
)
from procsock.resolver import Resolver
from stubs import StubBackend

IPPROTO_MPTCP = 262
MPTCP = SocketKind("mptcp", Family.INET, "mptcp", ("MPTCP",), supersedes=("tcp",))
PLAIN_MPTCP = SocketKind("mptcp", Family.INET, "mptcp", ("MPTCP",))  # the fd's xattr alone decides
ELDER = SocketKind("elder", Family.INET, "elder", ())
YOUNGER = SocketKind("younger", Family.INET, "younger", (), supersedes=("elder",))


def record(kind, inode, backend, state=State.LISTEN, port=1):
    return SocketRecord(kind=kind, inode=inode, type=SockType.STREAM, protocol=6, state=state,
                        local=InetAddress(b"\x7f\x00\x00\x01", port), remote=InetAddress(bytes(4), 0),
                        rx_queue=0, tx_queue=0, uid=0, backend=backend)


def registry_of(*backends):
    registry = Registry()
    for backend in backends:
        registry.register(backend, backend.name)
    return registry


@pytest.mark.parametrize("order", ["superseding first", "superseding last"])
def test_the_kind_that_supersedes_stands_whatever_the_priority(order):
    """No process holds these inodes (no fd to ask): `supersedes` decides, not priority."""
    elder = StubBackend("elder", 200 if order == "superseding last" else 10, [ELDER], [record(ELDER, 999001, "elder")])
    younger = StubBackend("younger", 10 if order == "superseding last" else 200, [YOUNGER],
                          [record(YOUNGER, 999001, "younger", port=2)])
    snap = Resolver(registry_of(elder, younger), Source.live()).snapshot(Query())
    (only,) = [s for s in snap.sockets if s.record.inode == 999001]
    assert only.record.kind == YOUNGER and only.record.local.port == 2
    listening = Resolver(registry_of(elder, younger), Source.live()).snapshot(Query(states=frozenset({State.LISTEN})))
    assert [s.record.kind for s in listening.sockets if s.record.inode == 999001] == [YOUNGER]


def test_without_supersedes_priority_decides():
    first = StubBackend("first", 200, [ELDER], [record(ELDER, 999002, "first")])
    other = SocketKind("other", Family.INET, "other", ())
    second = StubBackend("second", 10, [other], [record(other, 999002, "second")])
    snap = Resolver(registry_of(first, second), Source.live()).snapshot(Query())
    assert [s.record.kind for s in snap.sockets if s.record.inode == 999002] == [ELDER]


def test_a_malformed_supersedes_makes_the_plugin_broken():
    bad = SocketKind("bad", Family.INET, "bad", (), supersedes="tcp")
    registry = Registry()
    registry.register(StubBackend("bad", 10, [bad]), "bad")
    assert registry.backends == () and "supersedes is not a tuple" in str(registry.failures[0])


class MptcpBackend:
    """A third party's MPTCP backend, at a low priority: it reads its sockets through getsockname."""

    name = "mptcp"

    def __init__(self, sockets, kind):
        self.sockets, self.kind = sockets, kind

    @hookimpl
    def procsock_backend_info(self):
        return BackendInfo("mptcp", 10, (self.kind,))

    @hookimpl
    def procsock_collect(self, kind, source, inodes, netns):
        found = []
        for sock in self.sockets:
            host, port = sock.getsockname()[:2]
            found.append(SocketRecord(
                kind=self.kind, inode=os.fstat(sock.fileno()).st_ino, type=SockType.STREAM, protocol=IPPROTO_MPTCP,
                state=State.LISTEN, local=InetAddress(socket.inet_aton(host), port), remote=InetAddress(bytes(4), 0),
                rx_queue=0, tx_queue=0, uid=os.getuid(), backend="mptcp", netns=netns.inode,
            ))
        return Collected(tuple(found))


@pytest.fixture
def mptcp_listener():
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError as exc:
        pytest.skip("no MPTCP in this kernel: %s" % exc.strerror)
    with sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


@pytest.mark.parametrize("kind", [MPTCP, PLAIN_MPTCP], ids=["supersedes tcp", "no supersedes"])
def test_an_mptcp_socket_is_mptcp_on_every_path(mptcp_listener, kind):
    inode = os.fstat(mptcp_listener.fileno()).st_ino
    registry = Registry.from_entry_points()
    registry.register(MptcpBackend([mptcp_listener], kind), "mptcp")
    tcp = Resolver(Registry.from_entry_points(), Source.live(), "netlink").snapshot(
        Query(kinds=frozenset({"tcp"}), pid=frozenset({os.getpid()})))
    if inode not in {s.record.inode for s in tcp.sockets}:
        pytest.skip("this kernel does not list the MPTCP listener's subflow in the TCP dump")
    resolver = Resolver(registry, Source.live())
    every = [s for s in resolver.snapshot(Query()).sockets if s.record.inode == inode]
    mine = [s for s in resolver.snapshot(Query(pid=frozenset({os.getpid()}))).sockets if s.record.inode == inode]
    one = resolver.describe_fd(os.getpid(), mptcp_listener.fileno())
    for sock in (every, mine, [one]):
        assert [(s.record.kind, s.record.kind.supersedes) for s in sock] == [(kind, kind.supersedes)]
        assert [o.pid for o in sock[0].owners] == [os.getpid()]


def test_save_diag_leaves_out_a_kind_nothing_reads_back_and_says_so():
    """A plugin's raw replies of its own kind would come back as another kind from a saved file
    no backend of that kind reads: they are left out, with a note."""
    class LiveOnly(StubBackend):
        @hookimpl
        def procsock_unavailable(self, source):
            return "reads no saved file" if source.diag_file is not None else None

    registry = Registry.from_entry_points()
    registry.register(LiveOnly("elder", 10, [ELDER]), "elder")  # a raw form, and no reading of saved files
    dumps, notes = Resolver(registry, Source.live()).raw_dumps(Query(kinds=frozenset({"elder", "tcp"})))
    assert {kind.name for kind, _, _, _ in dumps} == {"tcp"}
    assert any("elder: left out: no backend here reads elder back from a saved file" in note for note in notes)


def test_a_kind_claiming_another_kinds_kernel_name_makes_its_plugin_broken():
    """A lookup of one fd asks the kind its protocol xattr names: a second kind claiming `TCP` would
    hide TCP sockets from snapshot(pid=) and describe_fd while the full listing shows them."""
    impostor = SocketKind("tcpx", Family.INET, "tcpx", ("TCP",))
    registry = Registry.from_entry_points()
    registry.register(StubBackend("impostor", 1, [impostor]), "impostor")
    assert "impostor" not in {b.name for b in registry.backends}
    assert any("kernel's protocol name TCP" in str(failure) for failure in registry.failures)
