"""Pure decoding of sock_diag replies in tests/fixtures/diag.

tcp.bin and unix.bin were captured from a real kernel in a fresh network namespace holding a TCP
listener on 127.0.0.1:4000 (backlog 7) with one connection from port 4001, unix dgram sockets
bound to hostile names, and a socketpair. enoent.bin and error.bin are the kernel's real answers
to a raw_diag dump (not built in) and to an unknown family; truncated.bin and unknown_attr.bin are
tcp.bin cut short and with an attribute of unknown type added.
"""

import errno
import os
import socket
import struct

import pytest

from procsock.model import TCP, TCP6, UNIX, InetAddress, SockType, State, UnixAddress
from procsock_plugins.netlink import codec

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "diag")
LO = bytes([127, 0, 0, 1])


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def summary(records):
    return sorted(
        (r.kind.name, r.inode, r.type, r.state, r.local, r.remote, r.rx_queue, r.tx_queue, r.uid, r.peer_inode)
        for r in records
    )


TCP_EXPECTED = [
    ("tcp", 39337, SockType.STREAM, State.LISTEN, InetAddress(LO, 4000), InetAddress(bytes(4), 0), 0, 7, 0, None),
    ("tcp", 39338, SockType.STREAM, State.ESTABLISHED, InetAddress(LO, 4001), InetAddress(LO, 4000), 0, 0, 0, None),
    ("tcp", 39339, SockType.STREAM, State.ESTABLISHED, InetAddress(LO, 4000), InetAddress(LO, 4001), 0, 0, 0, None),
]


def test_tcp_dump_decodes_exactly():
    decoded = codec.decode(fixture("tcp.bin"), kind=TCP)
    assert (decoded.done, decoded.errno, decoded.interrupted, decoded.skipped) == (True, 0, False, ())
    assert summary(decoded.socket_records()) == TCP_EXPECTED
    assert all(r.cookie and r.interface == 0 and r.protocol == 6 for r in decoded.socket_records())


def test_saved_file_without_kind_is_read_as_ss_does():
    assert summary(codec.decode(fixture("tcp.bin")).socket_records()) == TCP_EXPECTED


def test_unix_dump_keeps_names_byte_exact_and_peers():
    decoded = codec.decode(fixture("unix.bin"))
    by_inode = {r.inode: r for r in decoded.socket_records()}
    assert by_inode[39340].local == UnixAddress(b"/tmp/diag-fixture/new\nline")
    assert by_inode[39341].local == UnixAddress(b"/tmp/diag-fixture/bad\xffbyte")
    assert by_inode[39342].local == UnixAddress(b"/tmp/diag-fixture/with space")
    assert by_inode[39343].local == UnixAddress(b"\0abs\0with\0nuls")
    assert (by_inode[39344].peer_inode, by_inode[39345].peer_inode) == (39345, 39344)
    assert by_inode[39344].local == UnixAddress(b"")
    assert {r.type for r in decoded.socket_records()} == {SockType.STREAM, SockType.DGRAM}
    assert all(r.kind == UNIX and r.uid == 0 and r.remote is None for r in decoded.socket_records())


def test_kernel_errors_are_reported_not_raised():
    enoent = codec.decode(fixture("enoent.bin"), seq=77)
    assert (enoent.socket_records(), enoent.done, enoent.errno) == ((), True, errno.ENOENT)
    invalid = codec.decode(fixture("error.bin"), seq=78)
    assert (invalid.socket_records(), invalid.done, invalid.errno) == ((), True, errno.EINVAL)


def test_truncated_message_is_skipped_and_counted():
    decoded = codec.decode(fixture("truncated.bin"), kind=TCP)
    assert summary(decoded.socket_records()) == [TCP_EXPECTED[0]]
    (reason,) = decoded.skipped
    assert "truncated message" in reason and decoded.done is False


def test_unknown_attribute_is_ignored():
    assert summary(codec.decode(fixture("unknown_attr.bin"), kind=TCP).socket_records()) == TCP_EXPECTED


def test_interrupted_dump_is_flagged():
    data = bytearray(fixture("tcp.bin"))
    flags = struct.unpack_from("=H", data, 6)[0]
    struct.pack_into("=H", data, 6, flags | codec.NLM_F_DUMP_INTR)
    decoded = codec.decode(bytes(data), kind=TCP)
    assert decoded.interrupted and summary(decoded.socket_records()) == TCP_EXPECTED


