"""Every family the kernel can describe (issue 21): packet_diag and netlink_diag in the netlink
backend, MPTCP and SCTP kinds, and the vsock, XDP, TIPC and SMC plugins (procsock_plugins.netlink.families).

Decoding is tested on replies in tests/fixtures/diag: packet.bin, netlink.bin and mptcp.bin were
captured from this kernel (in a fresh network namespace: a raw packet socket on lo with fanout
group 7 (lb) and a 3-instruction filter, an ARP dgram socket, an LLDP socket with an rx ring; an
audit socket in group 1, a DGRAM rtnl socket in groups 1 and 33 with NETLINK_PKTINFO, a usersock
socket connected to port id 28552; an MPTCP listener on 127.0.0.1:4100); the others are written
from the kernel's structs by tests/fixtures/make_family_fixtures.py (which cites them).
"""

import ctypes
import errno
import json
import os
import socket
import struct
import subprocess
import sys

import pytest

import procsock
from procsock.model import (
    MPTCP, NETLINK, PACKET, SCTP, InetAddress, NetlinkAddress, PacketAddress, SockType, Source, State,
)
from procsock_plugins.netlink.families import smc, tipc, vsock, xdp
from procsock_plugins.netlink import codec
from sockzoo import inode_of, needs_root

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "diag")
LO = socket.inet_aton("127.0.0.1")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def saved(name, details=True):
    """The records of a saved fixture, by inode, and what its runs skipped."""
    runs = codec.decode_saved(fixture(name), source=name, details=details)
    records = {r.inode: r for _, decoded in runs for r in decoded.socket_records()}
    return records, [note for _, decoded in runs for note in decoded.skipped]


def test_packet_diag_reply_decodes_binding_fanout_filter_and_ring():
    records, skipped = saved("packet.bin")
    assert skipped == [] and set(records) == {5731357, 5731361, 5731362}
    raw, arp, lldp = records[5731357], records[5731361], records[5731362]
    assert (raw.kind, raw.type, raw.protocol, raw.state, raw.local, raw.interface, raw.uid) == (
        PACKET, SockType.RAW, 3, State.CLOSE, PacketAddress(1, 3), 1, 0)
    info = raw.extended.packet
    assert (info.fanout_id, info.fanout_type, info.filter_length, info.rx_ring) == (7, 1, 3, None)
    assert (arp.type, str(arp.local), arp.extended.packet.filter_length) == (SockType.DGRAM, "ETH_P_ARP@*", 0)
    ring = lldp.extended.packet.rx_ring
    assert (ring.block_size, ring.block_nr, ring.frame_size, ring.frame_nr) == (4096, 4, 2048, 8)
    assert str(lldp.local) == "ETH_P_LLDP@*" and raw.extended.meminfo is not None


def test_netlink_diag_reply_decodes_groups_flags_and_peer_once_per_socket():
    records, skipped = saved("netlink.bin")
    data = fixture("netlink.bin")
    listed = sum(1 for _ in range(data.count(struct.pack("=I", 5731364))))
    assert skipped == [] and listed >= 2  # the kernel lists a socket with groups twice: kept once
    rtnl, audit, user = records[5731364], records[5731363], records[5731365]
    assert (rtnl.kind, rtnl.type, rtnl.local, str(rtnl.local)) == (
        NETLINK, SockType.DGRAM, NetlinkAddress(0, 28552, 1 | 1 << 32), "rtnl:28552")
    assert (rtnl.extended.netlink.groups, rtnl.extended.netlink.flags) == ((1, 33), 2)  # NDIAG_FLAG_PKTINFO
    assert (str(audit.local), audit.type, audit.extended.netlink.groups) == ("audit:28552", SockType.RAW, (1,))
    assert (user.state, user.remote, str(user.remote)) == (
        State.ESTABLISHED, NetlinkAddress(2, 28552, 0), "usersock:28552")
    kernel = [r for r in records.values() if r.local.portid == 0]
    assert kernel and all(str(r.local).endswith(":kernel") for r in kernel)
    assert len(records) == len({r.inode for r in codec.decode(data).socket_records()})


