"""The netlink backend on the live kernel: exact names, peers, fallback, saved replies, ss -D."""

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile

import pytest

import procsock
from procsock.api import default_registry
from procsock.compare import compare_backends
from procsock.resolver import Query
from procsock.model import UNIX, Netns, Source, UnixAddress
from procsock_plugins import netlink
from procsock_plugins.netlink import codec, transport
from sockzoo import inode_of, model_endpoint, needs_root, ss_endpoint

HOSTILE_NAMES = [
    b"new\nline",
    b"bad\xffbyte",
    b"with space",
    b"esc\x1b[31m",
]


@pytest.fixture
def hostile_unix():
    with tempfile.TemporaryDirectory() as tmpdir:
        socks = []
        names = [os.fsencode(tmpdir) + b"/" + n for n in HOSTILE_NAMES]
        names += [b"\0procsock\0nul\0%d" % os.getpid(), b"\0procsock-abstract-%d" % os.getpid()]
        for name in names:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(name)
            socks.append((name, sock))
        yield socks
        for _, sock in socks:
            sock.close()


def test_unix_names_are_byte_exact(hostile_unix):
    snap = procsock.snapshot(pid=os.getpid(), protocol="unix", backend="netlink")
    by_inode = {s.record.inode: s.record for s in snap.sockets}
    for name, sock in hostile_unix:
        assert by_inode[inode_of(sock)].local == UnixAddress(name)
        assert procsock.describe_inode(inode_of(sock)).record.local == UnixAddress(name)


def test_dump_and_exact_lookup_agree(hostile_unix):
    wanted = frozenset(inode_of(s) for _, s in hostile_unix)
    dumped = {
        r.inode: r for r in netlink.procsock_collect(UNIX, Source.live(), None, False, Netns(), False).socket_records()
        if r.inode in wanted
    }
    looked_up = {
        r.inode: r
        for r in netlink.procsock_collect(UNIX, Source.live(), wanted, False, Netns(), False).socket_records()
    }
    assert dumped == looked_up and set(looked_up) == wanted
    assert netlink.procsock_collect(UNIX, Source.live(), frozenset({1}), False, Netns(), False).socket_records() == ()


def test_socketpair_peers_and_their_owners():
    a, b = socket.socketpair()
    with a, b:
        sock = procsock.describe_fd(os.getpid(), a.fileno())
        assert sock.record.backend == "netlink"
        assert sock.record.peer_inode == inode_of(b)
        assert [(o.pid, o.fd) for o in sock.peer_owners] == [(os.getpid(), b.fileno())]
        assert sock.record.uid == os.getuid()
        table = subprocess.run(
            [sys.executable, "-m", "procsock", "-x", "--pid", str(os.getpid())], capture_output=True, text=True
        ).stdout
        peer_column = "* %d %s,%d,%d " % (inode_of(b), sock.peer_owners[0].name, os.getpid(), b.fileno())
        (row,) = [line for line in table.splitlines() if peer_column in line]
        assert row.split(peer_column)[1].split()[0] == str(inode_of(a))


def test_tcp_details_only_netlink_knows():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        record = procsock.describe_fd(os.getpid(), listener.fileno(), backend="netlink").record
    assert record.backend == "netlink" and record.cookie and record.uid == os.getuid()
    assert record.tx_queue == 5  # inet_diag reports a listener's backlog limit as its send queue


def test_netlink_refused_falls_back_to_procnet_and_says_so(zoo, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(transport.socket, "socket", refuse)
    snap = procsock.snapshot(pid=os.getpid())
    assert set(snap.answered_by.values()) == {"procnet"}
    assert {s.record.backend for s in snap.sockets} == {"procnet"}
    note = next(n.text for n in snap.notes if n.text.startswith("netlink: "))
    assert "EPERM" in note and "using procnet for tcp, tcp6" in note
    assert {s.record.inode for s in snap.sockets} == {i.inode for i in zoo.expected}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "procsock", *args], capture_output=True, check=True)


def test_saved_replies_round_trip(zoo, tmp_path):
    saved = tmp_path / "host.diag"
    run_cli("--save-diag", str(saved))
    replay = procsock.snapshot(diag_file=str(saved))
    assert replay.sockets and all(not s.owners for s in replay.sockets)
    found = {s.record.inode: s.record for s in replay.sockets}
    live = {s.record.inode: s.record for s in procsock.snapshot(pid=os.getpid(), backend="netlink").sockets}
    for item in zoo.expected:
        assert found[item.inode] == live[item.inode], item.label  # its namespace too
    with_owners = json.loads(run_cli("--diag-file", str(saved), "--proc-root", "/proc", "--json").stdout)
    owned = {s["inode"]: s["owners"] for s in with_owners["sockets"]}
    assert any(o["pid"] == os.getpid() for o in owned[zoo.expected[0].inode])


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_ss_dump_file_decodes_to_what_ss_lists(zoo, tmp_path):
    saved = tmp_path / "ss.diag"
    subprocess.run(["ss", "-tan", "-D", str(saved)], check=True, capture_output=True)
    listed = subprocess.run(["ss", "-tanH"], check=True, capture_output=True, text=True).stdout
    shown = {
        (f[0], ss_endpoint(f[3]), ss_endpoint(f[4])) for f in (line.split() for line in listed.splitlines())
    }
    records = procsock.snapshot(diag_file=str(saved)).sockets
    zoo_tcp = {i.inode for i in zoo.expected if i.kind.startswith("tcp")}
    decoded = {s.record.inode: s.record for s in records}
    assert zoo_tcp <= set(decoded)
    for inode in zoo_tcp:
        rec = decoded[inode]
        assert (rec.state.label, model_endpoint(rec.local), model_endpoint(rec.remote)) in shown


