"""Reading one socket through a copy of another process's fd (pidfd_open + pidfd_getfd).

The copy is closed before read_socket returns, whatever happens. The copies go through libc's
syscall(2) with ctypes, loaded on the first one: the stdlib has os.pidfd_open but no pidfd_getfd.
"""

import errno
import fcntl
import functools
import os
import socket
import struct
from typing import Optional

from procsock.plugin import (
    RAW,
    RAW6,
    TCP,
    TCP6,
    UDP,
    UDP6,
    UDPLITE,
    UDPLITE6,
    InetAddress,
    SocketKind,
    SocketRecord,
    SockType,
    State,
)

SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438  # the same on every architecture
PIDFD_THREAD = os.O_EXCL  # pidfd_open flag: the pidfd of a thread, not of a process
SO_COOKIE, SO_BINDTOIFINDEX = 57, 62
SIOCINQ, SIOCOUTQ = 0x541B, 0x5411
_COOKIE = struct.Struct("=Q")
_INT = struct.Struct("=i")

_INET_KIND = {
    (socket.AF_INET, socket.SOCK_STREAM, 6): TCP,
    (socket.AF_INET6, socket.SOCK_STREAM, 6): TCP6,
    (socket.AF_INET, socket.SOCK_DGRAM, 17): UDP,
    (socket.AF_INET6, socket.SOCK_DGRAM, 17): UDP6,
    (socket.AF_INET, socket.SOCK_DGRAM, 136): UDPLITE,
    (socket.AF_INET6, socket.SOCK_DGRAM, 136): UDPLITE6,
}


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes  # only when an fd is copied: a full snapshot never does

    return ctypes.CDLL(None, use_errno=True)


