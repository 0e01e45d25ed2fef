"""Pure parsers for the /proc/net socket tables: the bytes of one file in, `Collected` rows out.

No I/O and no state: the caller reads the file (one read of the whole file) and names it in
`source`, which prefixes every skipped-line note and error. Files are split on b"\\n" only and
fields on ASCII whitespace, never decoded, so names that are not UTF-8 survive.

A file whose first line is not the header of the table it is parsed as raises `ParseError`; inside
a table, a line that cannot be read (too few fields, bad hex, unknown state or type) is skipped and
counted in `Collected.skipped`, never fatal: the kernel's tables change under a reader and a
captured copy may be cut short. An empty file, or one with only its header, has no records.

What the text tables cannot say, and what is reported instead:

* unix: no peer, uid or queues (None). Every NUL of an abstract name is printed as '@',
  so an abstract name read here holds '@' where the real one holds NUL bytes; a name holding a
  newline is split over two lines and rejoined, so a damaged line right after a named row is
  taken as part of its name, and a crafted name can forge a whole row: sock_diag is exact, this
  file is not. A forged row naming the inode of a real socket is caught (two rows disagree about
  one inode: both are left out and reported); one naming an unused inode is not.
* packet: no connection state (CLOSE, which `ss` shows as UNCONN) and no queues: Rmem is the
  memory of the receive queue, not a queue length (0 is reported; `ss` shows Rmem as Recv-Q).
* netlink: no type (RAW; the file cannot tell RAW from DGRAM), no state (CLOSE), no uid (None),
  no queues (0: Rmem/Wmem are memory, as for packet), only the first 32 multicast groups.
"""

import binascii
import re
import socket
import struct
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from procsock.plugin import (
    INET_KINDS,
    NETLINK,
    PACKET,
    UNIX,
    Collected,
    Family,
    ParseError,
    SocketKind,
    SockType,
    State,
)
from procsock.plugin import decimal as _dec, hexadecimal as _hex

Inodes = Optional[FrozenSet[int]]
RowBuilder = Callable[[List[bytes], int], tuple]  # a table line's fields and inode → a row (procsock.plugin.Row)

# The leading header fields of each table (later kernels may append columns; these never moved).
_INET_HEADER_TAIL = (
    b"st", b"tx_queue", b"rx_queue", b"tr", b"tm->when", b"retrnsmt", b"uid", b"timeout", b"inode",
)
_INET_HEADERS = {
    Family.INET: (b"sl", b"local_address", b"rem_address") + _INET_HEADER_TAIL,
    Family.INET6: (b"sl", b"local_address", b"remote_address") + _INET_HEADER_TAIL,
}
_UNIX_HEADER = (b"Num", b"RefCount", b"Protocol", b"Flags", b"Type", b"St", b"Inode", b"Path")
_PACKET_HEADER = (b"sk", b"RefCnt", b"Type", b"Proto", b"Iface", b"R", b"Rmem", b"User", b"Inode")
_NETLINK_HEADER = (
    b"sk", b"Eth", b"Pid", b"Groups", b"Rmem", b"Wmem", b"Dump", b"Locks", b"Drops", b"Inode",
)

# inet rows: "sl: local rem st tx:rx tr:when retrnsmt uid timeout inode ..." (fields 0-9 are read).
_INET_FIELDS = 10
_INET_UID, _INET_INODE = 7, 9
_ADDRESS_DIGITS = {Family.INET: 8, Family.INET6: 32}
# SOCK_* type and IP protocol number per inet protocol; raw rows carry the protocol as their port.
_INET_PROTOCOLS = {
    "tcp": (SockType.STREAM, 6),
    "udp": (SockType.DGRAM, 17),
    "udplite": (SockType.DGRAM, 136),
    "raw": (SockType.RAW, None),
}
# The kernel prints each 32-bit word of an address as a number in host order: read the printed
# digits as big-endian words, write the same words back in native order to get the packed bytes.
_ADDRESS_WORDS = {
    8: (struct.Struct(">I"), struct.Struct("=I")),
    32: (struct.Struct(">4I"), struct.Struct("=4I")),
}
_STATES: Dict[int, State] = {int(state): state for state in State}
_SOCK_TYPES: Dict[int, SockType] = {int(sock_type): sock_type for sock_type in SockType}

