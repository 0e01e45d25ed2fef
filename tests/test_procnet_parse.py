"""The /proc/net parsers as pure functions: fixture files and inline bytes in, exact records out.

tests/fixtures/basic/net holds tables captured on a little-endian host while real sockets of every
kind were open (trimmed to those sockets); tests/fixtures/odd/net holds hand-made edge cases.
"""

import os
import socket
import struct
import sys

import pytest

from procsock.errors import ParseError
from procsock.model import (
    BUILTIN_KINDS,
    NETLINK,
    PACKET,
    RAW,
    RAW6,
    TCP,
    TCP6,
    UDP,
    UDP6,
    UDPLITE,
    UDPLITE6,
    UNIX,
    Family,
    InetAddress,
    NetlinkAddress,
    PacketAddress,
    SocketKind,
    SocketRecord,
    SockType,
    State,
    UnixAddress,
)
from procsock_plugins.procnet import parse as procnet

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
KINDS = {kind.name: kind for kind in BUILTIN_KINDS}

# The captured tables print addresses in the byte order of the host they were taken on.
little_endian_capture = pytest.mark.skipif(
    sys.byteorder != "little", reason="the fixtures were captured on a little-endian host"
)


def table(scenario: str, name: str) -> bytes:
    with open(os.path.join(FIXTURES, scenario, "net", name), "rb") as f:
        return f.read()


def parsed(scenario: str, name: str, inodes=None):
    return procnet.parse(KINDS[name], table(scenario, name), source="net/" + name, inodes=inodes)


def v4(host: str, port: int) -> InetAddress:
    return InetAddress(socket.inet_pton(socket.AF_INET, host), port)


def v6(host: str, port: int) -> InetAddress:
    return InetAddress(socket.inet_pton(socket.AF_INET6, host), port)


def record(kind, inode, sock_type, protocol, state, local, remote, rx=0, tx=0, uid=0, **extra):
    if state is State.LISTEN and kind.protocol == "tcp":
        tx = None  # a listener's row has 0 there, not its backlog limit: unknown
    return SocketRecord(
        kind=kind, inode=inode, type=sock_type, protocol=protocol, state=state, local=local,
        remote=remote, rx_queue=rx, tx_queue=tx, uid=uid, backend="procnet", **extra,
    )


def unix(inode, sock_type, state, name):
    return record(UNIX, inode, sock_type, 0, state, UnixAddress(name), None, rx=None, tx=None, uid=None)


ANY4, ANY6 = v4("0.0.0.0", 0), v6("::", 0)
S, D, R, Q = SockType.STREAM, SockType.DGRAM, SockType.RAW, SockType.SEQPACKET
CAPTURED_PATH = b"/tmp/procnet-cap/run/ctl sock"

