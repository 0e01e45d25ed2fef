"""The procnet backend's hooks on this host's /proc/net, checked against real sockets held here.

Every expectation comes from the socket itself (getsockname, getpeername, SO_PROTOCOL, fstat,
FIONREAD), never from knowledge of this machine. The hooks are also run on the fixture trees,
the way a captured /proc is read.
"""

import errno
import fcntl
import importlib.metadata
import os
import shutil
import socket
import struct
import tempfile
import termios
import time

import pluggy
import pytest

import procsock_plugins.procnet as backend
from procsock import hookspecs
from procsock.errors import BackendUnavailable
from procsock.model import (
    BUILTIN_KINDS,
    NETLINK,
    PACKET,
    RAW,
    RAW6,
    SCTP,
    SCTP6,
    TCP,
    UDP,
    UDPLITE,
    UDPLITE6,
    UNIX,
    InetAddress,
    Netns,
    NetlinkAddress,
    PacketAddress,
    SocketKind,
    SocketRecord,
    SockType,
    Source,
    State,
    UnixAddress,
)
from procsock_plugins.procnet import parse as procnet
from sockzoo import endpoint_of, inode_of, needs_root, peer_of

KINDS = {kind.name: kind for kind in BUILTIN_KINDS}
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def collect(kind: SocketKind, *socks: socket.socket):
    """procnet's records of `kind` on the live host, keyed by inode, for just these sockets."""
    wanted = frozenset(inode_of(s) for s in socks)
    collected = backend.procsock_collect(kind, Source.live(), wanted, netns=Netns())
    return {r.inode: r for r in collected.socket_records()}


def expected(kind: SocketKind, sock: socket.socket, state: State, **fields) -> SocketRecord:
    """The record of an idle socket as the socket itself describes it (queues empty).

    inet and unix endpoints come from getsockname/getpeername; other families pass theirs.
    """
    inet = sock.family in (socket.AF_INET, socket.AF_INET6)
    values = dict(
        kind=kind,
        inode=inode_of(sock),
        type=SockType(sock.type),
        protocol=sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL),
        state=state,
        remote=None,
        rx_queue=0 if inet else None,
        tx_queue=0 if inet and not (state is State.LISTEN and kind.protocol == "tcp") else None,
        uid=os.geteuid() if inet else None,
        backend="procnet",
    )
    if inet or sock.family == socket.AF_UNIX:
        values["local"] = endpoint_of(sock, sock.getsockname())
    if inet:
        values["remote"] = endpoint_of(sock, peer_of(sock))
    values.update(fields)
    return SocketRecord(**values)


def eventually(read, want, seconds=30.0):
    """`read()` once it equals `want` (loopback traffic settles in microseconds; a busy host reads the
    table slowly, hence the long limit, reached only by a failing test), else its last value."""
    deadline = time.monotonic() + seconds
    got = read()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.01)
        got = read()
    return got


@pytest.fixture
def closing():
    """Collects sockets a test opens and closes them afterwards."""
    opened = []
    yield lambda sock: opened.append(sock) or sock
    for sock in opened:
        sock.close()


# --- the everyday sockets of the shared zoo (tcp, tcp6, udp, udp6, unix) ---------------------


def test_every_zoo_socket_is_reported_as_it_describes_itself(zoo):
    for kind_name in sorted({item.kind for item in zoo.expected}):
        kind = KINDS[kind_name]
        items = [item for item in zoo.expected if item.kind == kind_name]
        got = collect(kind, *(item.sock for item in items))
        want = {item.inode: expected(kind, item.sock, item.state) for item in items}
        assert got == want, kind_name


def test_zoo_endpoints_agree_with_the_sockets_text(zoo):
    for item in zoo.expected:
        record = collect(KINDS[item.kind], item.sock)[item.inode]
        assert (record.local, record.remote) == (item.local, item.remote), item.label
        if item.sock.family != socket.AF_UNIX:
            host, port = item.sock.getsockname()[:2]
            assert (record.local.host, record.local.port) == (host, port), item.label


# --- kinds the zoo does not open ------------------------------------------------------------


def udplite_socket(family):
    try:
        return socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
    except OSError as exc:
        if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            pytest.skip("UDP-Lite is not built into this kernel")
        raise


@pytest.mark.parametrize("kind, family, host", [
    (UDPLITE, socket.AF_INET, "127.0.0.1"), (UDPLITE6, socket.AF_INET6, "::1"),
])
def test_udplite_bound_and_connected(closing, kind, family, host):
    bound = closing(udplite_socket(family))
    bound.bind((host, 0))
    connected = closing(udplite_socket(family))
    connected.connect(bound.getsockname()[:2])
    got = collect(kind, bound, connected)
    assert got == {
        inode_of(bound): expected(kind, bound, State.CLOSE),
        inode_of(connected): expected(kind, connected, State.ESTABLISHED),
    }
    assert got[inode_of(bound)].protocol == socket.IPPROTO_UDPLITE == 136


