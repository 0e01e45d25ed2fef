"""A zoo of real sockets of the built-in kinds, each with what a backend must report for it.

Used by the conformance suite and by procsock's own tests. Kinds that need root (raw, packet)
or a kernel feature (UDP-Lite) are left out, with the reason, when they cannot be opened here.
"""

import errno
import os
import socket
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import attrs

from procsock.model import Endpoint, InetAddress, NetlinkAddress, PacketAddress, State, UnixAddress

IPPROTO_SCTP, IPPROTO_MPTCP = 132, 262
UNAVAILABLE = (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT, errno.ESOCKTNOSUPPORT)


def inode_of(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def endpoint_of(sock: socket.socket, address) -> Endpoint:
    """The model endpoint for what getsockname()/getpeername() returned (None: not connected)."""
    if sock.family == socket.AF_UNIX:
        return UnixAddress(os.fsencode(address) if isinstance(address, str) else bytes(address))
    if sock.family == socket.AF_PACKET:
        ifname, ethertype = address[:2]
        return PacketAddress(socket.if_nametoindex(ifname) if ifname else 0, ethertype)
    if sock.family == socket.AF_NETLINK:
        return NetlinkAddress(sock.proto, address[0], address[1])
    if address is None:
        return InetAddress(bytes(4 if sock.family == socket.AF_INET else 16), 0)
    return InetAddress(socket.inet_pton(sock.family, address[0]), address[1])


def peer_of(sock: socket.socket):
    try:
        return sock.getpeername()
    except OSError:
        return None


@attrs.frozen
class Expected:
    """One socket of the zoo and what a backend must report for it: kind name, state, endpoints.

    `remote` is None for families without a remote endpoint in the model (unix, packet, netlink);
    for inet sockets it is the wildcard with port 0 when unconnected. `connected_to` gives it for
    sockets whose getpeername() refuses (raw and ping sockets have no peer port).
    """

    label: str
    sock: socket.socket = attrs.field(eq=False)
    kind: str
    state: State
    connected_to: Optional[Endpoint] = None

    @property
    def inode(self) -> int:
        return inode_of(self.sock)

    @property
    def local(self) -> Endpoint:
        return endpoint_of(self.sock, self.sock.getsockname())

    @property
    def remote(self) -> Optional[Endpoint]:
        if self.connected_to is not None:
            return self.connected_to
        if self.sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return endpoint_of(self.sock, peer_of(self.sock))


class SocketZoo:
    """Opens real sockets of the kinds asked for and remembers what each must look like.

    `expected` lists them (a kind may bring a socket of a sibling kind: the IPv4 client of tcp6's
    dual-stack listener is tcp); `missing` maps a kind that could not be opened here to the reason.
    Sockets are held by this process; close() closes them all.
    """

    def __init__(self, tmpdir: str) -> None:
        self.tmpdir = tmpdir
        self.expected: List[Expected] = []
        self.missing: Dict[str, str] = {}

    def add(
        self, label: str, sock: socket.socket, kind: str, state: State, connected_to: Optional[Endpoint] = None
    ) -> socket.socket:
        """Register `sock` (returned, kept open until close()) as a socket the backend must report
        under kind name `kind` in `state`; `connected_to` is its remote endpoint when getpeername
        cannot say (raw, ping). Endpoints are read when checked: bind or connect after adding."""
        self.expected.append(Expected(label, sock, kind, state, connected_to))
        return sock

    def open(self, kind: str, *args) -> Optional[socket.socket]:
        """socket(*args), or None with the reason recorded when this host cannot open it."""
        try:
            return socket.socket(*args)
        except OSError as exc:
            if exc.errno not in UNAVAILABLE:
                raise
            self.missing[kind] = "cannot open a %s socket here: %s" % (kind, exc.strerror)
            return None

    def tcp(self, kind: str = "tcp") -> None:
        family, host = (socket.AF_INET, "127.0.0.1") if kind == "tcp" else (socket.AF_INET6, "::1")
        listener = self.add(kind + " listen", socket.socket(family), kind, State.LISTEN)
        listener.bind((host, 0))
        listener.listen()
        client = self.add(kind + " client", socket.socket(family), kind, State.ESTABLISHED)
        client.connect(listener.getsockname()[:2])
        self.add(kind + " accepted", listener.accept()[0], kind, State.ESTABLISHED)

    def tcp6(self) -> None:
        self.tcp("tcp6")
        # A dual-stack listener reached over IPv4: the accepted socket is IPv4-mapped IPv6.
        dual = self.add("tcp6 dual listen", socket.socket(socket.AF_INET6), "tcp6", State.LISTEN)
        dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dual.bind(("::", 0))
        dual.listen()
        v4_client = self.add("tcp to dual-stack", socket.socket(), "tcp", State.ESTABLISHED)
        v4_client.connect(("127.0.0.1", dual.getsockname()[1]))
        self.add("tcp6 mapped accepted", dual.accept()[0], "tcp6", State.ESTABLISHED)

    def stream(self, kind: str, protocol: int) -> None:
        """A listener, a client and the accepted end of a stream protocol other than TCP (MPTCP,
        SCTP one-to-one), when this kernel has it."""
        family, host = (socket.AF_INET6, "::1") if kind.endswith("6") else (socket.AF_INET, "127.0.0.1")
        listener = self.open(kind, family, socket.SOCK_STREAM, protocol)
        if listener is None:
            return
        self.add(kind + " listen", listener, kind, State.LISTEN).bind((host, 0))
        listener.listen()
        client = socket.socket(family, socket.SOCK_STREAM, protocol)
        self.add(kind + " client", client, kind, State.ESTABLISHED)
        client.connect(listener.getsockname()[:2])
        self.add(kind + " accepted", listener.accept()[0], kind, State.ESTABLISHED)

    def datagram(self, kind: str, protocol: int = 0) -> None:
        family, host = (socket.AF_INET6, "::1") if kind.endswith("6") else (socket.AF_INET, "127.0.0.1")
        bound = self.open(kind, family, socket.SOCK_DGRAM, protocol)
        if bound is None:
            return
        self.add(kind + " bound", bound, kind, State.CLOSE)
        bound.bind((host, 0))
        conn = self.add(
            kind + " connected", socket.socket(family, socket.SOCK_DGRAM, protocol), kind, State.ESTABLISHED
        )
        conn.connect(bound.getsockname()[:2])

    def raw(self, kind: str) -> None:
        family, protocol = (
            (socket.AF_INET6, socket.IPPROTO_ICMPV6) if kind == "raw6" else (socket.AF_INET, socket.IPPROTO_ICMP)
        )
        sock = self.open(kind, family, socket.SOCK_RAW, protocol)
        if sock is not None:
            self.add(kind + " icmp", sock, kind, State.CLOSE)

    def unix(self) -> None:
        path = os.path.join(self.tmpdir, "with space \xe9.sock")
        listener = self.add("unix listen", socket.socket(socket.AF_UNIX), "unix", State.LISTEN)
        listener.bind(path)
        listener.listen()
        client = self.add("unix client", socket.socket(socket.AF_UNIX), "unix", State.ESTABLISHED)
        client.connect(path)
        self.add("unix accepted", listener.accept()[0], "unix", State.ESTABLISHED)
        dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.add("unix abstract dgram", dgram, "unix", State.CLOSE).bind(b"\0procsock-zoo-%d" % os.getpid())
        self.add("unix unbound dgram", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "unix", State.CLOSE)
        seq = self.add(
            "unix seqpacket listen", socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET), "unix", State.LISTEN
        )
        seq.bind(b"\0procsock-zoo-seq-%d" % os.getpid())
        seq.listen()
        for i, end in enumerate(socket.socketpair()):
            self.add("socketpair %d" % i, end, "unix", State.ESTABLISHED)

    def packet(self) -> None:
        bound = self.open("packet", socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        if bound is None:
            return
        self.add("packet bound to lo", bound, "packet", State.CLOSE).bind(("lo", 0x0003))
        self.add("packet unbound", socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800)),
                 "packet", State.CLOSE)

    def netlink(self) -> None:
        route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.add("netlink route", route, "netlink", State.CLOSE).bind((0, 1))  # RTMGRP_LINK

    def build(self, kinds: Optional[Iterable[str]] = None) -> "SocketZoo":
        """Open the sockets of these kind names (default: every kind in KNOWN_KINDS)."""
        for kind in KNOWN_KINDS if kinds is None else kinds:
            _OPENERS[kind](self)
        return self

    def close(self) -> None:
        for item in self.expected:
            item.sock.close()


_OPENERS: Dict[str, Callable[[SocketZoo], None]] = {
    "tcp": SocketZoo.tcp,
    "tcp6": SocketZoo.tcp6,
    "udp": lambda zoo: zoo.datagram("udp"),
    "udp6": lambda zoo: zoo.datagram("udp6"),
    "udplite": lambda zoo: zoo.datagram("udplite", socket.IPPROTO_UDPLITE),
    "udplite6": lambda zoo: zoo.datagram("udplite6", socket.IPPROTO_UDPLITE),
    "raw": lambda zoo: zoo.raw("raw"),
    "raw6": lambda zoo: zoo.raw("raw6"),
    "unix": SocketZoo.unix,
    "packet": SocketZoo.packet,
    "netlink": SocketZoo.netlink,
    "mptcp": lambda zoo: zoo.stream("mptcp", IPPROTO_MPTCP),
    "mptcp6": lambda zoo: zoo.stream("mptcp6", IPPROTO_MPTCP),
    "sctp": lambda zoo: zoo.stream("sctp", IPPROTO_SCTP),
    "sctp6": lambda zoo: zoo.stream("sctp6", IPPROTO_SCTP),
}
KNOWN_KINDS: Tuple[str, ...] = tuple(_OPENERS)
