"""A socket's details as `ss -oemi` lays them out, for people: times in ms, rates in bps with k/M/G/T,
memory as skmem:(r,rb,t,tb,f,w,o,bl,d), only what the kernel filled (a None field is left out, and
zeros where ss leaves them out). JSON keeps the raw numbers (procsock.render.entry_dict).

Pure functions from a row's values to text; the caller escapes nothing here: every piece is made of
numbers and fixed words, but the congestion algorithm's name (a kernel string) is escaped.
"""

import os
from typing import List, Optional

from procsock.model import Row, State
from procsock.text import escape_text

UNLIMITED = 2 ** 64 - 1  # a pacing rate of ~0: no pacing limit
_INITIAL_RTO = 3000000  # µs: the kernel's rto before any measurement, which ss leaves out


def rate(bits_per_second: float) -> str:
    """A rate as ss prints one: 2.1Gbps, 640kbps, 12bps (three significant digits)."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if bits_per_second >= scale:
            return "%.3g%sbps" % (bits_per_second / scale, unit)
    return "%gbps" % bits_per_second


def milliseconds(microseconds: int) -> str:
    """µs as ss's ms: 204, 0.026."""
    return "%g" % (microseconds / 1000)


def skmem_text(meminfo) -> str:
    """skmem:(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d0), as ss -m."""
    m = meminfo
    return "skmem:(r%d,rb%d,t%d,tb%d,f%d,w%d,o%d,bl%d,d%d)" % (
        m.rmem_alloc, m.rcvbuf, m.wmem_alloc, m.sndbuf, m.fwd_alloc, m.wmem_queued, m.optmem, m.backlog, m.drops)