def test_mptcp_reply_is_mptcp_by_its_saved_sequence_number():
    records, skipped = saved("mptcp.bin")
    (listener,) = records.values()
    assert (listener.kind, listener.protocol, listener.state, listener.local) == (
        MPTCP, 262, State.LISTEN, InetAddress(LO, 4100))


def test_mptcp_request_carries_the_protocol_attribute():
    request = codec.inet_request(MPTCP, 9)
    length, = struct.unpack_from("=I", request)
    assert length == len(request) == 16 + 56 + 8
    assert request[17] == 262 & 0xFF and request[-8:] == struct.pack("=HHI", 8, codec.INET_DIAG_REQ_PROTOCOL, 262)


def test_sctp_reply_from_the_structs():
    records, skipped = saved("sctp.bin")
    assert skipped == []
    assert {i: (r.kind, r.state, str(r.local), str(r.remote)) for i, r in records.items()} == {
        4242: (SCTP, State.LISTEN, "127.0.0.1:5000", "0.0.0.0:*"),
        4243: (SCTP, State.ESTABLISHED, "127.0.0.1:5000", "127.0.0.2:5001"),
    }


def family_rows(module, name):
    decoded = codec.decode(fixture(name), backend=module.PLUGIN.name, message=module.PLUGIN.message, netns=7)
    assert decoded.skipped == () and decoded.done and decoded.errno == 0
    return {row[1]: row for row in decoded.records}


def test_vsock_reply():
    rows = family_rows(vsock, "vsock.bin")
    assert {i: (r[4], str(r[5]), r[6] and str(r[6]), r[14], r[12]) for i, r in rows.items()} == {
        5001: (State.LISTEN, "*:1024", None, 21, 7),
        5002: (State.ESTABLISHED, "3:1024", "2:40000", 22, 7),
    }


def test_xdp_reply():
    (row,) = family_rows(xdp, "xdp.bin").values()
    assert (row[1], row[2], row[5], row[9], row[13], str(row[5])) == (
        6001, SockType.RAW, xdp.XdpAddress(2, 1), 1000, 2, "2:q1")


def test_smc_reply():
    rows = family_rows(smc, "smc.bin")
    assert {i: (r[4], str(r[5]), str(r[6])) for i, r in rows.items()} == {
        7001: (State.ESTABLISHED, "10.0.0.1:7000", "10.0.0.2:40001"),
        7002: (State.CLOSING, "10.0.0.1:7000", "10.0.0.2:40002"),
    }


def test_tipc_reply():
    rows = family_rows(tipc, "tipc.bin")
    rdm, stream = rows[8001], rows[8002]
    assert (rdm[2], rdm[4], rdm[5], rdm[6], rdm[7], rdm[8], rdm[14]) == (
        SockType.RDM, State.CLOSE, tipc.TipcAddress(0x1001001, 3000), None, 5, 0, 0x1234)
    assert (stream[2], stream[4], stream[6]) == (SockType.STREAM, State.ESTABLISHED, tipc.TipcAddress(0x1001002, 4000))


@pytest.mark.parametrize("module,name", [(vsock, "vsock.bin"), (xdp, "xdp.bin"), (smc, "smc.bin"), (tipc, "tipc.bin")])
def test_family_replies_cut_short_are_skipped_not_fatal(module, name):
    data = fixture(name)
    for cut in range(16, len(data), 7):
        decoded = codec.decode(data[:cut], backend=module.PLUGIN.name, message=module.PLUGIN.message)
        assert decoded.skipped or len(decoded.records) <= 2


@pytest.mark.parametrize("module", [vsock, xdp, tipc, smc])
def test_each_family_plugin_answers_or_says_why_not(module):
    """Where the kernel answers, a dump; else (this kernel: ENOENT) unavailable with the module named."""
    reason = module.PLUGIN.procsock_unavailable(Source.live())
    if reason is None:
        module.PLUGIN.procsock_collect(module.PLUGIN.kinds[0], Source.live(), None, False, procsock.model.Netns())
    else:
        assert module.PLUGIN.module in reason and "ENOENT" in reason
    assert "kernel only" in module.PLUGIN.procsock_unavailable(Source.capture("/proc"))


