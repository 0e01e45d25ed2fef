"""AF_VSOCK sockets (VM <-> host) through vsock_diag (linux/vm_sockets_diag.h), as `ss --vsock`.

vsock_diag_msg holds type, state (TCP numbering: 10 LISTEN), source and destination (cid, port),
inode and cookie; no uid, queues or details. This plugin's entry point is `vsock`.
"""

import struct

import attrs

from procsock.plugin import Family, SocketKind, SockType, State

from procsock_plugins.netlink.families import DiagFamily, known, row, short
from procsock_plugins.netlink import codec

VSOCK = SocketKind("vsock", Family.VSOCK, "vsock", ("AF_VSOCK",))
ANY = 0xFFFFFFFF  # VMADDR_CID_ANY, VMADDR_PORT_ANY
_REQ = struct.Struct("=BBHIIIII")  # family, protocol, pad, states, ino, show, cookie[2]
_MSG = struct.Struct("=xBBxIIIIIII")  # type, state, src cid, src port, dst cid, dst port, ino, cookie[2]


@attrs.frozen
class VsockAddress:
    """A vsock endpoint: context id (2 the host, 0xFFFFFFFF any) and port."""

    cid: int
    port: int

    def __str__(self) -> str:
        return "%s:%s" % ("*" if self.cid == ANY else self.cid, "*" if self.port == ANY else self.port)

    def as_dict(self) -> dict:
        return {"cid": self.cid, "port": self.port}


def request(kind: SocketKind, seq: int, details: bool) -> bytes:
    return codec.dump_request(seq, _REQ.pack(int(Family.VSOCK), 0, 0, codec.ALL_STATES, 0, 0, 0, 0))


def message(data, start, end, where, skipped, backend, details, netns):
    """One vsock_diag_msg as a row; the remote end None while unconnected (cid and port ANY)."""
    if short(data, start, end, _MSG.size, "vsock", where, skipped):
        return None
    type_, state, src_cid, src_port, dst_cid, dst_port, inode, cookie0, cookie1 = _MSG.unpack_from(data, start)
    sock_type, known_state = known(SockType, type_, "type", inode, where, skipped), None
    if sock_type is not None:
        known_state = known(State, state, "state", inode, where, skipped)
    if known_state is None:
        return None
    remote = None if (dst_cid, dst_port) == (ANY, ANY) else VsockAddress(dst_cid, dst_port)
    return row(VSOCK, inode, sock_type, 0, known_state, VsockAddress(src_cid, src_port), remote, None, backend,
               netns, cookie0 | cookie1 << 32)


PLUGIN = DiagFamily("vsock", (VSOCK,), request, message, "vsock_diag",
                    "AF_VSOCK sockets through sock_diag (vsock_diag module)")