BASIC = {
    "tcp": [
        record(TCP, 7757, S, 6, State.LISTEN, v4("127.0.0.1", 44581), ANY4),
        record(TCP, 7759, S, 6, State.ESTABLISHED, v4("127.0.0.1", 35706), v4("127.0.0.1", 44581)),
        record(TCP, 0, S, 6, State.TIME_WAIT, v4("127.0.0.1", 35732), v4("127.0.0.1", 44581)),
        record(TCP, 7760, S, 6, State.ESTABLISHED, v4("127.0.0.1", 44581), v4("127.0.0.1", 35706)),
        record(TCP, 7762, S, 6, State.ESTABLISHED, v4("127.0.0.1", 44581), v4("127.0.0.1", 35722)),
    ],
    "tcp6": [
        record(TCP6, 7758, S, 6, State.LISTEN, v6("::", 57219), ANY6),
        record(
            TCP6, 7761, S, 6, State.ESTABLISHED,
            v6("::ffff:127.0.0.1", 35722), v6("::ffff:127.0.0.1", 44581),
        ),
    ],
    "udp": [
        # 5 bytes sent to it and not read: the kernel counts the memory they take (0x340).
        record(UDP, 7765, D, 17, State.CLOSE, v4("127.0.0.1", 49371), ANY4, rx=832),
        record(UDP, 7766, D, 17, State.ESTABLISHED, v4("127.0.0.1", 47068), v4("127.0.0.1", 49371)),
    ],
    "udp6": [
        record(UDP6, 7768, D, 17, State.ESTABLISHED, v6("::1", 37743), v6("::1", 60515)),
        record(UDP6, 7767, D, 17, State.CLOSE, v6("::", 60515), ANY6),
    ],
    "udplite": [record(UDPLITE, 7769, D, 136, State.CLOSE, v4("127.0.0.1", 34577), ANY4)],
    "udplite6": [record(UDPLITE6, 7770, D, 136, State.CLOSE, v6("::1", 39780), ANY6)],
    # Raw sockets show their IP protocol (ICMP 1, ICMPv6 58) as the local port.
    "raw": [record(RAW, 7771, R, 1, State.CLOSE, v4("0.0.0.0", 1), ANY4)],
    "raw6": [record(RAW6, 7772, R, 58, State.ESTABLISHED, v6("::1", 58), v6("::1", 0))],
    "unix": [
        unix(7773, S, State.LISTEN, CAPTURED_PATH),
        unix(7775, S, State.ESTABLISHED, CAPTURED_PATH),
        unix(7779, D, State.CLOSE, b""),
        unix(7778, S, State.ESTABLISHED, b""),
        unix(7777, S, State.ESTABLISHED, b""),
        unix(7774, S, State.ESTABLISHED, b""),
        unix(7776, D, State.CLOSE, b"\0procnet-cap"),
    ],
    "packet": [
        record(PACKET, 7780, R, 0x0003, State.CLOSE, PacketAddress(1, 0x0003), None, interface=1, rx=None, tx=None),
        record(PACKET, 7781, D, 0x0800, State.CLOSE, PacketAddress(0, 0x0800), None, interface=0, rx=None, tx=None),
    ],
    "netlink": [
        record(NETLINK, 7782, R, 0, State.CLOSE, NetlinkAddress(0, 4838, 1), None, uid=None, rx=None, tx=None),
        record(NETLINK, 7783, R, 15, State.CLOSE, NetlinkAddress(15, 4838, 0), None, uid=None, rx=None, tx=None),
    ],
}


@little_endian_capture
@pytest.mark.parametrize("name", sorted(BASIC))
def test_basic_capture_gives_exact_records(name):
    collected = parsed("basic", name)
    assert collected.skipped == ()
    assert list(collected.socket_records()) == BASIC[name]


@little_endian_capture
def test_basic_addresses_as_packed_bytes_and_text():
    listener, client = parsed("basic", "tcp").socket_records()[:2]
    assert listener.local.packed == b"\x7f\x00\x00\x01" and listener.local.port == 44581
    assert (listener.local.host, str(listener.local)) == ("127.0.0.1", "127.0.0.1:44581")
    assert listener.remote.packed == bytes(4) and str(listener.remote) == "0.0.0.0:*"
    assert str(client.remote) == "127.0.0.1:44581"

    wildcard, mapped = parsed("basic", "tcp6").socket_records()
    assert wildcard.local.packed == bytes(16) and str(wildcard.local) == "[::]:57219"
    assert mapped.local.packed == bytes(10) + b"\xff\xff\x7f\x00\x00\x01"
    assert mapped.local.host == "::ffff:127.0.0.1"
    assert str(mapped.remote) == "[::ffff:127.0.0.1]:44581"

    connected = parsed("basic", "udp6").socket_records()[0]
    assert connected.local.packed == bytes(15) + b"\x01"
    assert (str(connected.local), str(connected.remote)) == ("[::1]:37743", "[::1]:60515")


def test_basic_unix_names_and_types_as_text():
    by_inode = {r.inode: r for r in parsed("basic", "unix").socket_records()}
    assert by_inode[7773].local.display == "/tmp/procnet-cap/run/ctl sock"
    assert by_inode[7776].local.abstract and by_inode[7776].local.display == "@procnet-cap"
    assert by_inode[7777].local.display == "*"
    assert [by_inode[i].netid for i in (7773, 7779)] == ["u_str", "u_dgr"]