def test_list_backends_lists_every_kind():
    out = subprocess.run([sys.executable, "-m", "procsock", "--list-backends"], capture_output=True, text=True).stdout
    listed = "".join(out)
    for kind in ("packet", "netlink", "mptcp", "mptcp6", "sctp", "sctp6", "vsock", "xdp", "tipc", "smc"):
        assert ("," + kind + "," in listed) or ("[" + kind + "]" in listed) or ("," + kind + "]" in listed) \
            or ("[" + kind + "," in listed), kind


# --- live ---------------------------------------------------------------------------------------

SOL_PACKET, PACKET_FANOUT, SO_ATTACH_FILTER = 263, 18, 26


@needs_root
def test_packet_socket_exact_on_every_path_with_fanout_and_filter():
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)) as sniffer:
        sniffer.bind(("lo", 3))
        group = os.getpid() & 0xFFFF
        sniffer.setsockopt(SOL_PACKET, PACKET_FANOUT, group | 1 << 16)
        code = ctypes.create_string_buffer(struct.pack("HBBI", 6, 0, 0, 0xFFFF) * 2)
        sniffer.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 2, ctypes.addressof(code)))
        inode, lo = inode_of(sniffer), socket.if_nametoindex("lo")
        snap = procsock.snapshot(pid=os.getpid(), details=True)
        (mine,) = [s for s in snap.sockets if s.record.inode == inode]
        one = procsock.describe_fd(os.getpid(), sniffer.fileno(), details=True)
        for found in (mine, one):
            record = found.record
            assert (record.backend, record.local, str(record.local)) == (
                "netlink", PacketAddress(lo, 3), "ETH_P_ALL@%d" % lo)
            info = record.extended.packet
            assert (info.fanout_id, info.fanout_type, info.filter_length) == (group, 1, 2)
        table = subprocess.run([sys.executable, "-m", "procsock", "--packet", "-e", "--pid", str(os.getpid())],
                               capture_output=True, text=True).stdout
        line = next(line for line in table.splitlines() if str(inode) in line)
        assert line.startswith("p_raw") and "ETH_P_ALL@%d" % lo in line
        assert "fanout:(id:%d,type:lb" % group in table and "filter:(2 insns)" in table


def test_netlink_socket_exact_with_every_group():
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as route:
        route.bind((0, 1))
        try:
            route.setsockopt(270, 1, 33)  # NETLINK_ADD_MEMBERSHIP: a group /proc/net/netlink cannot show
        except OSError as exc:
            pytest.skip("cannot join rtnl group 33 here: %s" % exc.strerror)
        one = procsock.describe_fd(os.getpid(), route.fileno(), details=True)
        assert (one.record.backend, one.record.local, str(one.record.local)) == (
            "netlink", NetlinkAddress(0, route.getsockname()[0], 1 | 1 << 32), "rtnl:%d" % route.getsockname()[0])
        assert one.record.extended.netlink.groups == (1, 33)
        out = subprocess.run([sys.executable, "-m", "procsock", "--netlink", "-e", "--json", "--pid", str(os.getpid())],
                             capture_output=True, text=True).stdout
        (entry,) = [s for s in json.loads(out)["sockets"] if s["inode"] == inode_of(route)]
        assert entry["netid"] == "nl" and entry["extended"]["netlink"]["groups"] == [1, 33]


@pytest.fixture
def mptcp_pair():
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
    except OSError as exc:
        pytest.skip("no MPTCP in this kernel: %s" % exc.strerror)
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262) as client:
            client.connect(listener.getsockname())
            accepted = listener.accept()[0]
            with accepted:
                yield listener, client, accepted


def test_mptcp_sockets_are_mptcp_on_every_path(mptcp_pair):
    inodes = {inode_of(s): s for s in mptcp_pair}
    every = {s.record.inode: s.record.kind for s in procsock.snapshot().sockets if s.record.inode in inodes}
    mine = {s.record.inode: s.record.kind for s in procsock.snapshot(pid=os.getpid()).sockets
            if s.record.inode in inodes}
    described = {i: procsock.describe_fd(os.getpid(), s.fileno()).record.kind for i, s in inodes.items()}
    assert every == mine == described == {i: MPTCP for i in inodes}
    listener = procsock.describe_fd(os.getpid(), mptcp_pair[0].fileno()).record
    assert (listener.state, listener.protocol, listener.backend) == (State.LISTEN, 262, "netlink")
    assert not set(procsock.snapshot().unresolved) & set(inodes)