def test_netlink_and_procnet_agree_on_the_zoo(zoo):
    result = compare_backends(default_registry(), Source.live(), "netlink", "procnet", Query())
    assert {"tcp", "tcp6", "udp", "udp6", "unix"} <= set(result.kinds)
    assert result.unexplained == ()
    zoo_inodes = {i.inode for i in zoo.expected}
    assert not zoo_inodes & {r.inode for r in result.only_a + result.only_b}
    cli = subprocess.run([sys.executable, "-m", "procsock", "compare", "--json"], capture_output=True, text=True)
    doc = json.loads(cli.stdout)
    assert (doc["a"], doc["b"]) == ("netlink", "procnet") and cli.returncode == (0 if doc["agree"] else 1)


def test_details_match_what_the_socket_itself_reports():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            client.sendall(b"x" * 1000)
            assert len(server.recv(2000)) == 1000
            plain = procsock.describe_fd(os.getpid(), client.fileno()).record
            assert plain.extended is None  # details cost nothing unless asked for
            ext = procsock.describe_fd(os.getpid(), client.fileno(), details=True).record.extended
            own = codec.tcp_info(client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512))
            assert ext.tcp_info.bytes_sent == own.bytes_sent == 1000
            assert (ext.tcp_info.snd_mss, ext.tcp_info.rcv_wscale) == (own.snd_mss, own.rcv_wscale)
            congestion = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
            assert ext.congestion == congestion.rstrip(b"\0").decode()
            assert ext.meminfo.sndbuf == client.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            client.shutdown(socket.SHUT_WR)
            ext = procsock.describe_fd(os.getpid(), client.fileno(), details=True).record.extended
            assert ext.shutdown == 2
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with unix:
        ext = procsock.describe_fd(os.getpid(), unix.fileno(), details=True).record.extended
        assert ext.meminfo.rcvbuf == unix.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def test_unix_details_name_the_bound_file_and_pending_connections(tmp_path):
    path = str(tmp_path / "listener.sock")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(path)
        listener.listen()
        client.connect(path)
        ext = procsock.describe_fd(os.getpid(), listener.fileno(), details=True).record.extended
        st = os.stat(path)
        assert (ext.vfs_inode, ext.vfs_dev) == (st.st_ino, st.st_dev)
        assert ext.pending == (inode_of(client),)  # the clients whose connections wait to be accepted


def test_raw_dump_is_the_same_sockets_as_a_collect(hostile_unix):
    """procsock_raw_dump's bytes decode (as --diag-file reads them) to what procsock_collect saw."""
    raw = netlink.procsock_raw_dump(UNIX, Source.live(), Netns(4242))
    saved = {r.inode: r.local for r in codec.decode(raw).socket_records()}
    assert {r.netns for _, d in codec.decode_saved(raw, source="raw") for r in d.socket_records()} == {4242}
    assert {inode_of(sock): saved.get(inode_of(sock)) for _, sock in hostile_unix} == {
        inode_of(sock): UnixAddress(name) for name, sock in hostile_unix
    }


def _forged_answer(seq: int, inode: int) -> bytes:
    """A unix_diag record named /forged claiming `inode`, then NLMSG_DONE, as answer `seq`."""
    name = b"/forged"
    payload = struct.pack("=BBBxIII", socket.AF_UNIX, socket.SOCK_STREAM, 10, inode, 0, 0)
    payload += struct.pack("=HH", 4 + len(name), codec.UNIX_DIAG_NAME) + name + bytes(-len(name) % 4)
    done = codec._message(codec.NLMSG_DONE, 2, seq, bytes(4))
    return codec._message(codec.SOCK_DIAG_BY_FAMILY, 2, seq, payload) + done


@needs_root  # sending to another port id needs CAP_NET_ADMIN over the namespace (unshare -Urn gives it)
def test_only_the_kernel_is_heard(hostile_unix):
    """Datagrams another socket sends to ours (here before the kernel's answer, with the right
    sequence number) are dropped unread and counted by sender; the kernel's answer is read whole."""
    name, real = hostile_unix[0]
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, codec.NETLINK_SOCK_DIAG) as ours, \
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, codec.NETLINK_SOCK_DIAG) as other:
        ours.bind((0, 0))
        other.bind((0, 0))
        port, stranger = ours.getsockname()[0], other.getsockname()[0]
        for _ in range(3):
            other.sendto(_forged_answer(99, inode_of(real)), (port, 0))
        chunks, dropped = transport.exchange(ours, codec.unix_request(99, inode_of(real)), 99, single=True)
    assert dropped == {stranger: 3}
    (record,) = codec.decode(b"".join(chunks), seq=99, port=port).socket_records()
    assert (record.inode, record.local) == (inode_of(real), UnixAddress(name))
    assert transport.dropped_note(dropped) == "dropped 3 datagrams not from the kernel (from port ids %d)" % stranger


@needs_root
def test_a_diag_socket_refuses_every_sender_but_the_kernel():
    with transport.open_diag_socket() as ours, socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW, codec.NETLINK_SOCK_DIAG
    ) as other:
        decoded, _, _ = transport.query(ours, lambda seq: codec.unix_request(seq), backend="netlink")
        assert decoded.socket_records() and decoded.skipped == ()
        with pytest.raises(ConnectionRefusedError):
            other.sendto(_forged_answer(1, 1), (ours.getsockname()[0], 0))
