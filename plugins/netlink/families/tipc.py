"""AF_TIPC sockets through TIPC's sock_diag handler (linux/tipc_sockets_diag.h for the request,
linux/tipc_netlink.h for the reply), as `ss --tipc`. This plugin's entry point is `tipc`.

The request is {family, protocol, pad, states}; each reply message is one TIPC_NLA_SOCK nest (no
fixed struct) holding the node address and port reference (the local endpoint), the socket type,
state (TCP numbering), inode, uid and cookie, a TIPC_NLA_SOCK_STAT nest (queues) and, when
connected, a TIPC_NLA_SOCK_CON nest (the peer's node and port).
"""

import struct

import attrs

from procsock.plugin import Family, SocketKind, SockType, State

from procsock_plugins.netlink.families import DiagFamily, known, row
from procsock_plugins.netlink import codec

TIPC = SocketKind("tipc", Family.TIPC, "tipc", ("TIPC",))
TIPC_NLA_SOCK = 2
SOCK_ADDR, SOCK_REF, SOCK_CON, SOCK_STAT, SOCK_TYPE, SOCK_INO, SOCK_UID, SOCK_STATE, SOCK_COOKIE = (
    1, 2, 3, 5, 6, 7, 8, 9, 10)
CON_NODE, CON_SOCK = 2, 3
STAT_RCVQ, STAT_SENDQ = 1, 2
_REQ = struct.Struct("=BBHI")
_U32, _U64 = struct.Struct("=I"), struct.Struct("=Q")
_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


@attrs.frozen
class TipcAddress:
    """A TIPC socket's identity: node address and port reference."""

    node: int
    ref: int

    def __str__(self) -> str:
        return "%d:%d" % (self.node, self.ref)

    def as_dict(self) -> dict:
        return {"node": self.node, "ref": self.ref}


def request(kind: SocketKind, seq: int, details: bool) -> bytes:
    return codec.dump_request(seq, _REQ.pack(int(Family.TIPC), 0, 0, codec.ALL_STATES))


def _nest(data: bytes, start: int, end: int, where, skipped) -> dict:
    return {kind & _TYPE_MASK: value for kind, value in codec.attributes_of(data, start, end, where, skipped).items()}


def _number(attributes: dict, kind: int, unpacker=_U32):
    value = attributes.get(kind)
    return unpacker.unpack_from(value)[0] if value is not None and len(value) >= unpacker.size else None


def message(data, start, end, where, skipped, backend, details, netns):
    """One TIPC_NLA_SOCK nest as a row; a message without address, inode, type or state is skipped."""
    top = codec.attributes_of(data, start, end, where, skipped)
    nest = next((value for kind, value in top.items() if kind & _TYPE_MASK == TIPC_NLA_SOCK), None)
    sock = {} if nest is None else _nest(nest, 0, len(nest), where, skipped)
    fields = [_number(sock, kind) for kind in (SOCK_ADDR, SOCK_REF, SOCK_INO, SOCK_TYPE, SOCK_STATE)]
    if None in fields:
        skipped.append("%s@%d: tipc message without its socket's address, inode, type or state" % where)
        return None
    node, ref, inode, type_, state = fields
    sock_type = known(SockType, type_, "type", inode, where, skipped)
    known_state = known(State, state, "state", inode, where, skipped) if sock_type is not None else None
    if known_state is None:
        return None
    stat = _nest(sock[SOCK_STAT], 0, len(sock[SOCK_STAT]), where, skipped) if SOCK_STAT in sock else {}
    con = _nest(sock[SOCK_CON], 0, len(sock[SOCK_CON]), where, skipped) if SOCK_CON in sock else {}
    peer = (_number(con, CON_NODE), _number(con, CON_SOCK))
    return row(TIPC, inode, sock_type, 0, known_state, TipcAddress(node, ref),
               None if None in peer else TipcAddress(*peer), _number(sock, SOCK_UID), backend, netns,
               _number(sock, SOCK_COOKIE, _U64), rx_queue=_number(stat, STAT_RCVQ), tx_queue=_number(stat, STAT_SENDQ))


PLUGIN = DiagFamily("tipc", (TIPC,), request, message, "tipc_diag",
                    "AF_TIPC sockets through sock_diag (tipc_diag module)")