def test_compare_agrees_on_packet_and_netlink():
    from procsock.api import default_registry
    from procsock.compare import compare_backends
    from procsock.model import Query

    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE) as route:
        route.bind((0, 1))
        try:
            route.setsockopt(270, 1, 33)
        except OSError:
            pass
        result = compare_backends(default_registry(), Source.live(), "netlink", "procnet",
                                  Query(kinds=frozenset({"packet", "netlink"})))
        assert "netlink" in result.kinds and result.unexplained == ()
        explained = {d.field for d in result.differences if d.inode == inode_of(route)}
        assert "type" in explained  # DGRAM: /proc/net/netlink cannot tell


def test_missing_protocol_is_empty_not_a_failure():
    """SCTP absent from this kernel (no sctp_diag, not in /proc/net/protocols): no note, no failure."""
    with open("/proc/net/protocols", "rb") as f:
        if b"\nSCTP " in f.read():
            pytest.skip("this kernel has SCTP loaded")
    snap = procsock.snapshot(kind=["sctp", "sctp6"])
    assert not [n for n in snap.notes if n.kind or n.backend] and set(snap.answered_by.values()) == {"netlink"}
    assert {"sctp", "sctp6"} <= set(snap.answered_by)


def test_sctp_sockets_live():
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)
    except OSError as exc:
        pytest.skip("no SCTP here (module not loaded or not built: %s)" % errno.errorcode.get(exc.errno, exc.errno))
    with sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        record = procsock.describe_fd(os.getpid(), sock.fileno()).record
        assert (record.kind, record.state) == (SCTP, State.LISTEN)