def test_packet_and_netlink_text():
    raw, dgram = parsed("basic", "packet").socket_records()
    assert (str(raw.local), raw.netid, str(dgram.local), dgram.netid) == (
        "ETH_P_ALL@1", "p_raw", "ETH_P_IP@*", "p_dgr",
    )
    route = parsed("basic", "netlink").socket_records()[0]
    assert (str(route.local), route.netid) == ("rtnl:4838", "nl")


# --- hand-made edge cases -------------------------------------------------------------------


@little_endian_capture
def test_odd_tcp6_wildcard_time_wait_and_skips():
    collected = parsed("odd", "tcp6")
    loopback = v6("::1", 22)
    assert list(collected.socket_records()) == [
        record(TCP6, 9001, S, 6, State.LISTEN, v6("::", 22), ANY6),
        record(TCP6, 9002, S, 6, State.ESTABLISHED, loopback, v6("::1", 0xD431), rx=0x20, tx=0x10, uid=1000),
        record(TCP6, 0, S, 6, State.TIME_WAIT, loopback, v6("::1", 0xD432)),
        record(TCP6, 0, S, 6, State.TIME_WAIT, loopback, v6("::1", 0xD433)),
    ]
    assert collected.socket_records()[0].local.is_wildcard and collected.socket_records()[0].remote.is_wildcard
    skipped = collected.skipped
    assert len(skipped) == 4
    assert skipped[0].startswith("net/tcp6:6: bad hex in address b'0000000000000000000000000100000G:0016'")
    assert skipped[1] == "net/tcp6:7: unknown state 0x1F"
    assert skipped[2].startswith("net/tcp6:8: bad address b'0100007F:0016', expected 32 hex digits")
    assert skipped[3] == "net/tcp6:9: 3 fields, expected at least 10"


@little_endian_capture
def test_odd_tcp_time_wait_rows_are_kept_and_a_cut_line_is_skipped():
    collected = parsed("odd", "tcp")
    assert [(r.inode, r.state, r.remote.port) for r in collected.socket_records()] == [
        (9011, State.LISTEN, 0),
        (0, State.TIME_WAIT, 0xC001),
        (0, State.TIME_WAIT, 0xC002),
    ]
    assert collected.skipped == ("net/tcp:5: 8 fields, expected at least 10",)


@pytest.mark.parametrize("name", ["udp", "raw"])
def test_header_only_and_empty_files_have_no_records(name):
    assert parsed("odd", name).socket_records() == () and parsed("odd", name).skipped == ()


@pytest.mark.parametrize("kind", BUILTIN_KINDS, ids=lambda k: k.name)
def test_empty_data_gives_nothing_for_every_kind(kind):
    collected = procnet.parse(kind, b"", source="net/" + kind.name)
    assert (collected.socket_records(), collected.skipped) == ((), ())


SPACED = b"/run/with space.sock"
ODD_UNIX = [
    unix(9101, S, State.LISTEN, SPACED),
    unix(9102, D, State.CLOSE, b" leading  spaces "),
    unix(9103, D, State.CLOSE, b"\0abstract@with@nuls"),
    unix(9104, D, State.CLOSE, b"/tmp/new\nline.sock"),
    unix(9105, S, State.ESTABLISHED, b""),
    unix(123456, Q, State.LISTEN, b"\0"),
    unix(0, S, State.ESTABLISHED, SPACED),  # St 02: an embryo in the accept queue, no inode yet
    unix(9108, S, State.CLOSE, b""),  # St 04: disconnecting, no file any more
    unix(9111, D, State.CLOSE, b"/tmp/two\n\nnewlines \xff"),
    unix(9112, D, State.CLOSE, b"/tmp/ends-with-newline\n"),
]


