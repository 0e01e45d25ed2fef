"""The background fd walk works whatever the caller does with SIGCHLD and its children: ignored
(the kernel reaps), reaped by the caller's own handler, a handler that raises, a walker killed by
a signal. The result is the one a walk here gives; no zombie, no fd, no child of the caller's reaped."""

import os
import signal

import pytest

import procsock
from procsock.fdscan import scan_all_in_background, scan_fds


def children():
    """Pids of this process's children, zombies included (from /proc/*/stat: field 4 is the ppid)."""
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                found.append(int(name))
    return found


@pytest.fixture
def held(zoo):
    """The zoo's sockets, and a forked child holding them too (the walker must find another process)."""
    read_end, write_end = os.pipe()
    holder = os.fork()
    if holder == 0:
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    assert os.listdir("/proc/self/task") == [str(os.getpid())], "the background walk needs a one-thread process"
    yield zoo, holder
    os.close(write_end)
    os.waitpid(holder, 0)


def same_as_here(scan, zoo, holder):
    here = scan_fds("/proc")
    for item in zoo.expected:
        assert scan.owners[item.inode] == here.owners[item.inode], item.label
        assert {o.pid for o in scan.owners[item.inode]} == {os.getpid(), holder}


def nothing_left(fds_before, children_before):
    assert set(os.listdir("/proc/self/fd")) == fds_before, "an fd of the walk left open"
    assert set(children()) == children_before, "a walker (or its zombie) left behind"


@pytest.fixture
def sigchld():
    """Sets a SIGCHLD disposition for the test and restores the old one."""
    old = signal.getsignal(signal.SIGCHLD)
    yield lambda handler: signal.signal(signal.SIGCHLD, handler)
    signal.signal(signal.SIGCHLD, old)


def test_sigchld_ignored(held, sigchld):
    zoo, holder = held
    sigchld(signal.SIG_IGN)
    fds, kids = set(os.listdir("/proc/self/fd")), set(children())
    for _ in range(10):
        same_as_here(scan_all_in_background("/proc")(), zoo, holder)
        nothing_left(fds, kids)
    snap = procsock.snapshot(protocol="tcp")
    assert {s.record.inode for s in snap.sockets} >= {i.inode for i in zoo.expected if i.kind.startswith("tcp")}
    nothing_left(fds, kids)


def test_a_caller_that_reaps_every_child_in_its_handler(held, sigchld):
    zoo, holder = held
    reaped = []

    def reap(signum, frame):
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reaped.append(pid)

    sigchld(reap)
    fds, kids = set(os.listdir("/proc/self/fd")), set(children())
    for _ in range(20):
        same_as_here(scan_all_in_background("/proc")(), zoo, holder)
        nothing_left(fds, kids)
    assert holder not in reaped


def test_a_handler_that_raises_leaves_nothing_behind(held, sigchld):
    zoo, holder = held

    class Raised(Exception):
        pass

    def raising(signum, frame):
        raise Raised()

    sigchld(raising)
    fds, kids = set(os.listdir("/proc/self/fd")), set(children())
    outcomes = set()
    for _ in range(10):
        try:
            scan = scan_all_in_background("/proc")()
        except Raised:  # the caller's exception reaches the caller, once the walker is reaped
            outcomes.add("raised")
        else:
            outcomes.add("scanned")
            sigchld(signal.SIG_DFL)  # the comparison below forks no child, but be sure
            same_as_here(scan, zoo, holder)
            sigchld(raising)
        nothing_left(fds, kids)
    assert "raised" in outcomes


def test_a_walker_killed_by_a_signal_is_replaced_by_a_walk_here(held):
    zoo, holder = held
    fds, kids = set(os.listdir("/proc/self/fd")), set(children())
    result = scan_all_in_background("/proc")
    (walker,) = set(children()) - kids
    os.kill(walker, signal.SIGKILL)
    same_as_here(result(), zoo, holder)
    nothing_left(fds, kids)


def test_a_child_of_the_caller_that_exits_meanwhile_is_not_reaped(held):
    zoo, holder = held
    mine = os.fork()
    if mine == 0:
        os._exit(7)
    os.waitid(os.P_PID, mine, os.WEXITED | os.WNOWAIT)  # exited (its copies of our fds closed), not reaped
    try:
        same_as_here(scan_all_in_background("/proc")(), zoo, holder)
    finally:
        pid, status = os.waitpid(mine, 0)  # still ours to reap, with its status
    assert pid == mine and os.waitstatus_to_exitcode(status) == 7
