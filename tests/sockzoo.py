"""A zoo of real sockets of every everyday kind, with what each one must be reported as."""

import ipaddress
import os
import socket

import attrs
import pytest

from procsock.model import InetAddress, State, UnixAddress


def inode_of(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def endpoint_of(sock: socket.socket, address):
    """The model endpoint for what getsockname()/getpeername() returned (None: not connected)."""
    if sock.family == socket.AF_UNIX:
        return UnixAddress(os.fsencode(address) if isinstance(address, str) else bytes(address))
    if address is None:
        packed = bytes(4 if sock.family == socket.AF_INET else 16)
        return InetAddress(packed, 0)
    return InetAddress(socket.inet_pton(sock.family, address[0]), address[1])


def peer_of(sock: socket.socket):
    try:
        return sock.getpeername()
    except OSError:
        return None


@attrs.frozen
class Expected:
    """What a backend must report for one socket of the zoo."""

    label: str
    sock: socket.socket = attrs.field(eq=False)
    kind: str
    state: State

    @property
    def inode(self) -> int:
        return inode_of(self.sock)

    @property
    def local(self):
        return endpoint_of(self.sock, self.sock.getsockname())

    @property
    def remote(self):
        if self.sock.family == socket.AF_UNIX:
            return None
        return endpoint_of(self.sock, peer_of(self.sock))


class SocketZoo:
    """Opens one socket of every everyday kind and remembers what each must look like."""

    def __init__(self, tmpdir: str) -> None:
        self.tmpdir = tmpdir
        self.expected = []
        self._others = []

    def add(self, label, sock, kind, state):
        self.expected.append(Expected(label, sock, kind, state))
        return sock

    def keep(self, sock):
        self._others.append(sock)
        return sock

    def tcp_pair(self, family, host, label, kind):
        listener = self.add(label + " listen", socket.socket(family), kind, State.LISTEN)
        listener.bind((host, 0))
        listener.listen()
        client = self.add(label + " client", socket.socket(family), kind, State.ESTABLISHED)
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
        self.add(label + " accepted", server, kind, State.ESTABLISHED)

    def build(self):
        v6 = socket.AF_INET6
        self.tcp_pair(socket.AF_INET, "127.0.0.1", "tcp4", "tcp")
        self.tcp_pair(v6, "::1", "tcp6", "tcp6")
        # A dual-stack listener reached over IPv4: the accepted socket is IPv4-mapped IPv6.
        dual = self.add("tcp6 dual listen", socket.socket(v6), "tcp6", State.LISTEN)
        dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        dual.bind(("::", 0))
        dual.listen()
        v4_client = self.add("tcp4 to dual", socket.socket(), "tcp", State.ESTABLISHED)
        v4_client.connect(("127.0.0.1", dual.getsockname()[1]))
        mapped, _ = dual.accept()
        self.add("tcp6 mapped accepted", mapped, "tcp6", State.ESTABLISHED)
        for family, host, kind in ((socket.AF_INET, "127.0.0.1", "udp"), (v6, "::1", "udp6")):
            bound = self.add(kind + " bound", socket.socket(family, socket.SOCK_DGRAM), kind, State.CLOSE)
            bound.bind((host, 0))
            conn = self.add(kind + " connected", socket.socket(family, socket.SOCK_DGRAM), kind, State.ESTABLISHED)
            conn.connect(bound.getsockname()[:2])
        path = os.path.join(self.tmpdir, "with space \xe9.sock")
        ulisten = self.add("unix listen", socket.socket(socket.AF_UNIX), "unix", State.LISTEN)
        ulisten.bind(path)
        ulisten.listen()
        uclient = self.add("unix client", socket.socket(socket.AF_UNIX), "unix", State.ESTABLISHED)
        uclient.connect(path)
        self.add("unix accepted", ulisten.accept()[0], "unix", State.ESTABLISHED)
        abstract = self.add("unix abstract dgram", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "unix", State.CLOSE)
        abstract.bind(b"\0procsock-test-%d" % os.getpid())
        self.add("unix unbound dgram", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "unix", State.CLOSE)
        seq = self.add("unix seqpacket listen", socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET), "unix", State.LISTEN)
        seq.bind(b"\0procsock-seq-%d" % os.getpid())
        seq.listen()
        for i, end in enumerate(socket.socketpair()):
            self.add("socketpair %d" % i, end, "unix", State.ESTABLISHED)
        return self

    def close(self):
        for item in self.expected:
            item.sock.close()
        for sock in self._others:
            sock.close()


def open_zoo(tmpdir: str) -> SocketZoo:
    return SocketZoo(tmpdir).build()


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (raw sockets, other users' processes, other namespaces)"
)


def ss_endpoint(text: str):
    """(ip or None for a wildcard, port or None) from an address as `ss -n` prints it."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]").split("%")[0]
    ip = None if host in ("*", "0.0.0.0", "::") else ipaddress.ip_address(host)
    return ip, None if port == "*" else int(port)


def model_endpoint(address):
    """The same pair from a model InetAddress, to compare with ss_endpoint()."""
    return (None if address.is_wildcard else address.ip), (None if address.port == 0 else address.port)