def test_odd_unix_names_states_and_continuations():
    collected = parsed("odd", "unix")
    assert list(collected.socket_records()) == ODD_UNIX
    assert collected.skipped == (
        "net/unix:8: not a unix socket line",
        "net/unix:9: not a unix socket line",
        "net/unix:13: unknown unix socket state St 05",
        "net/unix:14: unknown socket type 0009",
    )
    names = [r.local.display for r in collected.socket_records()]
    assert names[2] == "@abstract@with@nuls" and names[3] == "/tmp/new\\nline.sock"
    assert names[8] == "/tmp/two\\n\\nnewlines \\xff"


def test_unix_path_is_raw_bytes_after_the_single_space():
    header = b"Num       RefCount Protocol Flags    Type St Inode Path\n"
    row = b"0000000000000000: 00000002 00000000 00000000 0001 01 %5d %s\n"
    data = header + row % (7, b"  two leading") + row % (1234567, b"tab\there \xfe\xff ")
    names = [r.local.name for r in procnet.parse_unix(data, source="u").socket_records()]
    assert names == [b"  two leading", b"tab\there \xfe\xff "]


def test_odd_packet_and_netlink():
    packet = parsed("odd", "packet")
    assert list(packet.socket_records()) == [
        record(PACKET, 9201, R, 0x0003, State.CLOSE, PacketAddress(2, 0x0003), None, interface=2, rx=None, tx=None),
        record(PACKET, 9203, D, 0x88CC, State.CLOSE, PacketAddress(0, 0x88CC), None, uid=1000, interface=0,
               rx=None, tx=None),
    ]
    assert packet.skipped == ("net/packet:3: b'zz03' is not a hex number",)
    netlink = parsed("odd", "netlink")
    assert list(netlink.socket_records()) == [
        record(NETLINK, 9301, R, 0, State.CLOSE, NetlinkAddress(0, 4294964001, 0xFFFFFFFF), None, uid=None,
               rx=None, tx=None)
    ]
    assert netlink.skipped == ("net/netlink:3: 9 fields, expected at least 10",)


# --- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, data",
    [
        (TCP, table("basic", "unix")),  # another table altogether
        (TCP, table("basic", "tcp6")),  # the IPv6 table read as IPv4
        (UDP6, table("basic", "udp")),  # and the reverse
        (UNIX, table("basic", "packet")),
        (PACKET, table("basic", "netlink")),
        (NETLINK, table("basic", "tcp")),
        (UNIX, b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe\n\x00\x00"),  # binary junk
        (RAW, b"\n" + table("basic", "raw")),  # the header is not on line 1
    ],
)
def test_a_file_that_is_not_the_table_raises_parse_error(kind, data):
    with pytest.raises(ParseError) as caught:
        procnet.parse(kind, data, source="net/" + kind.name)
    assert (caught.value.source, caught.value.line) == ("net/" + kind.name, 1)
    assert caught.value.reason == "not a /proc/net/%s table (header does not match)" % kind.name


def test_unknown_kind_is_a_value_error():
    with pytest.raises(ValueError):
        procnet.parse(SocketKind("vsock", Family.VSOCK, "vsock"), b"", source="net/vsock")


# --- byte order -----------------------------------------------------------------------------