# unix rows: "%pK: %08X %08X %08X %04X %02X %5lu" then, for a bound socket, " " and the raw name.
_UNIX_LINE = re.compile(
    rb"[0-9A-Fa-f]+: [0-9A-Fa-f]{8} [0-9A-Fa-f]{8} ([0-9A-Fa-f]{8}) ([0-9A-Fa-f]{4})"
    rb" ([0-9A-Fa-f]{2}) +([0-9]+)(?: (.*))?",
    re.DOTALL,
)
_SO_ACCEPTCON = 0x10000
# The St column is the socket_state the kernel derives from sk_state: SS_UNCONNECTED (1) and
# SS_CONNECTED (3) for sockets with a file, SS_CONNECTING (2, a connected embryo waiting in an
# accept queue) and SS_DISCONNECTING (4) for those without. Listeners are told by __SO_ACCEPTCON.
_UNIX_STATES = {1: State.CLOSE, 2: State.ESTABLISHED, 3: State.ESTABLISHED, 4: State.CLOSE}

# packet rows: "%pK %-6d %-4d %04x %-5d %1d %-6u %-6u %-6lu"; netlink rows:
# "%pK %-3d %-10u %08x %-8d %-8d %-5d %-8d %-8u %-8lu".
_PACKET_FIELDS, _PACKET_INODE = 9, 8
_NETLINK_FIELDS, _NETLINK_INODE = 10, 9


def decode_address(digits: bytes) -> bytes:
    """Packed network-order bytes of an address as /proc/net prints it (8 or 32 hex digits).

    The kernel prints the address as 32-bit words, each a number in host order, so the same
    address reads differently on little- and big-endian hosts (127.0.0.1 is 0100007F on x86).
    """
    words = _ADDRESS_WORDS.get(len(digits))
    if words is None:
        raise ValueError("address %r is not 8 or 32 hex digits" % digits)
    printed, native = words
    return native.pack(*printed.unpack(binascii.unhexlify(digits)))


def decode_endpoint(token: bytes, digits: int) -> Tuple[bytes, int]:
    """The (packed address, port) of a column like b"0100007F:0016" (`digits`: hex digits of the
    address): an InetAddress's fields, the endpoint of a row."""
    address, colon, port = token.partition(b":")
    if not colon or len(address) != digits or len(port) != 4:
        raise ValueError("bad address %r, expected %d hex digits:4 hex digits" % (token, digits))
    try:
        return decode_address(address), _hex(port)
    except ValueError:
        raise ValueError("bad hex in address %r" % token) from None


def parse(
    kind: SocketKind, data: bytes, *, source: str, backend: str = "procnet", inodes: Inodes = None,
    netns: Optional[int] = None,
) -> Collected:
    """Parse the /proc/net table of `kind` (its file is named after `kind.name`).

    `inodes`, when given, keeps only rows with those inodes, dropped before any record is built.
    `netns` is the inode of the network namespace the table shows, stamped on every record.
    Raises ValueError for a kind that has no /proc/net table here.
    """
    if kind in INET_KINDS:
        return parse_inet(kind, data, source=source, backend=backend, inodes=inodes, netns=netns)
    parser = _SINGLE_KIND_PARSERS.get(kind)
    if parser is None:
        raise ValueError("no /proc/net table parser for socket kind %r" % kind.name)
    return parser(data, source=source, backend=backend, inodes=inodes, netns=netns)


