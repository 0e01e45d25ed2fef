"""AF_SMC sockets (SMC-R/SMC-D: TCP handshake, then RDMA or ISM) through smc_diag
(linux/smc_diag.h), as `ss --smc`. This plugin's entry point is `smc`.

smc_diag_msg: family, state, mode, shutdown, the inet_diag_sockid of its internal TCP (clc)
socket, uid and a 64-bit inode. One dump holds the sockets of SMC and SMC6 alike and the message
does not say which: an address whose last 12 bytes are zero is read as IPv4 (so an IPv6 wildcard
`::` shows as 0.0.0.0). States above LISTEN are SMC's closing phases (SMC_PEERCLOSEWAIT1 = 20 ..
SMC_PROCESSABORT = 27): shown as CLOSING.
"""

import struct

from procsock.plugin import Family, InetAddress, SocketKind, SockType, State

from procsock_plugins.netlink.families import DiagFamily, row, short
from procsock_plugins.netlink import codec

SMC = SocketKind("smc", Family.SMC, "smc", ("SMC", "SMC6"))
_REQ = struct.Struct("=BxxB48x")  # family, pad[2], diag_ext, inet_diag_sockid (all zero: every socket)
_MSG = struct.Struct("=xBxx2s2s16s16s4x8xI4xQ")  # state, sport, dport, src, dst, uid, inode (aligned u64)
_STATES = {int(s): s for s in State}


def request(kind: SocketKind, seq: int, details: bool) -> bytes:
    return codec.dump_request(seq, _REQ.pack(int(Family.SMC), 0))


def _address(packed: bytes, port: bytes) -> InetAddress:
    number = int.from_bytes(port, "big")
    return InetAddress(packed[:4] if not any(packed[4:]) else packed, number)


def message(data, start, end, where, skipped, backend, details, netns):
    """One smc_diag_msg as a row (endpoints: the clc socket's)."""
    if short(data, start, end, _MSG.size, "smc", where, skipped):
        return None
    state, sport, dport, src, dst, uid, inode = _MSG.unpack_from(data, start)
    known_state = _STATES.get(state) or (State.CLOSING if 20 <= state <= 27 else None)
    if known_state is None:
        skipped.append("%s@%d: smc inode %d in unknown state %d" % (where[0], where[1], inode, state))
        return None
    return row(SMC, inode, SockType.STREAM, 0, known_state, _address(src, sport), _address(dst, dport), uid,
               backend, netns, None)


PLUGIN = DiagFamily("smc", (SMC,), request, message, "smc_diag", "AF_SMC sockets through sock_diag (smc_diag module)")
