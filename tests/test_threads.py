"""Threads: a thread id names that thread's fd table (snapshot(pid=TID), describe_fd(TID, fd), --pid
TID), and a socket held only in a thread's private fd table (unshare(CLONE_FILES)) is owned by
that thread: Owner(pid=process, tid=thread). Real threads in a child process."""

import json
import subprocess
import sys
import textwrap

import pytest

import procsock
from sockzoo import needs_root

CLONE_FILES = 0x400

# A process with two extra threads: "shared" shares the process's fd table, "private" unshares
# its own and then opens a TCP listener there. The main thread holds a TCP listener too. Prints
# one JSON line, then waits for stdin to close.
HOLDER = textwrap.dedent("""
    import ctypes, json, os, socket, sys, threading
    libc = ctypes.CDLL(None, use_errno=True)
    ready, done = threading.Barrier(3), threading.Event()
    info = {"pid": os.getpid()}
    main = socket.create_server(("127.0.0.1", 0))
    info["main"] = [main.fileno(), os.fstat(main.fileno()).st_ino]

    def shared():
        info["shared_tid"] = threading.get_native_id()
        ready.wait()
        done.wait()

    def private():
        info["private_tid"] = threading.get_native_id()
        if libc.unshare(%d) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_FILES)")
        own = socket.create_server(("127.0.0.1", 0))
        os.close(main.fileno())  # gone from this table only
        info["private"] = [own.fileno(), os.fstat(own.fileno()).st_ino]
        ready.wait()
        done.wait()
        own.close()

    threads = [threading.Thread(target=shared), threading.Thread(target=private)]
    for t in threads:
        t.start()
    ready.wait()
    print(json.dumps(info), flush=True)
    sys.stdin.read()
    done.set()
    for t in threads:
        t.join()
""" % CLONE_FILES)


@pytest.fixture(scope="module")
def holder():
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        info = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def owners_of(sockets, inode):
    return {(o.pid, o.fd, o.tid) for s in sockets if s.record.inode == inode for o in s.owners}


def test_a_full_snapshot_names_the_thread_holding_a_socket_in_its_own_fd_table(holder):
    snap = procsock.snapshot(protocol="tcp")
    pid, (fd, inode), (main_fd, main_inode) = holder["pid"], holder["private"], holder["main"]
    assert owners_of(snap.sockets, inode) == {(pid, fd, holder["private_tid"])}
    assert owners_of(snap.sockets, main_inode) == {(pid, main_fd, None)}  # the shared table, once
    assert inode not in snap.unresolved and main_inode not in snap.unresolved


def test_snapshot_of_the_process_includes_its_threads_private_tables(holder):
    pid, (fd, inode), (main_fd, main_inode) = holder["pid"], holder["private"], holder["main"]
    snap = procsock.snapshot(pid=pid)
    assert owners_of(snap.sockets, inode) == {(pid, fd, holder["private_tid"])}
    assert owners_of(snap.sockets, main_inode) == {(pid, main_fd, None)}
    assert not snap.notes, snap.notes


def test_snapshot_of_a_thread_lists_its_fd_table(holder):
    pid, (fd, inode), (main_fd, main_inode) = holder["pid"], holder["private"], holder["main"]
    private = procsock.snapshot(pid=holder["private_tid"])
    assert {s.record.inode for s in private.sockets} == {inode}  # main's listener is closed there
    assert owners_of(private.sockets, inode) == {(pid, fd, holder["private_tid"])}
    shared = procsock.snapshot(pid=holder["shared_tid"])
    assert {s.record.inode for s in shared.sockets} == {main_inode}
    assert owners_of(shared.sockets, main_inode) == {(pid, main_fd, None)}  # as the full walk names it
    assert not private.notes and not shared.notes, (private.notes, shared.notes)


@pytest.mark.parametrize("backend", [None, "netlink", "procnet"])
def test_describe_fd_of_a_thread(holder, backend):
    pid, (fd, inode), (main_fd, main_inode) = holder["pid"], holder["private"], holder["main"]
    sock = procsock.describe_fd(holder["private_tid"], fd, backend=backend)
    assert sock.record.inode == inode and sock.record.state.name == "LISTEN"
    assert {(o.pid, o.fd, o.tid) for o in sock.owners} == {(pid, fd, holder["private_tid"])}
    sock = procsock.describe_fd(holder["shared_tid"], main_fd, backend=backend)
    assert sock.record.inode == main_inode
    assert {(o.pid, o.fd, o.tid) for o in sock.owners} == {(pid, main_fd, None)}


@needs_root  # pidfd_getfd on another process: ptrace rights
def test_pidfd_reads_a_socket_in_a_threads_private_table(holder):
    pid, (fd, inode) = holder["pid"], holder["private"]
    sock = procsock.describe_fd(holder["private_tid"], fd, backend="pidfd")
    assert sock.record.inode == inode and sock.record.backend == "pidfd"
    snap = procsock.snapshot(pid=pid, backend="pidfd")
    assert {s.record.inode for s in snap.sockets} == {inode, holder["main"][1]} and not snap.notes


def test_the_command_with_a_thread_id(holder):
    pid, (fd, inode) = holder["pid"], holder["private"]
    proc = subprocess.run([sys.executable, "-m", "procsock", "-t", "-H", "--pid", str(holder["private_tid"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.split()[-2] == str(inode)
    assert line.split()[-1].endswith(",%d,%d,tid=%d" % (pid, fd, holder["private_tid"]))
    proc = subprocess.run([sys.executable, "-m", "procsock", "-t", "-H", "--pid", str(holder["shared_tid"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.split()[-1].endswith(",%d,%d" % (pid, holder["main"][0]))