def tcp_info_parts(info, congestion: Optional[str], state: State) -> List[str]:
    """ss -i's words for a tcp_info, in ss's order."""
    def known(name):  # a field the running kernel filled, and not zero
        return getattr(info, name) or None

    parts = []
    if congestion:
        parts.append(escape_text(congestion))
    if known("snd_wscale") or known("rcv_wscale"):
        parts.append("wscale:%d,%d" % (info.snd_wscale or 0, info.rcv_wscale or 0))
    if known("rto") and info.rto != _INITIAL_RTO:
        parts.append("rto:%s" % milliseconds(info.rto))
    if known("backoff"):
        parts.append("backoff:%d" % info.backoff)
    if known("rtt"):
        parts.append("rtt:%s/%s" % (milliseconds(info.rtt), milliseconds(info.rttvar or 0)))
    if known("ato"):
        parts.append("ato:%s" % milliseconds(info.ato))
    for name, word in (("snd_mss", "mss"), ("pmtu", "pmtu"), ("rcv_mss", "rcvmss"), ("advmss", "advmss"),
                       ("snd_cwnd", "cwnd")):
        if known(name):
            parts.append("%s:%d" % (word, getattr(info, name)))
    if known("snd_ssthresh") and info.snd_ssthresh < 0xFFFF:
        parts.append("ssthresh:%d" % info.snd_ssthresh)
    for name in ("bytes_sent", "bytes_retrans", "bytes_acked", "bytes_received", "segs_out", "segs_in",
                 "data_segs_out", "data_segs_in"):
        if known(name):
            parts.append("%s:%d" % (name, getattr(info, name)))
    if known("rtt") and known("snd_mss") and known("snd_cwnd"):
        parts.append("send %s" % rate(info.snd_cwnd * info.snd_mss * 8000000.0 / info.rtt))
    for name, word in (("last_data_sent", "lastsnd"), ("last_data_recv", "lastrcv"), ("last_ack_recv", "lastack")):
        if known(name):
            parts.append("%s:%d" % (word, getattr(info, name)))
    if known("pacing_rate"):
        pacing = "unlimited" if info.pacing_rate == UNLIMITED else rate(info.pacing_rate * 8.0)
        if known("max_pacing_rate") and info.max_pacing_rate != UNLIMITED:
            pacing += "/" + rate(info.max_pacing_rate * 8.0)
        parts.append("pacing_rate " + pacing)
    if known("delivery_rate"):
        parts.append("delivery_rate %s" % rate(info.delivery_rate * 8.0))
    for name in ("delivered", "delivered_ce"):
        if known(name):
            parts.append("%s:%d" % (name, getattr(info, name)))
    if known("busy_time"):
        parts.append("busy:%dms" % (info.busy_time // 1000))
        for name in ("rwnd_limited", "sndbuf_limited"):
            if known(name):
                parts.append("%s:%dms(%.1f%%)" % (name, getattr(info, name) // 1000,
                                                  100.0 * getattr(info, name) / info.busy_time))
    if known("unacked"):
        parts.append("unacked:%d" % info.unacked)
    if known("retrans") or known("total_retrans"):
        parts.append("retrans:%d/%d" % (info.retrans or 0, info.total_retrans or 0))
    if known("lost"):
        parts.append("lost:%d" % info.lost)
    if known("sacked") and state is not State.LISTEN:
        parts.append("sacked:%d" % info.sacked)
    if known("dsack_dups"):
        parts.append("dsack_dups:%d" % info.dsack_dups)
    if info.reordering is not None and info.reordering != 3:
        parts.append("reordering:%d" % info.reordering)
    if known("reord_seen"):
        parts.append("reord_seen:%d" % info.reord_seen)
    if known("rcv_rtt"):
        parts.append("rcv_rtt:%s" % milliseconds(info.rcv_rtt))
    for name in ("rcv_space", "rcv_ssthresh"):
        if known(name):
            parts.append("%s:%d" % (name, getattr(info, name)))
    if known("notsent_bytes"):
        parts.append("notsent:%d" % info.notsent_bytes)
    if known("min_rtt") and info.min_rtt != 0xFFFFFFFF:
        parts.append("minrtt:%s" % milliseconds(info.min_rtt))
    for name in ("rcv_ooopack", "snd_wnd"):
        if known(name):
            parts.append("%s:%d" % (name, getattr(info, name)))
    return parts


TIMER_NAMES = ("off", "on", "keepalive", "timewait", "persist")


def timer_text(timer: int, expires_ms: int, retrans: int) -> str:
    """timer:(keepalive,1min,0), as ss -o: the timer's name, when it fires, retransmits so far."""
    name = TIMER_NAMES[timer] if timer < len(TIMER_NAMES) else "unknown"
    return "timer:(%s,%s,%d)" % (name, when(expires_ms), retrans)


def when(ms: int) -> str:
    """A timer's time left as ss prints it: 1min, 12sec, 1.500sec, 200ms (coarser as it grows)."""
    minutes, secs, ms = ms // 60000, ms // 1000 % 60, ms % 1000
    text = ""
    if minutes:
        ms, text = 0, "%dmin" % minutes
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            ms = 0
        text += "%d%s" % (secs, "." if ms else "sec")
    if ms:
        text += "%03d%s" % (ms, "sec" if secs else "ms")
    return text


def shutdown_arrow(mask: int) -> str:
    """ss's shutdown mark: <-> open both ways, --> read side shut, <-- write side shut, --- both."""
    return "%s-%s" % ("-" if mask & 1 else "<", "-" if mask & 2 else ">")


def details_text(row: tuple) -> str:
    """The indented line under a socket: ss -o's timer, ss -e's words (uid, sk cookie, fwmark, cgroup, shutdown,
    a unix socket's file ino/dev and pending connections), then -m's skmem, then -i's tcp_info."""
    parts = []
    if row[Row.UID] is not None:
        parts.append("uid:%d" % row[Row.UID])
    if row[Row.COOKIE] is not None:
        parts.append("sk:%x" % row[Row.COOKIE])
    ext = row[Row.EXTENDED]
    if ext is None:
        return " ".join(parts)
    if ext.timer is not None and ext.timer[0]:
        parts.insert(0, timer_text(*ext.timer))
    if ext.mark:
        parts.append("fwmark:0x%x" % ext.mark)
    if ext.cgroup_id:
        parts.append("cgroup_id:%d" % ext.cgroup_id)  # ss prints the path; owner context names it
    if ext.vfs_inode:
        parts.append("ino:%d dev:%d/%d" % (ext.vfs_inode, os.major(ext.vfs_dev or 0), os.minor(ext.vfs_dev or 0)))
    if ext.pending:
        parts.append("pending:%s" % ",".join(map(str, ext.pending)))
    if ext.shutdown is not None:
        parts.append(shutdown_arrow(ext.shutdown))
    if ext.meminfo is not None:
        parts.append(skmem_text(ext.meminfo))
    if ext.tcp_info is not None:
        parts.extend(tcp_info_parts(ext.tcp_info, ext.congestion, row[Row.STATE]))
    elif ext.congestion:
        parts.append(escape_text(ext.congestion))
    for family_info in (ext.packet, ext.netlink):
        if family_info is not None:
            parts.extend(family_info.text_parts())
    return " ".join(parts)
