"""Pure sock_diag codec: request bytes out, reply bytes in, rows (procsock.plugin.Row) out. No I/O.

Layouts follow /usr/include/linux/{netlink,sock_diag,inet_diag,unix_diag,packet_diag,netlink_diag}.h,
native endian except
the ports of an inet sockid (big-endian) and addresses (network-order bytes). Truncated messages,
unknown message types and unknown or short attributes are skipped and counted, never fatal.
"""

import errno as errnos
import functools
import os
import struct
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import attrs

from procsock.plugin import (
    INET_KINDS,
    MPTCP,
    MPTCP6,
    NETLINK,
    PACKET,
    SCTP,
    SCTP6,
    UNIX,
    Family,
    NetlinkAddress,
    SocketKind,
    SocketRecord,
    SockType,
    State,
    record_from_row,
)

if TYPE_CHECKING:  # the detail classes: imported where details are decoded
    from procsock.plugin import Extended, MemInfo, PacketRing, TcpInfo

NLMSG_ERROR = 2
NLMSG_DONE = 3
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NETLINK_SOCK_DIAG = 4
IPPROTO_RAW = 255

INET_DIAG_INFO, INET_DIAG_CONG, INET_DIAG_SKMEMINFO, INET_DIAG_SHUTDOWN = 2, 4, 7, 8
INET_DIAG_PROTOCOL, INET_DIAG_MARK, INET_DIAG_CGROUP_ID = 10, 15, 21
# idiag_ext bits (1 << (attribute - 1)) of the attributes asked for with details.
INET_DETAILS_EXT = sum(
    1 << (a - 1) for a in (INET_DIAG_INFO, INET_DIAG_CONG, INET_DIAG_SKMEMINFO, INET_DIAG_SHUTDOWN)
)
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS, UNIX_DIAG_RQLEN = 0, 1, 2, 3, 4
UNIX_DIAG_MEMINFO, UNIX_DIAG_SHUTDOWN, UNIX_DIAG_UID = 5, 6, 7
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS = 0x1, 0x2, 0x4, 0x8
UDIAG_SHOW_RQLEN, UDIAG_SHOW_MEMINFO, UDIAG_SHOW_UID = 0x10, 0x20, 0x40
UNIX_SHOW = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID
UNIX_SHOW_DETAILS = UNIX_SHOW | UDIAG_SHOW_VFS | UDIAG_SHOW_ICONS | UDIAG_SHOW_MEMINFO
ALL_STATES = 0xFFFFFFFF
INET_DIAG_REQ_PROTOCOL = 3  # a request attribute (u32): the protocol, for those above 255 (MPTCP)
PACKET_DIAG_INFO, PACKET_DIAG_RX_RING, PACKET_DIAG_TX_RING, PACKET_DIAG_FANOUT = 0, 2, 3, 4
PACKET_DIAG_UID, PACKET_DIAG_MEMINFO, PACKET_DIAG_FILTER = 5, 6, 7
PACKET_SHOW_INFO, PACKET_SHOW_RING_CFG, PACKET_SHOW_FANOUT, PACKET_SHOW_MEMINFO = 0x1, 0x4, 0x8, 0x10
PACKET_SHOW_FILTER = 0x20
PACKET_SHOW_DETAILS = PACKET_SHOW_INFO | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT | PACKET_SHOW_MEMINFO \
    | PACKET_SHOW_FILTER