def test_messages_of_another_request_and_family_mismatch_are_skipped():
    data = fixture("tcp.bin")
    decoded = codec.decode(data, kind=TCP, seq=12345)
    assert decoded.socket_records() == () and len(decoded.skipped) == 4  # three sockets and DONE
    mismatch = codec.decode(data, kind=TCP6)
    assert mismatch.socket_records() == () and len(mismatch.skipped) == 3


@pytest.mark.parametrize("cut", range(0, 120, 7))
def test_any_prefix_decodes_without_raising(cut):
    data = fixture("unix.bin")[:cut] + fixture("tcp.bin")[cut:]
    codec.decode(data)


def test_renumbered_dump_names_its_kind():
    saved = codec.renumber(fixture("tcp.bin"), codec.saved_seq(TCP))
    assert summary(codec.decode(saved).socket_records()) == TCP_EXPECTED
    assert codec.answer_ended(saved, codec.saved_seq(TCP))


def test_tcp_info_is_decoded_by_length():
    full = struct.pack("=8B", 1, 0, 3, 0, 0, 7, 0x9A, 0) + struct.pack("=24I", *range(100, 124))
    info = codec.tcp_info(full + bytes(200))
    assert (info.retransmits, info.snd_wscale, info.rcv_wscale, info.rto, info.rtt) == (3, 0xA, 0x9, 100, 115)
    assert info.snd_wnd == 0
    old = codec.tcp_info(full)  # an older kernel's shorter struct
    assert old.total_retrans == 123 and old.pacing_rate is None and old.snd_wnd is None
    assert codec.tcp_info(b"").rto is None


def test_bytes_that_are_no_netlink_message_are_counted():
    decoded = codec.decode(b"not netlink\n", source="junk")
    assert decoded.socket_records() == () and decoded.skipped == ("junk@0: 12 trailing bytes, too short for a message",)


def answered_as(data: bytes, seq: int, extra_flags: int = 0, port: int = 0) -> bytes:
    """A saved reply re-addressed to request `seq` of port id `port`, with `extra_flags` set on
    every message."""
    out = bytearray(data)
    offset = 0
    while offset < len(out):
        length, _, flags = struct.unpack_from("=IHH", out, offset)
        struct.pack_into("=HII", out, offset + 6, flags | extra_flags, seq, port)
        offset += (length + 3) & ~3
    return bytes(out)


def test_an_interrupted_dump_is_read_again_and_counted(monkeypatch):
    """A kernel that answers the first dump flagged NLM_F_DUMP_INTR and the second one clean: the
    records come from the second, and the retry is counted in the Collected. (The answers are
    served in place of the socket exchange: the kernel flags a dump only when its table changes.)"""
    from procsock_plugins import netlink
    from procsock_plugins.netlink import transport

    answers = [codec.NLM_F_DUMP_INTR, 0]
    seqs = []

    def kernel(sock, request, seq, single=False):
        seqs.append(seq)
        return [answered_as(fixture("tcp.bin"), seq, answers[len(seqs) - 1], sock.getsockname()[0])], {}

    monkeypatch.setattr(transport, "exchange", kernel)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, codec.NETLINK_SOCK_DIAG) as ours:
        ours.bind((0, 0))
        collected, _ = netlink._dump(ours, TCP, False)
    assert collected.retries == 1 and collected.skipped == ()
    assert summary(collected.socket_records()) == TCP_EXPECTED
    assert len(set(seqs)) == 2  # a fresh sequence number for each request


@pytest.mark.parametrize("code", [errno.ENOENT, 0, 4095, -(2 ** 31), 2 ** 31 - 1])
def test_errno_text_takes_any_number_a_reply_carries(code):
    assert codec.errno_text(code)


def test_messages_addressed_to_another_port_id_are_skipped():
    """The kernel addresses every reply to the requester's port id: any other is not ours."""
    data = answered_as(fixture("tcp.bin"), 7, 0, 4242)
    assert summary(codec.decode(data, kind=TCP, seq=7, port=4242).socket_records()) == TCP_EXPECTED
    other = codec.decode(data, kind=TCP, seq=7, port=4343)
    assert other.socket_records() == () and not other.done
    assert all("addressed to port id 4242, not ours" in entry for entry in other.skipped)