def _listable(family, sock_type, protocol):
    """socket(family, sock_type, protocol), put where the kernel lists it (bound, listening), or None."""
    try:
        sock = socket.socket(family, sock_type, protocol)
    except OSError:
        return None
    try:
        if family == socket.AF_UNIX:
            sock.bind(b"\0procsock-families-%d-%d" % (os.getpid(), sock_type))
        elif family in (socket.AF_INET, socket.AF_INET6) and sock_type != socket.SOCK_RAW:
            sock.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
        elif family == socket.AF_NETLINK:
            sock.bind((0, 0))
        if sock_type in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET) and family in (
                socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
            sock.listen()
    except OSError:
        pass  # held as it is: the snapshot must still resolve it or say why
    return sock


def _readme_kinds_without_backend():
    """Kind names whose row in README's kind table says where none answers (not "never")."""
    with open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("| kind | backends | where none answers |\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[1:]]
    return {name.split()[0] for cells in rows if not cells[2].strip().startswith("never")
            for name in cells[0].split(",") if name.strip()}


@needs_root
def test_every_family_socket_accepts_is_resolved_or_named():
    """One socket of every (family, type) socket() accepts here (plus MPTCP, SCTP, ping, raw ICMP):
    each is resolved, or its kind is in README's kind table with why none answers."""
    from procsock.api import default_registry
    from procsock.fdscan import protocol_name

    shapes = [(f, t, 0) for f in range(1, 46) for t in (1, 2, 3, 5)]
    shapes += [(socket.AF_INET, 1, 262), (socket.AF_INET6, 1, 262), (socket.AF_INET, 1, 132),
               (socket.AF_INET, 2, socket.IPPROTO_ICMP), (socket.AF_INET, 3, socket.IPPROTO_ICMP),
               (socket.AF_INET6, 3, socket.IPPROTO_ICMPV6)]
    opened = [s for s in (_listable(*shape) for shape in shapes) if s is not None]
    try:
        families = {s.family for s in opened}
        assert {socket.AF_UNIX, socket.AF_INET, socket.AF_NETLINK, socket.AF_PACKET} <= families
        snap = procsock.snapshot(pid=os.getpid())
        resolved = {s.record.inode for s in snap.sockets}
        kinds = {name: kind.name for b in default_registry().backends for kind in b.info.kinds
                 for name in kind.kernel_names}
        named = _readme_kinds_without_backend()
        for sock in opened:
            inode = inode_of(sock)
            if inode in resolved:
                continue
            protocol = protocol_name("/proc", os.getpid(), sock.fileno())
            reason = snap.unresolved[inode].reason
            assert kinds.get(protocol) in named and "no backend serves %s" % protocol in reason, (protocol, reason)
    finally:
        for sock in opened:
            sock.close()


def test_saved_replies_read_back_packet_netlink_and_mptcp(tmp_path, mptcp_pair):
    """--save-diag writes packet_diag, netlink_diag and MPTCP replies; --diag-file reads each back."""
    held = list(mptcp_pair)
    held.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))
    held[-1].bind((0, 1))  # RTMGRP_LINK: open to every user
    if os.geteuid() == 0:
        held.append(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
    try:
        saved_file = tmp_path / "replies"
        run = subprocess.run([sys.executable, "-m", "procsock", "save-diag", str(saved_file)], capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stderr
        read = subprocess.run([sys.executable, "-m", "procsock", "--diag-file", str(saved_file), "--proc-root",
                               "/proc", "--json"], capture_output=True, text=True)
        found = {s["inode"]: s for s in json.loads(read.stdout)["sockets"]}
        for sock in held:
            entry = found[inode_of(sock)]
            assert entry["backend"] == "netlink" and [o["pid"] for o in entry["owners"]] == [os.getpid()]
            assert entry["kind"] == {socket.AF_INET: "mptcp", socket.AF_NETLINK: "netlink",
                                     socket.AF_PACKET: "packet"}[sock.family]
    finally:
        for sock in held[3:]:
            sock.close()


def test_proc_net_sctp_tables_parse_one_row_per_socket():
    """tests/fixtures/sctp/net/sctp/{eps,assocs}: rows laid out with net/sctp/proc.c's format strings
    (cited in procsock_plugins.procnet.parse): a one-to-one listener (4242) on two addresses, a
    one-to-many IPv6 listener (4250) with an association, an association (4243) and a bad line."""
    from procsock.model import SCTP6, Netns
    from procsock_plugins import procnet

    source = Source.capture(os.path.join(os.path.dirname(__file__), "fixtures", "sctp"))
    four = procnet.procsock_collect(SCTP, source, None, Netns())
    six = procnet.procsock_collect(SCTP6, source, None, Netns())
    assert {r.inode: (r.type, r.state, str(r.local), str(r.remote), r.rx_queue, r.tx_queue, r.uid)
            for r in four.socket_records()} == {
        4242: (SockType.STREAM, State.LISTEN, "127.0.0.1:5000", "0.0.0.0:*", None, None, 0),
        4243: (SockType.STREAM, State.ESTABLISHED, "127.0.0.1:5000", "127.0.0.2:5001", 2, 7, 0),
    }
    assert {r.inode: (r.type, r.state, str(r.local), r.uid) for r in six.socket_records()} == {
        4250: (SockType.SEQPACKET, State.LISTEN, "[::1]:5100", 1000)}
    assert len(four.skipped) == 1 and "assocs:4: 2 fields" in four.skipped[0]
    assert {r.inode for r in procnet.procsock_collect(SCTP, source, frozenset({4243}), Netns()).socket_records()} \
        == {4243}


def test_no_sctp_in_a_kernel_without_it_is_empty(tmp_path):
    from procsock.model import Netns
    from procsock_plugins import procnet

    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "protocols").write_bytes(b"protocol  size sockets\nTCP 1 2\n")
    assert procnet.procsock_collect(SCTP, Source.capture(str(tmp_path)), None, Netns()).records == ()
    (tmp_path / "net" / "protocols").write_bytes(b"protocol  size sockets\nSCTP 1 2\n")
    with pytest.raises(procsock.BackendUnavailable, match="no net/sctp"):
        procnet.procsock_collect(SCTP, Source.capture(str(tmp_path)), None, Netns())