NETLINK_DIAG_MEMINFO, NETLINK_DIAG_GROUPS, NETLINK_DIAG_FLAGS = 0, 1, 4
NDIAG_SHOW_MEMINFO, NDIAG_SHOW_GROUPS, NDIAG_SHOW_FLAGS = 0x1, 0x2, 0x8
NDIAG_PROTO_ALL = 255
NETLINK_CONNECTED = 1
NO_COOKIE = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTATTR = struct.Struct("=HH")  # len, type
_INET_REQ = struct.Struct("=BBBBI4s16s16sIII")  # family, protocol, ext, raw protocol, states, sockid
# inet_diag_msg (72 bytes) without its ports: state, src, dst, interface, cookie[2], rqueue,
# wqueue, uid, inode; one layout per family, so addresses come out at their size.
_INET_MSG = {
    Family.INET: struct.Struct("=xB6x4s12x4s12xIII4xIIII"),
    Family.INET6: struct.Struct("=xB6x16s16sIII4xIIII"),
}
_INET_MSG_SIZE = _INET_MSG[Family.INET].size
_PORTS = struct.Struct(">4xHH")  # sport, dport of the sockid: big-endian
_TIMER = struct.Struct("=2xBB48xI")  # idiag_timer, idiag_retrans, idiag_expires (read for details only)
_UNIX_REQ = struct.Struct("=BBHIIIII")
_UNIX_MSG = struct.Struct("=xBBxIII")  # type, state, inode, cookie[2]: 16 bytes
_ERRNO = struct.Struct("=i")
_U8 = struct.Struct("=B")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_TWO_U32 = struct.Struct("=II")
_MEMINFO = struct.Struct("=9I")
_PACKET_REQ = _NETLINK_REQ = struct.Struct("=BBHIIII")  # family, protocol, pad, ino, show, cookie[2]
_PACKET_MSG = struct.Struct("=xBHIII")  # type, num (ethertype, host order), ino, cookie[2]: 16 bytes
_PACKET_INFO = struct.Struct("=IIIIII")  # index, version, reserve, copy_thresh, tstamp, flags
_PACKET_RING = struct.Struct("=7I")
_NETLINK_MSG = struct.Struct("=xBBBIIIIII")  # type, protocol, state, portid, dst portid, dst group, ino, cookie[2]
_U64_WORDS = struct.Struct("=Q")


def _tcp_info_layout():
    """(field, offset, struct) of struct tcp_info (linux/tcp.h) in order, for the fields we keep."""
    unused = (None, "fackets", "last_ack_sent")  # padding, bit fields read whole, long-dead fields
    sequence = [(None, "B")] * 2 + [("retransmits", "B"), ("probes", "B"), ("backoff", "B"), (None, "B"),
                                    ("wscale", "B"), (None, "B")]
    for code, names in (
        ("I", "rto ato snd_mss rcv_mss unacked sacked lost retrans fackets last_data_sent last_ack_sent "
              "last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd advmss "
              "reordering rcv_rtt rcv_space total_retrans"),
        ("Q", "pacing_rate max_pacing_rate bytes_acked bytes_received"),
        ("I", "segs_out segs_in notsent_bytes min_rtt data_segs_in data_segs_out"),
        ("Q", "delivery_rate busy_time rwnd_limited sndbuf_limited"),
        ("I", "delivered delivered_ce"),
        ("Q", "bytes_sent bytes_retrans"),
        ("I", "dsack_dups reord_seen rcv_ooopack snd_wnd"),
    ):
        sequence += [(name, code) for name in names.split()]
    layout, offset = [], 0
    for name, code in sequence:
        unpacker = struct.Struct("=" + code)
        if name not in unused:
            layout.append((name, offset, unpacker))
        offset += unpacker.size
    return tuple(layout)


_TCP_INFO_LAYOUT = _tcp_info_layout()


def tcp_info(data: bytes) -> "TcpInfo":
    """Decode struct tcp_info by its length: fields past the end (an older kernel) stay None."""
    from procsock.plugin import TcpInfo  # the detail classes load only when details are decoded

    fields = {}
    for name, offset, unpacker in _TCP_INFO_LAYOUT:
        if offset + unpacker.size > len(data):
            break
        value = unpacker.unpack_from(data, offset)[0]
        if name == "wscale":
            fields["snd_wscale"], fields["rcv_wscale"] = value & 0xF, value >> 4
        else:
            fields[name] = value
    return TcpInfo(**fields)


def _pair(data: Optional[bytes]) -> Tuple[Optional[int], Optional[int]]:
    """Two u32 (rqlen, vfs), or (None, None) when the attribute is absent or malformed."""
    return _TWO_U32.unpack(data) if data is not None and len(data) == _TWO_U32.size else (None, None)


def _int(data: Optional[bytes], unpacker: struct.Struct) -> Optional[int]:
    return unpacker.unpack_from(data)[0] if data is not None and len(data) >= unpacker.size else None


def meminfo_of(data: Optional[bytes]) -> Optional["MemInfo"]:
    if data is None or len(data) < _MEMINFO.size:
        return None
    from procsock.plugin import MemInfo

    return MemInfo(*_MEMINFO.unpack_from(data))