@needs_root
def test_raw_sockets_carry_their_ip_protocol(closing):
    icmp = closing(socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    icmp6 = closing(socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6))
    icmp6.connect(("::1", 0))
    assert collect(RAW, icmp) == {inode_of(icmp): expected(RAW, icmp, State.CLOSE)}
    # getpeername refuses raw sockets (no peer port): the remote is the address connected to.
    peer = InetAddress(socket.inet_pton(socket.AF_INET6, "::1"), 0)
    assert collect(RAW6, icmp6) == {inode_of(icmp6): expected(RAW6, icmp6, State.ESTABLISHED, remote=peer)}
    assert collect(RAW, icmp)[inode_of(icmp)].local.port == socket.IPPROTO_ICMP


@needs_root
def test_packet_sockets_binding_and_ethertype(closing):
    bound = closing(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)))
    bound.bind(("lo", 0x0003))
    unbound = closing(socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800)))
    got = collect(PACKET, bound, unbound)
    want = {}
    for sock in (bound, unbound):
        ifname, ethertype = sock.getsockname()[:2]
        ifindex = socket.if_nametoindex(ifname) if ifname else 0
        want[inode_of(sock)] = expected(
            PACKET, sock, State.CLOSE, protocol=ethertype, local=PacketAddress(ifindex, ethertype),
            uid=os.geteuid(), interface=ifindex,
        )
    assert got == want
    assert got[inode_of(bound)].local.ifindex != 0


def test_netlink_socket_portid_and_groups(closing):
    route = closing(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))
    route.bind((0, 1))  # RTMGRP_LINK
    portid, groups = route.getsockname()
    assert groups == 1
    got = collect(NETLINK, route)
    assert got == {
        inode_of(route): expected(
            NETLINK, route, State.CLOSE, local=NetlinkAddress(socket.NETLINK_ROUTE, portid, groups)
        )
    }


def test_netlink_type_is_reported_raw_even_for_dgram(closing):
    """net/netlink has no type column: documented as RAW."""
    dgram = closing(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE))
    dgram.bind((0, 0))
    assert collect(NETLINK, dgram)[inode_of(dgram)].type is SockType.RAW


# --- unix names the text format makes hard ---------------------------------------------------