def _syscall(number: int, *args: int) -> int:
    result = _libc().syscall(number, *args)
    if result < 0:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def unsupported() -> Optional[str]:
    """Why pidfd_getfd cannot work on this kernel, or None (one cheap pidfd_open of ourselves)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        return "pidfd_open failed: %s" % exc.strerror
    return None


def _copy_fd(pid: int, fd: int) -> int:
    """A copy of fd `fd` of task `pid`: a process, or a thread (its own fd table, if it has one)."""
    try:
        pidfd = _syscall(SYS_PIDFD_OPEN, pid, 0)
    except OSError as exc:  # a thread id (ENOENT; EINVAL before 6.9) needs PIDFD_THREAD (Linux 6.9+)
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise
        pidfd = _syscall(SYS_PIDFD_OPEN, pid, PIDFD_THREAD)
    try:
        return _syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)


UNBOUND = "unbound: in no kernel table (never bound or connected, or its connect failed)"
NOT_ACTIVE = (
    "unbound or bound-inactive: neither listening nor connected, local port %d (after a failed connect it "
    "is in no kernel table; bound, only sock_diag on Linux >= 6.5 lists it)"
)
NO_PEER = "%s: no peer address to read until it is connected"


class Incomplete(Exception):
    """The fd cannot give the socket's whole record (no peer address yet, no table entry to
    match); `reason` says what it is, for the backend to defer it; `settled` when no table lists
    it at all (unbound), so that no other backend need be asked."""

    def __init__(self, reason: str, settled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.settled = settled


def read_socket(pid: int, fd: int, inode: int, kind: SocketKind, netns: Optional[int],
                backend: str) -> Optional[SocketRecord]:
    """The record of socket `inode` held at fd `fd` of `pid`, if it is of `kind`; None if the fd
    now holds another socket or another kind. Incomplete when the fd cannot tell all of it (a
    TCP socket that is connecting, or neither listening nor connected; an unbound UDP socket);
    OSError when the process or fd is gone or refused."""
    copied = _copy_fd(pid, fd)
    try:
        sock = socket.socket(fileno=copied)
    except OSError:
        os.close(copied)
        raise
    with sock:
        if os.fstat(sock.fileno()).st_ino != inode:
            return None
        return _record(sock, inode, kind, netns, backend)


def _queue(sock: socket.socket, request: int) -> Optional[int]:
    try:
        return _INT.unpack(fcntl.ioctl(sock.fileno(), request, bytes(4)))[0]
    except OSError:
        return None


def _peer(sock: socket.socket):
    try:
        return sock.getpeername()
    except OSError:
        return None


_SIOCINQ_IS_RECV_Q = frozenset((State.ESTABLISHED, State.FIN_WAIT1, State.FIN_WAIT2))
_TCP_INFO_HEAD = struct.Struct("=B23xII")  # tcpi_state ... tcpi_unacked, tcpi_sacked


def _state_and_queues(sock: socket.socket, kind: SocketKind, peer):
    """(state, rx_queue, tx_queue) as inet_diag reports them.

    For a TCP listener tcp_info carries the accept backlog in tcpi_unacked and its limit in
    tcpi_sacked, which inet_diag reports as the queues. UDP's receive queue (memory in use) has no
    getsockopt/ioctl: None.
    """
    if kind.protocol == "tcp":
        state, backlog, limit = _TCP_INFO_HEAD.unpack(
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_HEAD.size)
        )
        if state == State.LISTEN:
            return State.LISTEN, backlog, limit
        state = State(state)
        # SIOCINQ is inet_diag's Recv-Q (unread bytes) only while no FIN has come in and the
        # handshake is done: it leaves out the FIN's sequence number and a fast open SYN's data.
        rx_queue = _queue(sock, SIOCINQ) if state in _SIOCINQ_IS_RECV_Q else None
        return state, rx_queue, _queue(sock, SIOCOUTQ)
    state = State.ESTABLISHED if peer is not None else State.CLOSE
    return state, None, _queue(sock, SIOCOUTQ)


def _inet(family: int, address, port: Optional[int] = None) -> InetAddress:
    if address is None:
        return InetAddress(bytes(4 if family == socket.AF_INET else 16), 0)
    return InetAddress(socket.inet_pton(family, address[0]), address[1] if port is None else port)


def _check_complete(kind: SocketKind, state: State, local: InetAddress, peer) -> None:
    """Raise Incomplete for a socket whose fd cannot give what the kernel's tables say of it.

    A TCP socket that neither listens nor is connected (state CLOSE) is either bound-inactive,
    which only a sock_diag dump tells apart, or in no table (unbound, or its connect failed: the
    port getsockname still shows was released); a connecting one has no peer address yet; an
    unbound UDP socket (port 0) is in no table.
    """
    if kind.protocol == "tcp":
        if state is State.CLOSE:
            if local.port == 0:
                raise Incomplete(UNBOUND, settled=True)
            raise Incomplete(NOT_ACTIVE % local.port)
        if peer is None and state is not State.LISTEN:
            raise Incomplete(NO_PEER % ("connecting (%s)" % state.label))
    elif kind.protocol != "raw" and local.port == 0:
        raise Incomplete(UNBOUND, settled=True)


def _record(sock: socket.socket, inode: int, kind: SocketKind, netns: Optional[int],
            backend: str) -> Optional[SocketRecord]:
    family, sock_type = sock.family, sock.type
    if sock_type == socket.SOCK_RAW and family in (socket.AF_INET, socket.AF_INET6):  # netlink, packet: SOCK_RAW too
        found = RAW if family == socket.AF_INET else RAW6
    else:
        found = _INET_KIND.get((family, sock_type, sock.proto))
    if found != kind:
        return None
    raw = kind.protocol == "raw"
    peer = None if raw else _peer(sock)  # the kernel keeps no peer port for raw sockets
    state, rx_queue, tx_queue = _state_and_queues(sock, kind, peer)
    protocol = sock.proto if raw else {"tcp": 6, "udp": 17, "udplite": 136}[kind.protocol]
    local = _inet(family, sock.getsockname(), protocol if raw else None)
    _check_complete(kind, state, local, peer)
    return SocketRecord(
        kind=kind,
        inode=inode,
        type=SockType(sock_type),
        protocol=protocol,
        state=state,
        local=local,
        remote=_inet(family, peer),
        rx_queue=rx_queue,
        tx_queue=tx_queue,
        uid=os.fstat(sock.fileno()).st_uid,
        backend=backend,
        netns=netns,
        interface=sock.getsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX),
        cookie=_COOKIE.unpack(sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0],
    )
