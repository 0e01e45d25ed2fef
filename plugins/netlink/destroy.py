"""The sock_diag destroy multicast groups: the kernel's word that a TCP or UDP socket is gone.

Any user may join them (linux/sock_diag.h SKNLGRP_*). A message is an inet_diag_msg of the socket
as it was destroyed: state CLOSE, inode 0 once released (its cookie says which socket). The socket
is connected to the kernel, which then refuses unicast from other senders, and every datagram's
sender is checked all the same (`transport.receive`). A reader too slow for the kernel loses
messages: the kernel says so with ENOBUFS, and `read` says so in `Destroyed.lost`. A read takes at
most READ_BATCH datagrams or READ_SLICE seconds, so that a flood of closes (faster than they are
decoded) never holds the watch: the rest waits in the socket, or the kernel drops it and says so.
"""

import errno
import socket
import time
from typing import List, Optional

from procsock.plugin import BackendUnavailable, Destroyed, Row, State

from procsock_plugins.netlink import codec, transport

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
# SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET_UDP_DESTROY, SKNLGRP_INET6_TCP_DESTROY, SKNLGRP_INET6_UDP_DESTROY
GROUPS = (1, 2, 3, 4)
_READ_SIZE = 1 << 16
SO_RCVBUFFORCE = 33
LISTENER_BUFFER = 16 << 20  # about 200,000 destroy messages
READ_BATCH = 1024  # datagrams (the kernel's: one destroy message each; or forgeries) at most per read
READ_SLICE = 0.05  # seconds at most per read


def open_listener_socket() -> socket.socket:
    """A sock_diag socket (transport.open_diag_socket) that joined the destroy groups."""
    sock = transport.open_diag_socket()
    try:  # room for the bursts a busy host sends while a poll runs (CAP_NET_ADMIN; else as it is)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, LISTENER_BUFFER)
    except OSError:
        pass
    try:
        for group in GROUPS:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    except OSError as exc:
        sock.close()
        raise BackendUnavailable(
            transport.NAME, "joining the sock_diag destroy groups refused %s" % codec.errno_text(exc.errno or 0)
        ) from None
    sock.setblocking(False)
    return sock


class DestroyListener:
    """The destroy notifications of one network namespace (hookspec procsock_destroy_listener)."""

    def __init__(self, sock: socket.socket, netns: Optional[int]) -> None:
        self._sock = sock
        self._netns = netns
        self._buffer = memoryview(bytearray(_READ_SIZE))

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> Destroyed:
        """The notifications waiting now, without blocking: at most READ_BATCH datagrams or
        READ_SLICE seconds of them (the socket stays readable while more wait)."""
        rows: List[tuple] = []
        lost: List[str] = []
        skipped: List[str] = []
        dropped = {}
        closed = State.CLOSE
        until = time.monotonic() + READ_SLICE
        for _ in range(READ_BATCH):
            if time.monotonic() >= until:
                break
            try:
                size = transport.receive(self._sock, self._buffer, dropped, None)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped messages; the socket reads on
                    lost.append("the kernel dropped destroy messages (ENOBUFS: reader too slow)")
                    continue
                raise BackendUnavailable(transport.NAME, "reading destroy messages failed %s"
                                         % codec.errno_text(exc.errno or 0)) from None
            if size is None:  # another's, dropped: counted in the batch all the same
                continue
            decoded = codec.decode(bytes(self._buffer[:size]), netns=self._netns)
            skipped.extend(decoded.skipped)
            for row in decoded.records:  # the kernel reports TCP's CLOSE, which the dump codec reads as bound-inactive
                rows.append(row[:Row.STATE] + (closed,) + row[Row.STATE + 1:])
        if dropped:
            skipped.append(transport.dropped_note(dropped))
        return Destroyed(tuple(rows), tuple(lost), tuple(skipped))

    def close(self) -> None:
        self._sock.close()


def listen(proc_root: str, pid: Optional[int], netns: Optional[int]) -> DestroyListener:
    """A DestroyListener in our namespace (`pid` None) or in the namespace of `pid`."""
    if pid is None:
        return DestroyListener(open_listener_socket(), netns)
    return DestroyListener(transport.open_diag_socket_in(proc_root, pid, open_listener_socket), netns)