def _inet_extended(attributes: Dict[int, bytes], timer: Tuple[int, int, int]) -> "Extended":
    from procsock.plugin import Extended

    info = attributes.get(INET_DIAG_INFO)
    cong = attributes.get(INET_DIAG_CONG)
    return Extended(
        tcp_info=None if info is None else tcp_info(info),
        meminfo=meminfo_of(attributes.get(INET_DIAG_SKMEMINFO)),
        congestion=None if cong is None else cong.split(b"\0", 1)[0].decode("ascii", "replace"),
        shutdown=_int(attributes.get(INET_DIAG_SHUTDOWN), _U8),
        mark=_int(attributes.get(INET_DIAG_MARK), _U32),
        cgroup_id=_int(attributes.get(INET_DIAG_CGROUP_ID), _U64),
        timer=timer,
    )


def _timer(data: bytes, start: int) -> Tuple[int, int, int]:
    """(idiag_timer, idiag_expires, idiag_retrans) of the inet_diag_msg at `start`."""
    timer, retrans, expires = _TIMER.unpack_from(data, start)
    return timer, expires, retrans


def _unix_extended(attributes: Dict[int, bytes]) -> "Extended":
    from procsock.plugin import Extended

    vfs_inode, vfs_dev = _pair(attributes.get(UNIX_DIAG_VFS))
    if vfs_dev is not None:  # the kernel's dev_t (major << 20 | minor) as stat() reports it
        vfs_dev = os.makedev(vfs_dev >> 20, vfs_dev & 0xFFFFF)
    icons = attributes.get(UNIX_DIAG_ICONS)
    return Extended(
        meminfo=meminfo_of(attributes.get(UNIX_DIAG_MEMINFO)),
        shutdown=_int(attributes.get(UNIX_DIAG_SHUTDOWN), _U8),
        vfs_inode=vfs_inode,
        vfs_dev=vfs_dev,
        pending=None if icons is None else struct.unpack("=%dI" % (len(icons) // 4), icons[: len(icons) // 4 * 4]),
    )

# sock_diag protocol numbers and SOCK_* types of the inet kinds.
INET_PROTOCOLS = {"tcp": 6, "udp": 17, "udplite": 136, "raw": IPPROTO_RAW, "mptcp": 262, "sctp": 132}
# SCTP: sctp_diag does not say one-to-one (STREAM) from one-to-many (SEQPACKET); STREAM is shown.
_INET_TYPES = {"tcp": SockType.STREAM, "udp": SockType.DGRAM, "udplite": SockType.DGRAM, "raw": SockType.RAW,
               "mptcp": SockType.STREAM, "sctp": SockType.STREAM}
DIAG_INET_KINDS = INET_KINDS + (MPTCP, MPTCP6, SCTP, SCTP6)
# INET_DIAG_PROTOCOL is a u8: MPTCP's 262 reads as TCP's 6 there, so MPTCP is never inferred from it.
_INET_KIND = {(k.family, INET_PROTOCOLS[k.protocol]): k for k in DIAG_INET_KINDS if k.protocol != "mptcp"}
_STATES = {int(s): s for s in State}
_SOCK_TYPES = {int(t): t for t in SockType}


def saved_seq(kind: SocketKind) -> int:
    """The sequence number procsock's own saved dumps carry, naming the kind they answer.

    Their messages also carry, in nlmsg_pid (the requester's port id: meaningless in a file), the
    inode of the network namespace the dump was read in (0: unknown). `ss` reads neither field.
    """
    protocol = _SAVED_MPTCP if kind.protocol == "mptcp" else INET_PROTOCOLS.get(kind.protocol, 0)
    return SAVED_MARK | (int(kind.family) << 8) | protocol


SAVED_MARK = 0x50530000  # "PS": the high half of every sequence number procsock saves
_SAVED_MPTCP = 0xF6  # MPTCP's protocol (262) does not fit the low byte: 0xF6 (an unassigned IP protocol) names it


_KIND_BY_SAVED_SEQ = {saved_seq(k): k for k in DIAG_INET_KINDS}
_SAVED_KIND = {**_KIND_BY_SAVED_SEQ, **{saved_seq(k): k for k in (UNIX, PACKET, NETLINK)}}


def _message(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload


def inet_request(kind: SocketKind, seq: int, details: bool = False) -> bytes:
    """A dump request for every socket of an inet kind in every state (+ details' attributes)."""
    protocol = INET_PROTOCOLS[kind.protocol]
    raw_protocol = IPPROTO_RAW if protocol == IPPROTO_RAW else 0  # raw_diag: 255 dumps all
    payload = _INET_REQ.pack(
        int(kind.family), protocol & 0xFF, INET_DETAILS_EXT if details else 0, raw_protocol, ALL_STATES,
        bytes(4), bytes(16), bytes(16), 0, NO_COOKIE, NO_COOKIE,
    )
    if protocol > 0xFF:  # the kernel reads the whole number from INET_DIAG_REQ_PROTOCOL (as `ss` sends it)
        payload += _RTATTR.pack(8, INET_DIAG_REQ_PROTOCOL) + _U32.pack(protocol)
    return _message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, payload)


def dump_request(seq: int, payload: bytes) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request carrying a family's own request struct."""
    return _message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, payload)


def packet_request(seq: int, details: bool = False) -> bytes:
    """A dump of every packet socket (packet_diag answers dumps only: an exact lookup is EOPNOTSUPP)."""
    show = PACKET_SHOW_DETAILS if details else PACKET_SHOW_INFO
    return dump_request(seq, _PACKET_REQ.pack(int(Family.PACKET), 0, 0, 0, show, NO_COOKIE, NO_COOKIE))


def netlink_request(seq: int, details: bool = False) -> bytes:
    """A dump of every netlink socket of every protocol (netlink_diag answers dumps only)."""
    show = NDIAG_SHOW_GROUPS | (NDIAG_SHOW_MEMINFO | NDIAG_SHOW_FLAGS if details else 0)
    return dump_request(seq, _NETLINK_REQ.pack(int(Family.NETLINK), NDIAG_PROTO_ALL, 0, 0, show, NO_COOKIE,
                                               NO_COOKIE))


def unix_request(seq: int, inode: int = 0, details: bool = False) -> bytes:
    """A dump of every unix socket, or (inode != 0) an exact lookup of one socket by inode."""
    cookie = NO_COOKIE if inode else 0
    show = UNIX_SHOW_DETAILS if details else UNIX_SHOW
    payload = _UNIX_REQ.pack(int(Family.UNIX), 0, 0, ALL_STATES, inode, show, cookie, cookie)
    flags = NLM_F_REQUEST if inode else NLM_F_REQUEST | NLM_F_DUMP
    return _message(SOCK_DIAG_BY_FAMILY, flags, seq, payload)


def request_for(kind: SocketKind, seq: int, details: bool = False) -> bytes:
    """The dump request of any kind this codec reads."""
    if kind == UNIX:
        return unix_request(seq, details=details)
    if kind == PACKET:
        return packet_request(seq, details)
    if kind == NETLINK:
        return netlink_request(seq, details)
    return inet_request(kind, seq, details)


@attrs.frozen
class Decoded:
    """What a run of netlink messages said: `records` are rows (procsock.plugin.Row).

    `done` is true once NLMSG_DONE or NLMSG_ERROR ended the answer; `errno` is the positive errno
    either carried (0: success); `interrupted` means the kernel flagged the dump NLM_F_DUMP_INTR
    (the table changed while it was read: the caller should dump again).
    """

    records: Tuple[tuple, ...]
    skipped: Tuple[str, ...]
    done: bool
    errno: int
    interrupted: bool

    def socket_records(self) -> Tuple[SocketRecord, ...]:
        """The rows as SocketRecords (for tests and tools; the resolver reads rows)."""
        return tuple(map(record_from_row, self.records))


def _where(source: str, offset: int) -> str:
    """How a skipped-entry note names a message: source@offset (built only when one is skipped)."""
    return "%s@%d" % (source, offset)


def attributes_of(data: bytes, start: int, end: int, where: Tuple[str, int], skipped: List[str]) -> Dict[int, bytes]:
    """The rtattrs between start and end, by type (4-byte aligned walk); a malformed one ends
    the walk and is noted in `skipped` (`where` is (source, offset) of the message)."""
    found = {}
    unpack = _RTATTR.unpack_from
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4 or start + length > end:
            skipped.append("%s: attribute %d with bad length %d" % (_where(*where), kind, length))
            break
        found[kind] = data[start + 4 : start + length]
        start += (length + 3) & ~3
    return found


# One bytes object per address among the recent ones: a dump of 100k sockets repeats a few addresses
# (loopback, the host's own, wildcards) in most of its rows.
_shared_address = functools.lru_cache(maxsize=1024)(bytes)
_UNNAMED = (b"",)  # the local endpoint of every unix socket without a name (most of them): one tuple


def _inet_record(data: bytes, start: int, end: int, kind: Optional[SocketKind], seq: int, where: Tuple[str, int],
                 skipped: List[str], backend: str, details: bool, netns: Optional[int]) -> Optional[tuple]:
    """One inet_diag_msg as a row (procsock.plugin.Row). Its attributes are read only for details,
    or to tell the kind of a message whose request is unknown (a saved file)."""
    family = data[start]
    (state, src, dst, interface, cookie0, cookie1, rqueue, wqueue, uid, inode) = _INET_MSG[family].unpack_from(
        data, start
    )
    attributes = attributes_of(data, start + _INET_MSG_SIZE, end, where, skipped) if details or kind is None else None
    if kind is None:  # procsock's saved dumps name their kind in seq; `ss -D` saves TCP dumps only
        protocol = attributes.get(INET_DIAG_PROTOCOL)
        kind = _KIND_BY_SAVED_SEQ.get(seq) or _INET_KIND.get((family, protocol[0] if protocol else 6))
    if kind is None or kind.family != family:
        skipped.append("%s: inet message of family %d that was not asked for" % (_where(*where), family))
        return None
    known = _STATES.get(state)
    if known is None:
        skipped.append("%s: inode %d in unknown state %d" % (_where(*where), inode, state))
        return None
    if known is State.CLOSE and kind.protocol == "tcp":
        # Only the bound-inactive walk (state bit 13, Linux >= 6.5) finds TCP sockets in CLOSE;
        # the kernel returns them as CLOSE, as `ss -B` shows.
        known = State.BOUND_INACTIVE
    local_port, remote_port = _PORTS.unpack_from(data, start)
    protocol = local_port if kind.protocol == "raw" else INET_PROTOCOLS[kind.protocol]
    return (
        kind, inode, _INET_TYPES[kind.protocol], protocol, known,
        (_shared_address(src), local_port), (_shared_address(dst), remote_port),
        rqueue, wqueue, uid, backend, None, netns, interface, cookie0 | cookie1 << 32,
        _inet_extended(attributes, _timer(data, start)) if details else None,
    )


def _unix_record(data: bytes, start: int, end: int, where: Tuple[str, int], skipped: List[str],
                 backend: str, details: bool, netns: Optional[int]) -> Optional[tuple]:
    """One unix_diag_msg as a row (procsock.plugin.Row)."""
    type_, state, inode, cookie0, cookie1 = _UNIX_MSG.unpack_from(data, start)
    attributes = attributes_of(data, start + _UNIX_MSG.size, end, where, skipped)
    known_type, known_state = _SOCK_TYPES.get(type_), _STATES.get(state)
    if known_type is None or known_state is None:
        skipped.append("%s: unix inode %d of unknown type %d or state %d" % (_where(*where), inode, type_, state))
        return None
    name = attributes.get(UNIX_DIAG_NAME, b"")
    if name[:1] != b"\0" and name.endswith(b"\0"):
        name = name[:-1]  # a filesystem name may carry its terminating NUL; never an abstract one
    rqueue, wqueue = _pair(attributes.get(UNIX_DIAG_RQLEN))
    return (
        UNIX, inode, known_type, 0, known_state, (name,) if name else _UNNAMED, None, rqueue, wqueue,
        _int(attributes.get(UNIX_DIAG_UID), _U32), backend, _int(attributes.get(UNIX_DIAG_PEER), _U32), netns,
        None, cookie0 | cookie1 << 32, _unix_extended(attributes) if details else None,
    )


def _ring(data: Optional[bytes]) -> "Optional[PacketRing]":
    if data is None or len(data) < _PACKET_RING.size:
        return None
    from procsock.plugin import PacketRing

    return PacketRing(*_PACKET_RING.unpack_from(data))


def _packet_extended(attributes: Dict[int, bytes], info: Optional[tuple]) -> "Extended":
    """packet_diag's details: TPACKET version and flags, fanout (id | type << 16 | flags << 24, as
    net/packet/diag.c packs it), rings, the classic BPF filter's length (8 bytes an instruction)."""
    from procsock.plugin import Extended, PacketInfo

    fanout = _int(attributes.get(PACKET_DIAG_FANOUT), _U32)
    code = attributes.get(PACKET_DIAG_FILTER)
    return Extended(
        meminfo=meminfo_of(attributes.get(PACKET_DIAG_MEMINFO)),
        packet=PacketInfo(
            version=None if info is None else info[1],
            flags=None if info is None else info[5],
            fanout_id=None if fanout is None else fanout & 0xFFFF,
            fanout_type=None if fanout is None else fanout >> 16 & 0xFF,
            fanout_flags=None if fanout is None else fanout >> 24,
            rx_ring=_ring(attributes.get(PACKET_DIAG_RX_RING)),
            tx_ring=_ring(attributes.get(PACKET_DIAG_TX_RING)),
            filter_length=len(code) // 8 if code is not None else 0,
        ),
    )


def _packet_record(data: bytes, start: int, end: int, where: Tuple[str, int], skipped: List[str],
                   backend: str, details: bool, netns: Optional[int]) -> Optional[tuple]:
    """One packet_diag_msg as a row: binding (ifindex, ethertype) as /proc/net/packet gives it,
    state CLOSE (a packet socket has none), queues None (the kernel says only memory)."""
    type_, ethertype, inode, cookie0, cookie1 = _PACKET_MSG.unpack_from(data, start)
    attributes = attributes_of(data, start + _PACKET_MSG.size, end, where, skipped)
    known_type = _SOCK_TYPES.get(type_)
    info = attributes.get(PACKET_DIAG_INFO)
    info = _PACKET_INFO.unpack_from(info) if info is not None and len(info) >= _PACKET_INFO.size else None
    if known_type is None or info is None:
        skipped.append("%s: packet inode %d of unknown type %d or without its info" % (_where(*where), inode, type_))
        return None
    ifindex = info[0]
    return (
        PACKET, inode, known_type, ethertype, State.CLOSE, (ifindex, ethertype), None, None, None,
        _int(attributes.get(PACKET_DIAG_UID), _U32), backend, None, netns, ifindex, cookie0 | cookie1 << 32,
        _packet_extended(attributes, info) if details else None,
    )


def _groups(data: Optional[bytes]) -> int:
    """NETLINK_DIAG_GROUPS (an array of unsigned long, bit N-1 for group N) as one bitmap."""
    if not data:
        return 0
    words = len(data) // _U64_WORDS.size
    return sum(word << (64 * i) for i, (word,) in enumerate(_U64_WORDS.iter_unpack(data[: words * 8])))


def _netlink_record(data: bytes, start: int, end: int, where: Tuple[str, int], skipped: List[str],
                    backend: str, details: bool, netns: Optional[int]) -> Optional[tuple]:
    """One netlink_diag_msg as a row: local (protocol, portid, every group joined), remote the
    destination it is connected to (None when unconnected), state ESTABLISHED when connected."""
    (type_, protocol, state, portid, dst_portid, dst_group, inode, cookie0,
     cookie1) = _NETLINK_MSG.unpack_from(data, start)
    attributes = attributes_of(data, start + _NETLINK_MSG.size, end, where, skipped)
    known_type = _SOCK_TYPES.get(type_)
    if known_type is None:
        skipped.append("%s: netlink inode %d of unknown type %d" % (_where(*where), inode, type_))
        return None
    groups = _groups(attributes.get(NETLINK_DIAG_GROUPS))
    remote = None
    if dst_portid or dst_group:
        remote = (protocol, dst_portid, 1 << (dst_group - 1) if dst_group else 0)
    extended = None
    if details:
        from procsock.plugin import Extended, NetlinkInfo

        extended = Extended(
            meminfo=meminfo_of(attributes.get(NETLINK_DIAG_MEMINFO)),
            netlink=NetlinkInfo(groups=NetlinkAddress.group_list(groups),
                                flags=_int(attributes.get(NETLINK_DIAG_FLAGS), _U32)),
        )
    return (
        NETLINK, inode, known_type, protocol, State.ESTABLISHED if state == NETLINK_CONNECTED else State.CLOSE,
        (protocol, portid, groups), remote, None, None, None, backend, None, netns, None, cookie0 | cookie1 << 32,
        extended,
    )


_AF_UNIX, _AF_PACKET, _AF_NETLINK = int(Family.UNIX), int(Family.PACKET), int(Family.NETLINK)
# by name: a SocketKind's attrs hash is Python code, and this is asked of every row
_ONCE_PER_INODE = frozenset(kind.name for kind in (NETLINK, SCTP, SCTP6))
_FAMILY_RECORD = {_AF_UNIX: _unix_record, _AF_PACKET: _packet_record, _AF_NETLINK: _netlink_record}
_PAYLOAD_SIZE = {Family.UNIX: _UNIX_MSG.size, Family.INET: _INET_MSG_SIZE, Family.INET6: _INET_MSG_SIZE,
                 Family.PACKET: _PACKET_MSG.size, Family.NETLINK: _NETLINK_MSG.size}


def decode(data, *, kind: Optional[SocketKind] = None, seq: Optional[int] = None, port: Optional[int] = None,
           source: str = "netlink", backend: str = "netlink", details: bool = False,
           netns: Optional[int] = None, start: int = 0, end: Optional[int] = None,
           message: Optional[Callable[..., Optional[tuple]]] = None,
           memo: Optional[Tuple[Dict[bytes, tuple], Dict[bytes, tuple]]] = None) -> Decoded:
    """Decode back-to-back netlink messages into rows.

    `kind` is the inet kind a live dump asked for (the reply does not say); None infers it per
    message (saved files). `details` fills ``extended`` from the attributes; `netns` is the
    namespace inode stamped on every record. With `seq` (a live answer), messages of other requests are skipped and
    decoding stops at the answer's end; without it (a saved file of several dumps), it reads on.
    With `port` (our port id, live), messages the kernel did not address to it are skipped too.
    `start` and `end` bound the bytes read (offsets in notes stay those of `data`). `message`
    decodes every sock_diag message instead (a family this codec does not know: procsock_plugins.netlink.families),
    called as message(data, start, end, where, skipped, backend, details, netns) -> row or None.
    `memo` (old, new), for repeated live dumps of one `kind`: rows by message payload (the bytes
    after the header, which decode alone, given the other arguments); a payload in `old` is not
    decoded again, and every payload that gave a row without a note goes into `new`.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    records: List[tuple] = []
    skipped: List[str] = []
    done, error, interrupted = False, 0, False
    listed = set()  # inodes decoded so far, of the kinds listed once per inode
    offset, total = start, len(data) if end is None else end
    header, header_size = _NLMSGHDR.unpack_from, _NLMSGHDR.size
    while offset + header_size <= total and not (done and seq is not None):
        length, msg_type, flags, msg_seq, msg_port = header(data, offset)
        end = offset + length
        where = (source, offset)
        if length < header_size or end > total:
            left = total - offset
            skipped.append("%s: truncated message (length %d, %d bytes left)" % (_where(*where), length, left))
            break
        start = offset + header_size
        offset = (end + 3) & ~3
        if seq is not None and msg_seq != seq:
            skipped.append("%s: message of another request (seq %d)" % (_where(*where), msg_seq))
            continue
        if port is not None and msg_port != port:
            skipped.append("%s: message addressed to port id %d, not ours" % (_where(*where), msg_port))
            continue
        if flags & NLM_F_DUMP_INTR:
            interrupted = True
        if msg_type in (NLMSG_DONE, NLMSG_ERROR):
            code = _ERRNO.unpack_from(data, start)[0] if end - start >= 4 else 0
            error = error or abs(code)
            done = True
            continue
        if msg_type != SOCK_DIAG_BY_FAMILY or end == start:
            skipped.append("%s: message of unknown type %d" % (_where(*where), msg_type))
            continue
        if message is not None:
            row = message(data, start, end, where, skipped, backend, details, netns)
            if row is not None:
                records.append(row)
            continue
        record = None
        if memo is not None:
            payload = data[start:end]
            record = memo[0].get(payload)
        if record is None:
            noted = len(skipped)
            family = data[start]
            need = _PAYLOAD_SIZE.get(family)
            if need is None or end - start < need:
                skipped.append("%s: diag message of family %d, %d bytes" % (_where(*where), family, end - start))
                continue
            family_record = _FAMILY_RECORD.get(family)
            if family_record is not None:
                record = family_record(data, start, end, where, skipped, backend, details, netns)
            else:
                record = _inet_record(data, start, end, kind, msg_seq, where, skipped, backend, details, netns)
            if memo is not None and record is not None and len(skipped) == noted:
                memo[1][payload] = record
        else:
            memo[1][payload] = record
        if record is not None and record[0].name in _ONCE_PER_INODE:
            # netlink_diag lists a bound socket that joined groups twice (hash table, then multicast
            # list); sctp_diag lists a socket's endpoint, then each association under its inode:
            # one row per socket, the first
            if record[1] in listed:
                continue
            listed.add(record[1])
        if record is not None:
            records.append(record)
    if 0 < total - offset < header_size:
        skipped.append("%s: %d trailing bytes, too short for a message" % (_where(source, offset), total - offset))
    return Decoded(tuple(records), tuple(skipped), done, error, interrupted)


def decode_saved(data: bytes, *, source: str, backend: str = "netlink",
                 details: bool = False) -> Tuple[Tuple[Optional[SocketKind], Decoded], ...]:
    """A saved file, one (kind, Decoded) per run of messages that share a sequence number and port id.

    procsock's saved dumps name their kind (saved_seq) and namespace (nlmsg_pid); other files
    (`ss -D`: TCP only) have kind None, records of no namespace. What a run skipped is said with
    its kind; bytes after a malformed header belong to the run before them.
    """
    runs: List[Tuple[int, int, int]] = []  # start offset, seq, port
    offset, total = 0, len(data)
    while offset + _NLMSGHDR.size <= total:
        length, _type, _flags, msg_seq, msg_port = _NLMSGHDR.unpack_from(data, offset)
        if not runs or runs[-1][1:] != (msg_seq, msg_port):
            runs.append((offset, msg_seq, msg_port))
        if length < _NLMSGHDR.size:
            break
        offset += (length + 3) & ~3
    if not runs:
        return ((None, decode(data, source=source, backend=backend, details=details)),)
    decoded = []
    for index, (start, msg_seq, msg_port) in enumerate(runs):
        end = runs[index + 1][0] if index + 1 < len(runs) else total
        kind = _SAVED_KIND.get(msg_seq)
        if kind is None and msg_seq & 0xFFFF0000 == SAVED_MARK:  # saved by procsock, of a kind not ours
            note = "%s: messages of a kind this backend does not read (seq 0x%08x): skipped" % (
                _where(source, start), msg_seq)
            decoded.append((None, Decoded((), (note,), False, 0, False)))
            continue
        decoded.append((kind, decode(
            data, kind=kind if kind in DIAG_INET_KINDS else None, source=source, backend=backend,
            details=details, netns=(msg_port or None) if kind is not None else None, start=start, end=end,
        )))
    return tuple(decoded)


def answer_ended(data, seq: int, single: bool = False) -> bool:
    """Whether `data` (one datagram) holds the NLMSG_DONE/NLMSG_ERROR ending answer `seq`.

    A `single` answer (a lookup, not a dump) is one message with no NLMSG_DONE after it. A
    malformed header also ends the reading: decode() then reports it.
    """
    offset, total = 0, len(data)
    while offset + _NLMSGHDR.size <= total:
        length, msg_type, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return True
        if msg_seq == seq and (single or msg_type in (NLMSG_DONE, NLMSG_ERROR)):
            return True
        offset += (length + 3) & ~3
    return False


def renumber(data: bytes, seq: int, port: int = 0) -> bytes:
    """`data` with every message's sequence number set to `seq` and port id to `port` (for saved
    dumps: see saved_seq)."""
    out = bytearray(data)
    offset = 0
    while offset + _NLMSGHDR.size <= len(out):
        length = _U32.unpack_from(out, offset)[0]
        if length < _NLMSGHDR.size:
            break
        _TWO_U32.pack_into(out, offset + 8, seq, port)
        offset += (length + 3) & ~3
    return bytes(out)


def errno_text(code: int) -> str:
    """ENOENT (No such file or directory) style text for an errno (any number a reply carries)."""
    try:
        text = os.strerror(code)
    except (ValueError, OverflowError):
        text = "not an errno"
    return "%s (%s)" % (errnos.errorcode.get(code, "errno %d" % code), text)