def test_saved_runs_name_their_kind_and_namespace():
    """procsock's saved dumps carry their kind in nlmsg_seq and their namespace in nlmsg_pid;
    a file `ss -D` wrote names neither (TCP, no namespace)."""
    saved = codec.renumber(fixture("tcp.bin"), codec.saved_seq(TCP), 111)
    saved += codec.renumber(fixture("unix.bin"), codec.saved_seq(UNIX), 222)
    saved += codec.renumber(fixture("tcp.bin"), codec.saved_seq(TCP), 333)
    runs = codec.decode_saved(saved, source="f")
    assert [(kind, {r.netns for r in d.socket_records()}, {r.kind for r in d.socket_records()})
            for kind, d in runs] == [
        (TCP, {111}, {TCP}), (UNIX, {222}, {UNIX}), (TCP, {333}, {TCP})
    ]
    assert summary(runs[2][1].socket_records()) == TCP_EXPECTED
    ((kind, ss_file),) = codec.decode_saved(fixture("tcp.bin"), source="f")
    saved = ss_file.socket_records()
    assert kind is None and summary(saved) == TCP_EXPECTED and {r.netns for r in saved} == {None}


def test_skip_notes_of_a_saved_file_name_the_kind_they_belong_to(tmp_path):
    import procsock

    unix = bytearray(fixture("unix.bin"))
    unix[16 + 2] = 99  # the first unix message's state: none the kernel has
    path = tmp_path / "saved.diag"
    path.write_bytes(
        codec.renumber(fixture("tcp.bin"), codec.saved_seq(TCP), 111)
        + codec.renumber(bytes(unix), codec.saved_seq(UNIX), 111)
    )
    snap = procsock.snapshot(diag_file=str(path))
    (note,) = [n.text for n in snap.notes
               if n.code == "skipped-entries" and (n.kind, n.backend) == ("unix", "netlink")]
    assert note.startswith("netlink skipped 1 unreadable entries of unix (first: %s@" % path), note
    assert "in unknown state 99" in note or "state 99" in note
    assert {s.record.netns for s in snap.sockets} == {111}
    assert {s.record.netns for s in procsock.snapshot(diag_file=str(path), netns=[111]).sockets} == {111}
    assert procsock.snapshot(diag_file=str(path), netns=[112]).sockets == ()


def test_a_socket_two_namespaces_of_a_saved_file_claim_is_believed_in_neither(tmp_path):
    """With no process holding them to say which namespace they live in, sockets a saved file
    lists in two namespaces are left out, and said so."""
    import procsock

    path = tmp_path / "saved.diag"
    tcp = fixture("tcp.bin")
    path.write_bytes(codec.renumber(tcp, codec.saved_seq(TCP), 111) + codec.renumber(tcp, codec.saved_seq(TCP), 222))
    inodes = {r.inode for r in codec.decode(tcp).socket_records()}
    snap = procsock.snapshot(diag_file=str(path))
    assert not inodes & {s.record.inode for s in snap.sockets}
    assert [n.text for n in snap.notes if n.code == "contested"] == [
        "%d sockets were reported by several network namespaces, none or several of whose processes hold them: "
        "left out (first: inode %d)" % (len(inodes), min(inodes))
    ]
    alone = tmp_path / "alone.diag"
    alone.write_bytes(codec.renumber(tcp, codec.saved_seq(TCP), 111))
    assert {s.record.inode for s in procsock.snapshot(diag_file=str(alone)).sockets} == inodes


def test_a_saved_run_of_a_kind_the_codec_does_not_read_is_skipped_not_taken_for_tcp():
    """A run procsock saved for another backend's kind (its sequence number carries procsock's
    mark but names no kind of ours) is skipped and said, never read as TCP like an `ss -D` file."""
    foreign = codec.renumber(fixture("tcp.bin"), codec.SAVED_MARK | (2 << 8) | 99, 4242)
    runs = codec.decode_saved(codec.renumber(fixture("tcp.bin"), codec.saved_seq(TCP)) + foreign, source="f")
    assert [(kind, len(d.records)) for kind, d in runs] == [(TCP, len(TCP_EXPECTED)), (None, 0)]
    assert "a kind this backend does not read" in runs[1][1].skipped[0]
