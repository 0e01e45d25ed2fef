"""The I/O side of sock_diag: one NETLINK_SOCK_DIAG socket, a request, the whole answer.

Only the kernel is believed. Any process in the namespace the socket lives in (an unprivileged user
who made it with `unshare -Urn`) can send datagrams to its port id, so the socket is connected to
the kernel (port id 0: the kernel then refuses other senders), every datagram's sender is checked
all the same (`receive`), and each request carries an unpredictable sequence number.
"""

import errno
import functools
import os
import socket
import time
from typing import Dict, List, Optional, Tuple

import attrs

from procsock.plugin import BackendUnavailable

from procsock_plugins.netlink import codec

NAME = "netlink"
RECV_BUFFER = 1 << 20
TIMEOUT = 10.0
_READ_SIZE = 1 << 16
_DUMP_ATTEMPTS = 3
KERNEL = 0  # the kernel's port id; no process can have it
_SHOWN_SENDERS = 8  # port ids a note names at most


class Answered(BackendUnavailable):
    """The kernel answered a request in full, with an errno (`code`): the socket is left with
    nothing unread and may serve the next request."""

    def __init__(self, backend: str, reason: str, code: int = 0) -> None:
        super().__init__(backend, reason)
        self.code = code


def _refused(what: str, exc: OSError) -> BackendUnavailable:
    code = exc.errno or 0
    return BackendUnavailable(NAME, "%s refused %s" % (what, codec.errno_text(code)))


def open_diag_socket() -> socket.socket:
    """A NETLINK_SOCK_DIAG socket with a large receive buffer; BackendUnavailable if refused."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, codec.NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise _refused("netlink sock_diag", exc) from None
    sock.settimeout(TIMEOUT)  # a kernel that never answers must not hang the caller
    for option in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE needs CAP_NET_ADMIN; then the plain one
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECV_BUFFER)
            break
        except OSError:
            continue
    try:
        sock.connect((KERNEL, 0))  # from now on the kernel refuses datagrams from any other sender
    except OSError as exc:
        sock.close()
        raise _refused("netlink sock_diag", exc) from None
    return sock


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(fd, CLONE_NEWNET) for the calling thread (os.setns from Python 3.12, else libc)."""
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes  # only for Python < 3.12

    if _libc().setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@functools.lru_cache(maxsize=1)
def _libc():
    """libc, loaded once: a CDLL per call kept a few dozen bytes per snapshot of another namespace."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def open_diag_socket_in(proc_root: str, pid: int, opener=open_diag_socket) -> socket.socket:
    """A sock_diag socket (made by `opener`) inside the network namespace of `pid`.

    A netlink socket belongs to the namespace of the thread that creates it, so a short-lived
    thread enters the namespace, creates the socket and ends; this thread never changes namespace.
    """
    outcome = {}

    def enter_and_open():
        try:
            fd = os.open("%s/%d/ns/net" % (proc_root, pid), os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            outcome["error"] = BackendUnavailable(
                NAME, "cannot enter the network namespace of pid %d %s" % (pid, codec.errno_text(exc.errno or 0))
            )
            return
        try:
            outcome["socket"] = opener()
        except BackendUnavailable as exc:
            outcome["error"] = exc

    import threading  # only to enter another namespace

    worker = threading.Thread(target=enter_and_open, name="procsock-setns")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["socket"]


def receive(sock: socket.socket, view: memoryview, dropped: Dict[int, int],
            deadline: Optional[float]) -> Optional[int]:
    """Read the next datagram the kernel sent into `view` and return its size.

    Datagrams from any other port id are dropped unread and counted in `dropped` (port id →
    count). Raises socket.timeout once `deadline` (time.monotonic) passes, however many others
    keep arriving; with `deadline` None it reads one datagram that is there (BlockingIOError when
    none is) and returns None when it was another's, so that the caller bounds a flood of them.
    Every read of a netlink socket goes through here.
    """
    while True:
        if deadline is None:
            sock.setblocking(False)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            sock.settimeout(remaining)
        size, sender = sock.recvfrom_into(view)
        port = sender[0] if isinstance(sender, tuple) and sender else None
        if port == KERNEL:
            return size
        dropped[port] = dropped.get(port, 0) + 1
        if deadline is None:
            return None


def dropped_note(dropped: Dict[int, int]) -> str:
    """One line saying how many datagrams not from the kernel were dropped, and from whom."""
    senders = sorted(dropped, key=lambda port: (port is None, port))
    shown = ", ".join("unknown" if port is None else str(port) for port in senders[:_SHOWN_SENDERS])
    more = " and %d more" % (len(senders) - _SHOWN_SENDERS) if len(senders) > _SHOWN_SENDERS else ""
    return "dropped %d datagrams not from the kernel (from port ids %s%s)" % (sum(dropped.values()), shown, more)


def exchange(sock: socket.socket, request: bytes, seq: int, single: bool = False) -> Tuple[List[bytes], Dict[int, int]]:
    """Send one request and read every datagram of its answer: up to NLMSG_DONE/NLMSG_ERROR, or
    the first message of a `single` (lookup) answer. Returns the kernel's datagrams and the
    count of others dropped by sender (`receive`); the whole answer must come within TIMEOUT."""
    dropped: Dict[int, int] = {}
    deadline = time.monotonic() + TIMEOUT
    try:
        sock.send(request)
        chunks = []
        buffer = bytearray(_READ_SIZE)
        view = memoryview(buffer)
        while True:
            size = receive(sock, view, dropped, deadline)
            chunk = bytes(view[:size])
            chunks.append(chunk)
            if codec.answer_ended(chunk, seq, single):
                return chunks, dropped
    except socket.timeout:
        raise BackendUnavailable(NAME, "no complete sock_diag answer within %g s" % TIMEOUT) from None
    except OSError as exc:
        raise _refused("sock_diag request", exc) from None


def query(sock: socket.socket, build, lookup: bool = False, **decode_args) -> Tuple[codec.Decoded, bytes, int]:
    """Ask with `build(seq)`; retry a dump the kernel flagged interrupted (bounded).

    Returns the decoded answer, its raw bytes and how many retries it took. An errno in the
    answer becomes Answered (ENOENT: no diag handler for that family in this kernel),
    except ENOENT for a `lookup` of one socket, which only means that socket does not exist.
    Datagrams not from the kernel are dropped and said in ``skipped``; the kernel's messages
    must also carry our port id (it addresses every reply to the requester).
    """
    dropped: Dict[int, int] = {}
    for attempt in range(_DUMP_ATTEMPTS):
        seq = int.from_bytes(os.urandom(4), "little")  # unpredictable: no other process can answer in our place
        chunks, others = exchange(sock, build(seq), seq, lookup)
        for port, count in others.items():
            dropped[port] = dropped.get(port, 0) + count
        raw = b"".join(chunks)
        chunks = None  # the datagrams are in `raw` now: not held twice while it is decoded
        decoded = codec.decode(raw, seq=seq, port=sock.getsockname()[0], **decode_args)
        if decoded.errno and not (lookup and decoded.errno == errno.ENOENT):
            if decoded.errno == errno.ENOENT:
                raise Answered(NAME, "no sock_diag handler for it in this kernel (ENOENT)", errno.ENOENT)
            raise Answered(NAME, "sock_diag answered " + codec.errno_text(decoded.errno), decoded.errno)
        if not decoded.interrupted:
            break
    if dropped:
        decoded = attrs.evolve(decoded, skipped=decoded.skipped + (dropped_note(dropped),))
    return decoded, raw, attempt
