"""AF_XDP sockets through xdp_diag (linux/xdp_diag.h), as `ss --xdp`.

xdp_diag_msg holds type and inode/cookie; XDP_DIAG_INFO the interface and queue the socket is
bound to (its local endpoint, `XdpAddress`), XDP_DIAG_UID its owner's uid, XDP_DIAG_MEMINFO its
memory (details). An XDP socket has no connection state: CLOSE (ss: UNCONN), like packet sockets.
This plugin's entry point is `xdp`.
"""

import struct

import attrs

from procsock.plugin import Family, SocketKind, SockType, State

from procsock_plugins.netlink.families import DiagFamily, known, row, short
from procsock_plugins.netlink import codec

XDP = SocketKind("xdp", Family.XDP, "xdp", ("XDP",))
XDP_DIAG_INFO, XDP_DIAG_UID, XDP_DIAG_MEMINFO = 1, 2, 8
XDP_SHOW_INFO, XDP_SHOW_MEMINFO = 0x1, 0x8
_REQ = struct.Struct("=BBHIIII")  # family, protocol, pad, ino, show, cookie[2]
_MSG = struct.Struct("=xBxxIII")  # type, ino, cookie[2]
_INFO = struct.Struct("=II")  # ifindex, queue_id
_U32 = struct.Struct("=I")


@attrs.frozen
class XdpAddress:
    """Where an XDP socket is bound: interface index (0: not bound) and queue id."""

    ifindex: int
    queue_id: int

    def __str__(self) -> str:
        return "%s:q%d" % (self.ifindex or "*", self.queue_id)

    def as_dict(self) -> dict:
        return {"ifindex": self.ifindex, "queue_id": self.queue_id}


def request(kind: SocketKind, seq: int, details: bool) -> bytes:
    show = XDP_SHOW_INFO | (XDP_SHOW_MEMINFO if details else 0)
    return codec.dump_request(seq, _REQ.pack(int(Family.XDP), 0, 0, 0, show, codec.NO_COOKIE, codec.NO_COOKIE))


def message(data, start, end, where, skipped, backend, details, netns):
    """One xdp_diag_msg as a row (an unbound socket, without XDP_DIAG_INFO, has ifindex 0)."""
    if short(data, start, end, _MSG.size, "xdp", where, skipped):
        return None
    type_, inode, cookie0, cookie1 = _MSG.unpack_from(data, start)
    sock_type = known(SockType, type_, "type", inode, where, skipped)
    if sock_type is None:
        return None
    attributes = codec.attributes_of(data, start + _MSG.size, end, where, skipped)
    info = attributes.get(XDP_DIAG_INFO)
    ifindex, queue_id = _INFO.unpack_from(info) if info is not None and len(info) >= _INFO.size else (0, 0)
    uid = attributes.get(XDP_DIAG_UID)
    extended = None
    if details:
        from procsock.plugin import Extended

        extended = Extended(meminfo=codec.meminfo_of(attributes.get(XDP_DIAG_MEMINFO)))
    return row(XDP, inode, sock_type, 0, State.CLOSE, XdpAddress(ifindex, queue_id), None,
               _U32.unpack_from(uid)[0] if uid is not None and len(uid) >= 4 else None, backend, netns,
               cookie0 | cookie1 << 32, interface=ifindex, extended=extended)


PLUGIN = DiagFamily("xdp", (XDP,), request, message, "xdp_diag", "AF_XDP sockets through sock_diag (xdp_diag module)")
