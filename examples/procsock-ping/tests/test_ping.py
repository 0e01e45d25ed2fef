"""procsock-ping end to end: its parser on captured tables, the procsock conformance suite on
real ping sockets, and the procsock command listing them with owners once the plugin is installed."""

import json
import os
import socket
import subprocess
import sys

import pytest

from procsock import InetAddress, ParseError, SocketRecord, SockType, State
from procsock.testing.conformance import BackendConformance
from procsock_ping import ICMP, ICMP6, parse

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "net")
LOOPBACK6 = socket.inet_pton(socket.AF_INET6, "::1")


def read_fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def ping_socket(family):
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    return socket.socket(family, socket.SOCK_DGRAM, proto)


def test_captured_icmp_table():
    got = parse.parse(ICMP, read_fixture("icmp"), source="icmp", backend="ping")
    loop = socket.inet_aton("127.0.0.1")
    assert got.skipped == ()
    assert got.socket_records() == (
        SocketRecord(kind=ICMP, inode=419353, type=SockType.DGRAM, protocol=1, state=State.CLOSE,
                     local=InetAddress(loop, 0x83FA), remote=InetAddress(bytes(4), 0), rx_queue=0, tx_queue=0, uid=0,
                     backend="ping"),
        SocketRecord(kind=ICMP, inode=419354, type=SockType.DGRAM, protocol=1, state=State.ESTABLISHED,
                     local=InetAddress(loop, 0x83FB), remote=InetAddress(loop, 0), rx_queue=0, tx_queue=0, uid=0,
                     backend="ping"),
    )


def test_captured_icmp6_table_and_inode_filter():
    got = parse.parse(ICMP6, read_fixture("icmp6"), source="icmp6", backend="ping", inodes=frozenset({419356}))
    (only,) = got.socket_records()
    assert (only.local, only.remote, only.protocol) == (InetAddress(LOOPBACK6, 0x83FD), InetAddress(LOOPBACK6, 0), 58)


def test_bad_rows_are_counted_skips_and_a_wrong_table_is_a_parse_error():
    data = read_fixture("icmp") + b"   21: 0100007F:83FA 00000000:0000 07\n   22: 0100XX7F:0001 00000000:0000 07 " \
        b"00000000:00000000 00:00000000 00000000     0        0 5 2 0 0\n"
    got = parse.parse(ICMP, data, source="icmp", backend="ping")
    assert len(got.socket_records()) == 2 and [s.split(":")[1] for s in got.skipped] == ["4", "5"]
    with pytest.raises(ParseError):
        parse.parse(ICMP, b"Num RefCount Protocol\n", source="unix", backend="ping")


class TestPingConformance(BackendConformance):
    """procsock's backend conformance suite on real ping sockets, bound and connected."""

    backend_name = "ping"

    @pytest.fixture(autouse=True)
    def allowed(self, ping_sockets):
        pass

    def open_sockets(self, zoo, kind):
        family, host = (socket.AF_INET, "127.0.0.1") if kind == ICMP else (socket.AF_INET6, "::1")
        bound = zoo.add(kind.name + " bound", ping_socket(family), kind.name, State.CLOSE)
        bound.bind((host, 0))
        peer = InetAddress(socket.inet_pton(family, host), 0)  # getpeername() refuses ping sockets
        connected = zoo.add(kind.name + " connected", ping_socket(family), kind.name, State.ESTABLISHED, peer)
        connected.connect((host, 0))


def procsock(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "procsock", *args], capture_output=True, text=True,
        env=dict(os.environ, **env), check=False,
    )


def test_procsock_lists_ping_sockets_with_owners_and_the_plugin(ping_sockets):
    with ping_socket(socket.AF_INET) as sock:
        sock.bind(("127.0.0.1", 0))
        ident = sock.getsockname()[1]
        listed = procsock("--jsonl", "--pid", str(os.getpid()), "--kind", "icmp")
        (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert row["inode"] == os.fstat(sock.fileno()).st_ino and row["backend"] == "ping"
        assert (row["local"]["address"], row["local"]["port"]) == ("127.0.0.1", ident)
        assert [(o["pid"], o["fd"]) for o in row["owners"]] == [(os.getpid(), sock.fileno())]
        table = procsock("--pid", str(os.getpid()))
        assert any(line.split()[:2] == ["icmp", "UNCONN"] and "127.0.0.1:%d" % ident in line
                   for line in table.stdout.splitlines())
        # Without the plugin nothing serves it: the socket is an unresolved inode, with the reason.
        without = procsock("--json", "--pid", str(os.getpid()), PROCSOCK_DISABLE_PLUGINS="ping")
        doc = json.loads(without.stdout)
        assert os.fstat(sock.fileno()).st_ino not in [s["inode"] for s in doc["sockets"]]
        assert "no backend serves PING sockets" in without.stderr
    backends = procsock("--list-backends").stdout
    assert any(line.startswith("ping ") and "ready [icmp,icmp6]" in line and "from procsock-ping 0.1.0" in line
               for line in backends.splitlines()), backends


def test_a_hostile_capture_is_refused_or_skipped_never_followed(tmp_path):
    """net/icmp is read through procsock.inputs: a link out of the tree is refused (never the
    host's live table), a FIFO does not hang, a row with a 5000-digit inode is one skipped row."""
    import procsock_ping
    from procsock import BackendUnavailable, Netns, Source

    net = tmp_path / "net"
    net.mkdir()
    os.symlink("/proc/net/icmp", net / "icmp")
    os.mkfifo(net / "icmp6")
    source = Source.capture(str(tmp_path))
    with pytest.raises(BackendUnavailable, match="symbolic link"):
        procsock_ping.procsock_collect(ICMP, source, None, Netns())
    with pytest.raises(BackendUnavailable, match="not a regular file"):
        procsock_ping.procsock_collect(ICMP6, source, None, Netns())
    table = read_fixture("icmp")
    long_row = table.split(b"\n")[1].replace(b" 419353 ", b" %s " % (b"7" * 5000))
    os.remove(net / "icmp")
    (net / "icmp").write_bytes(table + long_row + b"\n")
    got = procsock_ping.procsock_collect(ICMP, source, None, Netns())
    assert {r.inode for r in got.socket_records()} == {419353, 419354}
    (skip,) = got.skipped
    assert "is not a decimal number" in skip and len(skip) < 200
