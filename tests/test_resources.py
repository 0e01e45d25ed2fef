"""A snapshot gives back everything it takes: every fd it opens is closed (also when it fails)
and memory does not grow from one call to the next."""

import gc
import os
import socket
import tracemalloc

import pytest

import procsock
from procsock.errors import ProcsockError

DIAG = os.path.join(os.path.dirname(__file__), "fixtures", "diag")


def open_fds():
    return sorted(os.listdir("/proc/self/fd"))


def one_round(i, sock, closed_inode, file_fd):
    """One of the calls a long-running audit tool makes, succeeding or failing by design."""
    calls = [
        lambda: procsock.snapshot(pid=os.getpid()),
        lambda: procsock.describe_fd(os.getpid(), sock.fileno()),
        lambda: procsock.snapshot(diag_file=os.path.join(DIAG, "truncated.bin")),
        lambda: procsock.snapshot(proc_root="/nonexistent"),                  # ProcsockError
        lambda: procsock.snapshot(backend="nosuch"),                          # BackendUnavailable
        lambda: procsock.describe_fd(os.getpid(), file_fd),                   # NotASocket
        lambda: procsock.describe_fd(os.getpid(), 9999),                      # no such fd
        lambda: procsock.describe_fd(2 ** 22 + 1, 0),                         # NoSuchProcess
        lambda: procsock.snapshot(pid=os.getpid(), backend="pidfd", kind="unix"),  # nothing serves it
    ]
    if i % 100 == 0:  # whole tables, whose cost grows with the host's sockets (a busy host has 30k+)
        calls.append(lambda: procsock.describe_fd(os.getpid(), sock.fileno(), backend="procnet"))
        calls.append(lambda: procsock.snapshot(pid=os.getpid(), details=True))  # a netlink dump with details
        calls.append(lambda: procsock.snapshot())  # the whole host: the background walker's pipe and child too
        calls.append(lambda: procsock.describe_inode(closed_inode))           # SocketNotFound
    for call in calls:
        try:
            call()
        except ProcsockError:
            pass


@pytest.fixture
def targets(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as sock, open(tmp_path / "plain", "w") as plain:
        gone = socket.socket()
        closed_inode = os.fstat(gone.fileno()).st_ino
        gone.close()
        yield sock, closed_inode, plain.fileno()


def test_a_thousand_rounds_close_every_fd_and_keep_memory_flat(targets):
    sock, closed_inode, file_fd = targets
    for i in range(20):  # warm-up: caches (the registry, a decoded diag file) fill once
        one_round(i + 1, sock, closed_inode, file_fd)
    fds = open_fds()
    tracemalloc.start()
    try:
        one_round(0, sock, closed_inode, file_fd)
        gc.collect()  # failures leave reference cycles (exception, traceback, frame) for the collector
        before, _ = tracemalloc.get_traced_memory()
        for i in range(1, 1000):
            one_round(i, sock, closed_inode, file_fd)
            assert open_fds() == fds, "round %d left fds open" % i
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no walker child left unreaped
    assert after - before < 64 * 1024, "memory grew by %d bytes over 1000 rounds" % (after - before)