def kernel_hex(packed: bytes) -> bytes:
    """How the kernel prints an address: each 32-bit word as a number in this host's order."""
    words = struct.unpack("=%dI" % (len(packed) // 4), packed)
    return b"".join(b"%08X" % word for word in words)


@pytest.mark.parametrize("family, host", [
    (socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "10.1.2.3"),
    (socket.AF_INET6, "::1"), (socket.AF_INET6, "::ffff:127.0.0.1"),
    (socket.AF_INET6, "2001:db8::8:800:200c:417a"),
])
def test_decode_address_reads_host_order_words(family, host):
    packed = socket.inet_pton(family, host)
    assert procnet.decode_address(kernel_hex(packed)) == packed


@little_endian_capture
@pytest.mark.parametrize("digits, host", [
    (b"0100007F", "127.0.0.1"),
    (b"00000000000000000000000001000000", "::1"),
    (b"0000000000000000FFFF00000100007F", "::ffff:127.0.0.1"),
])
def test_decode_address_on_little_endian(digits, host):
    address = InetAddress(*procnet.decode_endpoint(digits + b":0016", len(digits)))
    assert (address.host, address.port) == (host, 22)


@pytest.mark.parametrize("digits", [b"", b"0100007", b"0100007F00", b"0100007G", b"0" * 31])
def test_decode_address_rejects_bad_digits(digits):
    with pytest.raises(ValueError):
        procnet.decode_address(digits)


def test_inet_row_in_native_order_round_trips():
    """One row written the way this host's kernel would, in either byte order."""
    header = table("basic", "tcp6").split(b"\n")[0]
    local = socket.inet_pton(socket.AF_INET6, "fe80::1:2:3:4")
    row = b"   0: %s:1F90 %s:0000 0A 00000003:00000004 00:00000000 00000000   42        0 5\n" % (
        kernel_hex(local), kernel_hex(bytes(16)),
    )
    (got,) = procnet.parse_inet(TCP6, header + b"\n" + row, source="t").socket_records()
    assert got == record(TCP6, 5, S, 6, State.LISTEN, InetAddress(local, 8080), ANY6, rx=4, uid=42)


# --- the inode filter -----------------------------------------------------------------------


def test_inodes_filter_keeps_only_those_rows():
    assert [r.inode for r in parsed("basic", "tcp", frozenset({7760})).socket_records()] == [7760]
    assert [r.state for r in parsed("basic", "tcp", frozenset({0})).socket_records()] == [State.TIME_WAIT]
    assert parsed("basic", "tcp", frozenset()).socket_records() == ()
    assert [r.inode for r in parsed("basic", "netlink", frozenset({7783, 1})).socket_records()] == [7783]
    assert [r.inode for r in parsed("basic", "packet", frozenset({7781})).socket_records()] == [7781]


def test_inodes_filter_drops_rows_before_decoding_them():
    """Rows with bad hex or an unknown state whose inode is not wanted are never decoded."""
    collected = parsed("odd", "tcp6", frozenset({9002}))
    assert [r.inode for r in collected.socket_records()] == [9002]
    # Only the line too short to carry an inode is still reported.
    assert collected.skipped == ("net/tcp6:9: 3 fields, expected at least 10",)


def test_inodes_filter_on_unix_keeps_continuations_with_their_socket():
    wanted = parsed("odd", "unix", frozenset({9104, 9111}))
    assert [r.local.name for r in wanted.socket_records()] == [b"/tmp/new\nline.sock", b"/tmp/two\n\nnewlines \xff"]
    # The continuation lines of sockets left out are not mistaken for bad lines either.
    assert wanted.skipped == ("net/unix:8: not a unix socket line", "net/unix:9: not a unix socket line")
    assert [r.local.name for r in parsed("odd", "unix", frozenset({0})).socket_records()] == [SPACED]


def test_numbers_the_kernel_never_prints_are_skipped_not_read():
    # int() would take these (a sign, an underscore, a 0x prefix, a 5-digit port); the kernel
    # never prints them, so a line holding one is damaged, not a socket with odd numbers.
    header = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    row = b"   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %s\n"
    for inode in (b"-1", b"+7", b"1_000"):
        collected = procnet.parse(TCP, header + row % inode, source="net/tcp")
        assert collected.socket_records() == () and len(collected.skipped) == 1
    bad_port = header + row.replace(b"0100007F:0016", b"0100007F:10016") % b"5"
    assert procnet.parse(TCP, bad_port, source="net/tcp").socket_records() == ()
    hex_prefix = header + row.replace(b" 0A ", b" 0x0A ") % b"5"
    assert procnet.parse(TCP, hex_prefix, source="net/tcp").socket_records() == ()
    assert len(procnet.parse(TCP, header + row % b"5", source="net/tcp").socket_records()) == 1