def parse_inet(
    kind: SocketKind, data: bytes, *, source: str, backend: str = "procnet", inodes: Inodes = None,
    netns: Optional[int] = None,
) -> Collected:
    """Parse net/{tcp,udp,udplite,raw}[6]: one layout, told apart by `kind`.

    The remote endpoint is always an inet address, the wildcard with port 0 when unconnected. For
    raw sockets the port columns hold the IP protocol number, which also becomes `protocol`.
    """
    sock_type, protocol = _INET_PROTOCOLS[kind.protocol]
    digits = _ADDRESS_DIGITS[kind.family]
    # Endpoints repeat (every unconnected remote, a server's local address): decode each once.
    endpoints: Dict[bytes, Tuple[bytes, int]] = {}

    def endpoint(token: bytes) -> Tuple[bytes, int]:
        address = endpoints.get(token)
        if address is None:
            address = endpoints[token] = decode_endpoint(token, digits)
        return address

    def build(fields: List[bytes], inode: int) -> tuple:
        state = _STATES.get(_hex(fields[3]))
        if state is None:
            raise ValueError("unknown state 0x%s" % fields[3].decode("ascii", "replace"))
        local = endpoint(fields[1])
        tx_queue, _, rx_queue = fields[4].partition(b":")
        # A TCP listener's line has 0 as tx_queue, not its backlog limit (sock_diag's Send-Q): unknown.
        return (
            kind, inode, sock_type, local[1] if protocol is None else protocol, state, local, endpoint(fields[2]),
            _hex(rx_queue), None if state is State.LISTEN and kind.protocol == "tcp" else _hex(tx_queue),
            _dec(fields[_INET_UID]), backend, None, netns, None, None, None,
        )

    lines = _lines(data, source, _INET_HEADERS[kind.family], kind.name)
    return _parse_rows(lines, source, _INET_FIELDS, _INET_INODE, build, inodes)


def parse_packet(
    data: bytes, *, source: str, backend: str = "procnet", inodes: Inodes = None,
    netns: Optional[int] = None,
) -> Collected:
    """Parse net/packet: binding (ifindex, ethertype), type, uid; state CLOSE, queues 0.

    `protocol` is the ethertype the socket was opened or bound with (host order) and `interface`
    the ifindex it is bound to (0 = any), as in its `PacketAddress`.
    """

    def build(fields: List[bytes], inode: int) -> tuple:
        ethertype = _hex(fields[3])
        ifindex = _dec(fields[4])
        return _local_only(
            PACKET, inode, _sock_type(fields[2], 10), ethertype, State.CLOSE,
            (ifindex, ethertype), _dec(fields[7]), backend, netns, interface=ifindex,
        )

    lines = _lines(data, source, _PACKET_HEADER, "packet")
    return _parse_rows(lines, source, _PACKET_FIELDS, _PACKET_INODE, build, inodes)


def parse_netlink(
    data: bytes, *, source: str, backend: str = "procnet", inodes: Inodes = None,
    netns: Optional[int] = None,
) -> Collected:
    """Parse net/netlink: (protocol, portid, groups); type RAW, state CLOSE, uid None, queues 0.

    `protocol` is the netlink protocol (NETLINK_ROUTE = 0, ...); `groups` the first 32 multicast
    groups the socket joined, the only ones the file shows.
    """

    def build(fields: List[bytes], inode: int) -> tuple:
        protocol = _dec(fields[1])
        local = (protocol, _dec(fields[2]), _hex(fields[3]))
        return _local_only(
            NETLINK, inode, SockType.RAW, protocol, State.CLOSE, local, None, backend, netns
        )

    lines = _lines(data, source, _NETLINK_HEADER, "netlink")
    return _parse_rows(lines, source, _NETLINK_FIELDS, _NETLINK_INODE, build, inodes)


def parse_unix(
    data: bytes, *, source: str, backend: str = "procnet", inodes: Inodes = None,
    netns: Optional[int] = None,
) -> Collected:
    """Parse net/unix: type, state and name of each unix socket; no peer, uid or queues.

    The name is every byte after the single space that follows the inode, kept raw (it may start
    with or hold spaces). A leading '@' marks an abstract name, stored as NUL + the rest (the
    kernel printed each NUL of it as '@': lossy). A line that is not a unix row right after a row
    with a name continues that name: the name held a newline.
    """
    lines = _lines(data, source, _UNIX_HEADER, "unix")
    records: List[tuple] = []
    skipped: List[str] = []
    name: List[bytes] = []  # the name of the last row so far, one item per line it spans
    row: Optional[Tuple[int, SockType, State]] = None  # the last row, if it is to be kept

    for number, line in enumerate(lines[1:], 2):
        match = _UNIX_LINE.fullmatch(line)
        if match is None:
            if name and name[0]:
                name.append(line)
            else:
                skipped.append("%s:%d: not a unix socket line" % (source, number))
            continue
        if row is not None:
            records.append(_unix_record(row, name, backend, netns))
        flags, sock_type, st, inode_digits, path = match.groups()
        name = [b"" if path is None else path]
        row = None
        try:
            inode = _dec(inode_digits)
            if inodes is not None and inode not in inodes:
                continue
            row = (inode, _sock_type(sock_type, 16), _unix_state(flags, st))
        except ValueError as exc:
            skipped.append("%s:%d: %s" % (source, number, exc))
    if row is not None:
        records.append(_unix_record(row, name, backend, netns))
    return Collected(_without_forgeries(records, skipped, source), tuple(skipped))