def test_unix_names_with_newlines_spaces_and_nuls(closing):
    tmpdir = tempfile.mkdtemp()
    try:
        names = [
            os.path.join(tmpdir, "two\nlines"),
            os.path.join(tmpdir, "  spaced  \n"),  # ends with a newline: the next line is empty
            b"\0procnet abstract %d" % os.getpid(),
        ]
        socks = []
        for name in names:
            sock = closing(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
            sock.bind(name)
            socks.append(sock)
        nul_inside = closing(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        nul_inside.bind(b"\0procnet\0nul %d" % os.getpid())
        got = collect(UNIX, nul_inside, *socks)
        for sock in socks:
            assert got[inode_of(sock)] == expected(UNIX, sock, State.CLOSE)
        # Lossy by design: /proc/net/unix prints a NUL inside an abstract name as '@'.
        assert got[inode_of(nul_inside)].local == UnixAddress(b"\0procnet@nul %d" % os.getpid())
    finally:
        shutil.rmtree(tmpdir)


def test_unix_embryo_in_accept_queue_then_accepted(closing):
    tmpdir = tempfile.mkdtemp()
    try:
        path = os.path.join(tmpdir, "embryo")
        listener = closing(socket.socket(socket.AF_UNIX))
        listener.bind(path)
        listener.listen()
        client = closing(socket.socket(socket.AF_UNIX))
        client.connect(path)

        def named():
            collected = backend.procsock_collect(UNIX, Source.live(), None, netns=Netns())
            rows = [r for r in collected.socket_records() if r.local == UnixAddress(path.encode())]
            return sorted((r.inode, r.state) for r in rows)

        listening = (inode_of(listener), State.LISTEN)
        # Not accepted yet: a socket without a file (inode 0), shown as St 02 SS_CONNECTING.
        assert named() == sorted([(0, State.ESTABLISHED), listening])
        accepted = closing(listener.accept()[0])
        assert named() == sorted([(inode_of(accepted), State.ESTABLISHED), listening])
    finally:
        shutil.rmtree(tmpdir)


# --- rows the zoo cannot show: TIME_WAIT, queues ----------------------------------------------


def tcp_connection(closing):
    listener = closing(socket.create_server(("127.0.0.1", 0)))
    client = closing(socket.create_connection(listener.getsockname()))
    server = closing(listener.accept()[0])
    return listener, client, server


def test_time_wait_row_has_inode_zero(closing):
    listener, client, server = tcp_connection(closing)
    local = endpoint_of(client, client.getsockname())
    remote = endpoint_of(client, client.getpeername())
    client.close()  # the side that closes first keeps the TIME_WAIT
    server.close()

    def waiting():
        collected = backend.procsock_collect(TCP, Source.live(), frozenset({0}), netns=Netns())
        rows = [r for r in collected.socket_records() if (r.local, r.remote) == (local, remote)]
        return [(r.inode, r.state) for r in rows]

    assert eventually(waiting, [(0, State.TIME_WAIT)]) == [(0, State.TIME_WAIT)]


def test_tcp_receive_queue_counts_unread_bytes(closing):
    listener, client, server = tcp_connection(closing)
    payload = b"x" * 1000
    client.sendall(payload)

    def queues():
        records = collect(TCP, server, client)
        return records[inode_of(server)].rx_queue, records[inode_of(client)].tx_queue

    assert eventually(queues, (len(payload), 0)) == (len(payload), 0)
    (unread,) = struct.unpack("=i", fcntl.ioctl(server.fileno(), termios.FIONREAD, bytes(4)))
    assert unread == len(payload)


def test_udp_receive_queue_counts_memory_of_unread_datagrams(closing):
    bound = closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    bound.bind(("127.0.0.1", 0))
    assert collect(UDP, bound)[inode_of(bound)].rx_queue == 0
    sender = closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sender.sendto(b"y" * 100, bound.getsockname())
    assert eventually(lambda: collect(UDP, bound)[inode_of(bound)].rx_queue > 100, True)


def test_inodes_filter_returns_only_the_asked_sockets(zoo):
    tcp = [item for item in zoo.expected if item.kind == "tcp"]
    one = tcp[0]
    collected = backend.procsock_collect(TCP, Source.live(), frozenset({one.inode}), netns=Netns())
    assert [r.inode for r in collected.socket_records()] == [one.inode]
    everything = backend.procsock_collect(TCP, Source.live(), None, netns=Netns())
    assert {item.inode for item in tcp} <= {r.inode for r in everything.socket_records()}


# --- the hooks themselves ------------------------------------------------------------------


def test_backend_info():
    info = backend.procsock_backend_info()
    assert (info.name, info.priority, info.kinds) == ("procnet", 50, BUILTIN_KINDS + (SCTP, SCTP6))
    assert info.description


def test_unavailable_only_without_proc_tables():
    assert backend.procsock_unavailable(Source.live()) is None
    assert backend.procsock_unavailable(Source.capture(FIXTURES + "/basic")) is None
    assert "sock_diag" in backend.procsock_unavailable(Source.saved_diag("/x.diag", proc_root="/proc"))
    assert backend.procsock_unavailable(Source(proc_root=None)) == "no /proc tree to read"
    with pytest.raises(BackendUnavailable):
        backend.procsock_collect(TCP, Source.saved_diag("/x.diag"), None, netns=Netns())


@pytest.mark.parametrize("name", ["tcp6", "unix", "packet"])
def test_collect_reads_a_captured_tree(name):
    path = os.path.join(FIXTURES, "odd", "net", name)
    got = backend.procsock_collect(KINDS[name], Source.capture(os.path.join(FIXTURES, "odd")), None, netns=Netns())
    with open(path, "rb") as f:
        assert got == procnet.parse(KINDS[name], f.read(), source=path)
    assert got.socket_records() and all(r.backend == "procnet" for r in got.socket_records())
    assert got.skipped and all(s.startswith(path + ":") for s in got.skipped)


def test_missing_or_unreadable_table_makes_the_backend_unavailable():
    root = os.path.join(FIXTURES, "odd")
    with pytest.raises(BackendUnavailable) as caught:
        backend.procsock_collect(UDPLITE, Source.capture(root), None, netns=Netns())
    assert caught.value.backend == "procnet"
    assert caught.value.reason == "no net/udplite under %s (No such file or directory)" % root
    tmpdir = tempfile.mkdtemp()
    try:
        os.makedirs(os.path.join(tmpdir, "net", "tcp"))  # a directory where the file should be
        with pytest.raises(BackendUnavailable, match="no net/tcp under .*Is a directory"):
            backend.procsock_collect(TCP, Source.capture(tmpdir), None, netns=Netns())
    finally:
        shutil.rmtree(tmpdir)


def test_registered_through_the_entry_point_and_pluggy():
    (entry,) = [e for e in importlib.metadata.entry_points(group="procsock") if e.name == "procnet"]
    assert entry.load() is backend
    manager = pluggy.PluginManager("procsock")
    manager.add_hookspecs(hookspecs)
    manager.register(backend)
    manager.check_pending()
    assert manager.hook.procsock_backend_info().name == "procnet"
    collected = manager.hook.procsock_collect(
        kind=TCP, source=Source.live(), inodes=frozenset(), details=False, netns=Netns(), holders={}, raw=False
    )
    assert collected.socket_records() == ()
