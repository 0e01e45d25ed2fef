"""The model's detail classes: what a backend gives only when details are asked for (`procsock
-i/-e/-m`, `snapshot(details=True)`).

They live apart from `procsock.model` because creating them (TcpInfo alone has 49 fields) is a
good part of the model's import cost, and most runs never need them: `procsock.model` and
`procsock.plugin` hand them out on first use (module ``__getattr__``). They still say they are
`procsock.model`'s, so pickles name them as before and load with any version.
"""

from typing import Optional, Tuple

import attrs

__all__ = ["Extended", "MemInfo", "NetlinkInfo", "PacketInfo", "PacketRing", "TcpInfo"]


@attrs.frozen
class TcpInfo:
    """The kernel's struct tcp_info, as far as the running kernel fills it (the struct grows with
    kernel versions; fields it does not have are None). Times in microseconds (rto, rtt...) or
    milliseconds (last_*), as the kernel reports them.
    """

    retransmits: Optional[int] = None
    probes: Optional[int] = None
    backoff: Optional[int] = None
    snd_wscale: Optional[int] = None
    rcv_wscale: Optional[int] = None
    rto: Optional[int] = None
    ato: Optional[int] = None
    snd_mss: Optional[int] = None
    rcv_mss: Optional[int] = None
    unacked: Optional[int] = None
    sacked: Optional[int] = None
    lost: Optional[int] = None
    retrans: Optional[int] = None
    last_data_sent: Optional[int] = None
    last_data_recv: Optional[int] = None
    last_ack_recv: Optional[int] = None
    pmtu: Optional[int] = None
    rcv_ssthresh: Optional[int] = None
    rtt: Optional[int] = None
    rttvar: Optional[int] = None
    snd_ssthresh: Optional[int] = None
    snd_cwnd: Optional[int] = None
    advmss: Optional[int] = None
    reordering: Optional[int] = None
    rcv_rtt: Optional[int] = None
    rcv_space: Optional[int] = None
    total_retrans: Optional[int] = None
    pacing_rate: Optional[int] = None
    max_pacing_rate: Optional[int] = None
    bytes_acked: Optional[int] = None
    bytes_received: Optional[int] = None
    segs_out: Optional[int] = None
    segs_in: Optional[int] = None
    notsent_bytes: Optional[int] = None
    min_rtt: Optional[int] = None
    data_segs_in: Optional[int] = None
    data_segs_out: Optional[int] = None
    delivery_rate: Optional[int] = None
    busy_time: Optional[int] = None
    rwnd_limited: Optional[int] = None
    sndbuf_limited: Optional[int] = None
    delivered: Optional[int] = None
    delivered_ce: Optional[int] = None
    bytes_sent: Optional[int] = None
    bytes_retrans: Optional[int] = None
    dsack_dups: Optional[int] = None
    reord_seen: Optional[int] = None
    rcv_ooopack: Optional[int] = None
    snd_wnd: Optional[int] = None

    def as_dict(self) -> dict:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