def _without_forgeries(records: List[tuple], skipped: List[str], source: str) -> Tuple[tuple, ...]:
    """The records, less those of any inode listed on rows that disagree: a name holding a newline
    forged one of them, and which one is unknowable (each such inode is reported in `skipped`)."""
    seen: Dict[int, tuple] = {}
    forged = set()
    for record in records:
        inode = record[1]
        if seen.setdefault(inode, record) != record and inode:
            forged.add(inode)
    for inode in sorted(forged):
        skipped.append("%s: socket:[%d] on rows that disagree (a name forging a line?): left out" % (source, inode))
    return tuple(r for r in records if r[1] not in forged)


def _unix_state(flags: bytes, st: bytes) -> State:
    """LISTEN for a socket flagged __SO_ACCEPTCON, else the state its St column stands for."""
    if int(flags, 16) & _SO_ACCEPTCON:
        return State.LISTEN
    state = _UNIX_STATES.get(int(st, 16))
    if state is None:
        raise ValueError("unknown unix socket state St %s" % st.decode("ascii"))
    return state


def _unix_record(
    row: Tuple[int, SockType, State], name: Sequence[bytes], backend: str, netns: Optional[int]
) -> tuple:
    """The row of one unix line, its name rejoined from the lines it spans."""
    inode, sock_type, state = row
    path = b"\n".join(name)
    if path[:1] == b"@":
        path = b"\0" + path[1:]
    return _local_only(UNIX, inode, sock_type, 0, state, (path,), None, backend, netns)


def _local_only(
    kind: SocketKind,
    inode: int,
    sock_type: SockType,
    protocol: int,
    state: State,
    local: tuple,
    uid: Optional[int],
    backend: str,
    netns: Optional[int],
    interface: Optional[int] = None,
) -> tuple:
    """The row of a table that shows no remote endpoint and no queues (unix, packet, netlink)."""
    return (kind, inode, sock_type, protocol, state, local, None, None, None, uid, backend, None, netns, interface,
            None, None)


def _sock_type(digits: bytes, base: int) -> SockType:
    """The SockType printed as `digits` in `base`; ValueError if it is not one."""
    sock_type = _SOCK_TYPES.get(_hex(digits) if base == 16 else _dec(digits))
    if sock_type is None:
        raise ValueError("unknown socket type %s" % digits.decode("ascii", "replace"))
    return sock_type


def _lines(data: bytes, source: str, header: Tuple[bytes, ...], table: str) -> List[bytes]:
    """The lines of `data` (header first, no trailing empty line); ParseError if it is not `table`.

    An empty file has no lines and passes: the table was read and is empty.
    """
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if lines and tuple(lines[0].split()[: len(header)]) != header:
        raise ParseError(source, 1, "not a /proc/net/%s table (header does not match)" % table)
    return lines


def _parse_rows(
    lines: List[bytes],
    source: str,
    min_fields: int,
    inode_field: int,
    build: RowBuilder,
    inodes: Inodes,
) -> Collected:
    """Rows of the whitespace-separated lines after the header, one per line.

    Rows whose inode is not in `inodes` (when given) are dropped before `build` runs; rows that
    `build` rejects with ValueError, or that have too few fields, are skipped with the reason.
    """
    records: List[tuple] = []
    skipped: List[str] = []
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        if len(fields) < min_fields:
            skipped.append(
                "%s:%d: %d fields, expected at least %d" % (source, number, len(fields), min_fields)
            )
            continue
        try:
            inode = _dec(fields[inode_field])
            if inodes is None or inode in inodes:
                records.append(build(fields, inode))
        except ValueError as exc:
            skipped.append("%s:%d: %s" % (source, number, exc))
    return Collected(tuple(records), tuple(skipped))


