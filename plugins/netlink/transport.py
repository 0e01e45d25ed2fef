"""The I/O side of sock_diag: one NETLINK_SOCK_DIAG socket, a request, the whole answer."""

import errno
import itertools
import os
import socket
import threading
from typing import List, Tuple

from procsock.plugin import BackendUnavailable

from procsock_plugins.netlink import codec

NAME = "netlink"
RECV_BUFFER = 1 << 20
TIMEOUT = 10.0
_READ_SIZE = 1 << 16
_DUMP_ATTEMPTS = 3
_sequence = itertools.count(1)


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
    return sock


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(fd, CLONE_NEWNET) for the calling thread (os.setns from Python 3.12, else libc)."""
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes  # only for Python < 3.12

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def open_diag_socket_in(proc_root: str, pid: int) -> socket.socket:
    """A sock_diag socket inside the network namespace of `pid`.

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
            outcome["socket"] = open_diag_socket()
        except BackendUnavailable as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=enter_and_open, name="procsock-setns")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["socket"]


def exchange(sock: socket.socket, request: bytes, seq: int, single: bool = False) -> List[bytes]:
    """Send one request and read every datagram of its answer: up to NLMSG_DONE/NLMSG_ERROR, or
    the first message of a `single` (lookup) answer."""
    try:
        sock.send(request)
        chunks = []
        buffer = bytearray(_READ_SIZE)
        view = memoryview(buffer)
        while True:
            size = sock.recv_into(view)
            chunk = bytes(view[:size])
            chunks.append(chunk)
            if codec.answer_ended(chunk, seq, single):
                return chunks
    except OSError as exc:
        raise _refused("sock_diag request", exc) from None


def query(sock: socket.socket, build, lookup: bool = False, **decode_args) -> Tuple[codec.Decoded, bytes, int]:
    """Ask with `build(seq)`; retry a dump the kernel flagged interrupted (bounded).

    Returns the decoded answer, its raw bytes and how many retries it took. An errno in the
    answer becomes BackendUnavailable (ENOENT: no diag handler for that family in this kernel),
    except ENOENT for a `lookup` of one socket, which only means that socket does not exist.
    """
    for attempt in range(_DUMP_ATTEMPTS):
        seq = next(_sequence) & 0xFFFFFFFF
        raw = b"".join(exchange(sock, build(seq), seq, lookup))
        decoded = codec.decode(raw, seq=seq, **decode_args)
        if decoded.errno and not (lookup and decoded.errno == errno.ENOENT):
            if decoded.errno == errno.ENOENT:
                raise BackendUnavailable(NAME, "no sock_diag handler for it in this kernel (ENOENT)")
            raise BackendUnavailable(NAME, "sock_diag answered " + codec.errno_text(decoded.errno))
        if not decoded.interrupted:
            break
    return decoded, raw, attempt