@attrs.frozen
class MemInfo:
    """Socket memory (SK_MEMINFO_*, bytes): what `ss -m` shows as skmem."""

    rmem_alloc: int = 0
    rcvbuf: int = 0
    wmem_alloc: int = 0
    sndbuf: int = 0
    fwd_alloc: int = 0
    wmem_queued: int = 0
    optmem: int = 0
    backlog: int = 0
    drops: int = 0

    def as_dict(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class PacketRing:
    """An AF_PACKET mmap ring (struct packet_diag_ring): what `ss -0 -e` shows as ring."""

    block_size: int
    block_nr: int
    frame_size: int
    frame_nr: int
    retire_tmo: int
    sizeof_priv: int
    features: int

    def as_dict(self) -> dict:
        return attrs.asdict(self)


@attrs.frozen
class PacketInfo:
    """What packet_diag says of a packet socket beyond its binding: TPACKET `version`, `flags`
    (PDI_*: running, auxdata, origdev, vnet_hdr, loss), the fanout group (`fanout_id`,
    `fanout_type` PACKET_FANOUT_*, `fanout_flags`; None when in none), the mmap rings, and the
    classic BPF filter attached (`filter_length` instructions; 0: none). Who sniffs what."""

    version: Optional[int] = None
    flags: Optional[int] = None
    fanout_id: Optional[int] = None
    fanout_type: Optional[int] = None
    fanout_flags: Optional[int] = None
    rx_ring: Optional[PacketRing] = None
    tx_ring: Optional[PacketRing] = None
    filter_length: Optional[int] = None

    def text_parts(self) -> Tuple[str, ...]:
        """`ss -0 -e` style key:value parts for the details line (only what is known)."""
        parts = []
        if self.version is not None:
            parts.append("ver:TPACKET_V%d" % (self.version + 1))
        if self.flags:
            parts.append("flags:%s" % _names(self.flags, _PDI_FLAGS))
        if self.fanout_id is not None:
            kind = _FANOUT_TYPES.get(self.fanout_type, str(self.fanout_type))
            parts.append("fanout:(id:%d,type:%s,flags:0x%x)" % (self.fanout_id, kind, self.fanout_flags or 0))
        for name, ring in (("rx_ring", self.rx_ring), ("tx_ring", self.tx_ring)):
            if ring is not None:
                parts.append("%s:(blk_size:%d,blk_nr:%d,frm_size:%d,frm_nr:%d)" % (
                    name, ring.block_size, ring.block_nr, ring.frame_size, ring.frame_nr))
        if self.filter_length is not None:
            parts.append("filter:%s" % ("(%d insns)" % self.filter_length if self.filter_length else "no"))
        return tuple(parts)

    def as_dict(self) -> dict:
        fields = attrs.asdict(self, recurse=False)
        fields.update(rx_ring=self.rx_ring and self.rx_ring.as_dict(), tx_ring=self.tx_ring and self.tx_ring.as_dict())
        return fields


@attrs.frozen
class NetlinkInfo:
    """What netlink_diag says of a netlink socket beyond its address: every multicast group it
    joined (`groups`, numbers; /proc/net/netlink shows only the first 32) and its NDIAG_FLAG_*
    `flags` (cb running, pktinfo, broadcast error, no ENOBUFS, listen all nsid, cap ack)."""

    groups: Tuple[int, ...] = ()
    flags: Optional[int] = None

    def text_parts(self) -> Tuple[str, ...]:
        """Details-line parts: `groups:1,5` and the flags by name."""
        parts = ["groups:%s" % (",".join(map(str, self.groups)) or "-")]
        if self.flags:
            parts.append("flags:%s" % _names(self.flags, _NDIAG_FLAGS))
        return tuple(parts)

    def as_dict(self) -> dict:
        return {"groups": list(self.groups), "flags": self.flags}


# Flag and type names of linux/packet_diag.h (PDI_*), linux/if_packet.h (PACKET_FANOUT_*) and
# linux/netlink_diag.h (NDIAG_FLAG_*).
_PDI_FLAGS = ("running", "auxdata", "origdev", "vnet_hdr", "loss")
_FANOUT_TYPES = {0: "hash", 1: "lb", 2: "cpu", 3: "rollover", 4: "rnd", 5: "qm", 6: "cbpf", 7: "ebpf"}
_NDIAG_FLAGS = ("cb_running", "pktinfo", "broadcast_error", "no_enobufs", "listen_all_nsid", "cap_ack")


def _names(flags: int, names: Tuple[str, ...]) -> str:
    """A flag mask as names (bit 0 first); unnamed bits in hex."""
    known = [name for bit, name in enumerate(names) if flags >> bit & 1]
    rest = flags & ~((1 << len(names)) - 1)
    return ",".join(known + (["0x%x" % rest] if rest else []))


@attrs.frozen
class Extended:
    """Details a backend gives only when asked (`procsock -i/-e/-m`, `snapshot(details=True)`).

    `shutdown` is the SHUT_* mask (1 read side, 2 write side); `congestion` the TCP congestion
    control algorithm. For unix sockets: `vfs_inode`/`vfs_dev` identify the file a socket is bound
    to (as stat() of the path would), `pending` the inodes of the clients whose connections wait in
    a listener's accept queue (like `ss -x` shows for ICONS). `timer` is an inet socket's pending
    timer as inet_diag gives it (1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 zero window probe; 0 none),
    when it expires (ms from now) and the retransmits so far, as `ss -o` shows it.
    None where the backend or kernel does not say.
    """

    tcp_info: Optional[TcpInfo] = None
    meminfo: Optional[MemInfo] = None
    congestion: Optional[str] = None
    shutdown: Optional[int] = None
    mark: Optional[int] = None
    cgroup_id: Optional[int] = None
    vfs_inode: Optional[int] = None
    vfs_dev: Optional[int] = None
    pending: Optional[Tuple[int, ...]] = None
    packet: Optional[PacketInfo] = None
    netlink: Optional[NetlinkInfo] = None
    timer: Optional[Tuple[int, int, int]] = None  # inet: (idiag_timer, expires in ms, retransmits)

    def as_dict(self) -> dict:
        family = {}  # a family's own details, only where given (the other kinds' JSON is unchanged)
        if self.packet is not None:
            family["packet"] = self.packet.as_dict()
        if self.netlink is not None:
            family["netlink"] = self.netlink.as_dict()
        return {
            "vfs_inode": self.vfs_inode,
            "vfs_dev": self.vfs_dev,
            "pending": None if self.pending is None else list(self.pending),
            "tcp_info": None if self.tcp_info is None else self.tcp_info.as_dict(),
            "meminfo": None if self.meminfo is None else self.meminfo.as_dict(),
            "congestion": self.congestion,
            "shutdown": self.shutdown,
            "mark": self.mark,
            "cgroup_id": self.cgroup_id,
            **family,
            **({} if self.timer is None else {"timer": dict(zip(("timer", "expires_ms", "retrans"), self.timer))}),
        }


for _cls in (TcpInfo, MemInfo, PacketRing, PacketInfo, NetlinkInfo, Extended):
    _cls.__module__ = "procsock.model"  # where they were defined and are still imported from
del _cls