# net/sctp/proc.c: eps rows "%8pK %8pK %-3d %-3d %-4d %-5d %5u %5lu " (ENDPT SOCK STY SST HBKT LPORT UID
# INODE) then the bound addresses ("%pISc ", the primary one after "*"); assocs rows "%8pK %8pK %-3d %-3d
# %-2d %-4d %4d %8d %8d %7u %5lu %-5d %5d " (ASSOC SOCK STY SST ST HBKT ASSOC-ID TX_QUEUE RX_QUEUE UID INODE
# LPORT RPORT), the local addresses, "<-> ", the peer's, a tab and counters.
_SCTP_EPS_HEADER = (b"ENDPT", b"SOCK", b"STY", b"SST", b"HBKT", b"LPORT", b"UID", b"INODE", b"LADDRS")
_SCTP_ASSOCS_HEADER = (b"ASSOC", b"SOCK", b"STY", b"SST", b"ST", b"HBKT", b"ASSOC-ID", b"TX_QUEUE", b"RX_QUEUE")
_SCTP_EPS_FIELDS, _SCTP_ASSOCS_FIELDS = 9, 16


def _sctp_address(addresses: List[bytes]) -> bytes:
    """The packed primary address of a list printed by %pISc (marked "*"; else the first)."""
    primary = next((a for a in addresses if a[:1] == b"*"), addresses[0] if addresses else b"")
    text = primary.lstrip(b"*").decode("ascii")
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def parse_sctp(
    kind: SocketKind, eps: bytes, assocs: bytes, *, source: str, backend: str = "procnet", inodes: Inodes = None,
    netns: Optional[int] = None,
) -> Collected:
    """Parse net/sctp/eps and net/sctp/assocs (`source` names the directory) into rows of `kind`.

    One row per socket: a listening endpoint's (its first bound address), else its first
    association's (primary local and peer addresses, queues). A socket's family is not printed:
    one whose address is IPv6 is sctp6 and IPv4 is sctp (an IPv6 socket bound to IPv4 addresses
    reads as sctp: sock_diag is exact, this text is not).
    """
    records: Dict[int, tuple] = {}
    skipped: List[str] = []
    size = 16 if kind.family is Family.INET6 else 4
    tables = ((eps, "eps", _SCTP_EPS_HEADER, _SCTP_EPS_FIELDS), (assocs, "assocs", _SCTP_ASSOCS_HEADER,
                                                                  _SCTP_ASSOCS_FIELDS))
    for data, name, header, minimum in tables:
        lines = _lines(data, "%s/%s" % (source, name), header, "sctp/" + name)
        for number, line in enumerate(lines[1:], 2):
            fields = line.split(b"\t", 1)[0].split()
            try:
                if len(fields) < minimum:
                    raise ValueError("%d fields, expected at least %d" % (len(fields), minimum))
                if name == "eps":
                    inode, local, remote = _dec(fields[7]), fields[8:], None
                    port, peer_port, queues, uid = _dec(fields[5]), 0, (None, None), _dec(fields[6])
                else:
                    inode, split = _dec(fields[10]), fields.index(b"<->")
                    local, remote = fields[13:split], fields[split + 1:]
                    port, peer_port, uid = _dec(fields[11]), _dec(fields[12]), _dec(fields[9])
                    queues = (_dec(fields[8]), _dec(fields[7]))
                if inode in records or (inodes is not None and inode not in inodes):
                    continue
                packed = _sctp_address(local)
                if len(packed) != size:
                    continue  # the other family's kind
                peer = bytes(size) if remote is None else _sctp_address(remote)
                state = _STATES.get(_dec(fields[3]))
                if state is None:
                    raise ValueError("unknown socket state %s" % fields[3].decode("ascii", "replace"))
                records[inode] = (
                    kind, inode, _sock_type(fields[2], 10), 132, state, (packed, port), (peer, peer_port),
                    queues[0], queues[1], uid, backend, None, netns, None, None, None,
                )
            except (ValueError, OSError, UnicodeDecodeError) as exc:
                skipped.append("%s/%s:%d: %s" % (source, name, number, exc))
    return Collected(tuple(records.values()), tuple(skipped))


_SINGLE_KIND_PARSERS = {UNIX: parse_unix, PACKET: parse_packet, NETLINK: parse_netlink}
