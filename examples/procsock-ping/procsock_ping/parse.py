"""Pure parsing of /proc/net/icmp and /proc/net/icmp6: the kernel's table of ping sockets.

The rows have the udp layout (``sl local rem st tx:rx tr tm retrnsmt uid timeout inode ...``). The
"port" of a ping socket is its ICMP echo identifier; the remote port is always 0. Addresses are
32-bit words in the kernel's (host) byte order. Unbound ping sockets are not in the table.
"""

import socket
import sys
from typing import FrozenSet, List, Optional

from procsock.plugin import (
    Collected, InetAddress, ParseError, SocketKind, SocketRecord, SockType, State, decimal, hexadecimal,
)

_HEADER = (b"sl", b"local_address")
_PROTOCOL = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}


def _address(text: bytes, family: int) -> InetAddress:
    """`0100007F:0030` → 127.0.0.1 ident 48 (each 8-hex-digit word is one host-order u32)."""
    host, _, port = text.partition(b":")
    if len(host) != (8 if family == socket.AF_INET else 32) or len(port) != 4:
        raise ValueError("bad address %r" % text)
    words = [hexadecimal(host[i:i + 8]) for i in range(0, len(host), 8)]
    packed = b"".join(w.to_bytes(4, sys.byteorder) for w in words)
    return InetAddress(packed, hexadecimal(port))


def _record(fields: List[bytes], kind: SocketKind, family: int, backend: str, netns: Optional[int]) -> SocketRecord:
    tx_queue, _, rx_queue = fields[4].partition(b":")
    return SocketRecord(
        kind=kind,
        inode=decimal(fields[9]),
        type=SockType.DGRAM,
        protocol=_PROTOCOL[family],
        state=State(hexadecimal(fields[3])),
        local=_address(fields[1], family),
        remote=_address(fields[2], family),
        rx_queue=hexadecimal(rx_queue),
        tx_queue=hexadecimal(tx_queue),
        uid=decimal(fields[7]),
        backend=backend,
        netns=netns,
    )


def parse(
    kind: SocketKind,
    data: bytes,
    *,
    source: str,
    backend: str,
    inodes: Optional[FrozenSet[int]] = None,
    netns: Optional[int] = None,
) -> Collected:
    """The records of one icmp/icmp6 table. A wrong header raises ParseError (this is not such a
    table); a row that cannot be read is skipped and listed as ``"source:line: reason"``."""
    family = int(kind.family)
    lines = data.split(b"\n")
    if tuple(lines[0].split()[:2]) != _HEADER:
        raise ParseError(source, 1, "not an icmp socket table (header does not match)")
    records: List[SocketRecord] = []
    skipped: List[str] = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) < 10:
                raise ValueError("%d fields, want at least 10" % len(fields))
            if inodes is not None and decimal(fields[9]) not in inodes:
                continue
            records.append(_record(fields, kind, family, backend, netns))
        except ValueError as exc:
            skipped.append("%s:%d: %s" % (source, number, exc))
    return Collected(tuple(records), tuple(skipped))
