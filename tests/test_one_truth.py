"""One truth from every path (issue 13): a process holding a socket in each state it can reach
(tests/stateszoo.py, in a private network namespace) is read through every path: the full
snapshot, snapshot(pid=), snapshot(pid=, backend=each), describe_fd per fd, describe_inode, and
the whole-table backends alone. Each socket gets the same answer from all of them: the same record
(fields a backend cannot carry are None, and only those listed below), or, for a socket in no
kernel table, unresolved with the same reason (describe_* raise SocketNotFound with it).

States no fd can hold are not in the zoo: TIME-WAIT and NEW-SYN-RECV live in the tables as
inode-0 rows only (the zoo's "closed after both FINs" pair leaves one TIME-WAIT row whose sockets
are held in CLOSE, in no table). CLOSING needs both FINs to cross in flight: not produced.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

import procsock
from procsock.model import Family, State
from sockzoo import needs_root

ZOO = os.path.join(os.path.dirname(__file__), "stateszoo.py")
FIELDS = ("kind", "type", "protocol", "state", "local", "remote", "rx_queue", "tx_queue", "uid",
          "peer_inode", "netns", "interface", "cookie")

# What each backend cannot carry, by backend and protocol (field → the states where it cannot,
# None for all): it reports None there, never a guess.
CANNOT_CARRY = {
    ("netlink", "tcp"): {},
    ("netlink", "udp"): {},
    ("netlink", "unix"): {},
    ("procnet", "tcp"): {"cookie": None, "interface": None,
                         "tx_queue": {State.LISTEN}},  # a listener's row has 0, not the backlog limit
    ("procnet", "udp"): {"cookie": None, "interface": None},
    ("procnet", "unix"): {f: None for f in ("rx_queue", "tx_queue", "peer_inode", "uid", "cookie")},
    # SIOCINQ is Recv-Q only before a FIN comes in and after the handshake; UDP has no ioctl for it.
    ("pidfd", "tcp"): {"rx_queue": {State.SYN_RECV, State.CLOSE_WAIT, State.LAST_ACK, State.CLOSING}},
    ("pidfd", "udp"): {"rx_queue": None},
}


def cannot_carry(record, field):
    states = CANNOT_CARRY[(record.backend, _protocol(record))].get(field, ())
    return states is None or record.state in states


# Sockets a path cannot answer, by path, with the reason it must give instead.
BLIND = {
    # /proc/net has no row for a TCP socket bound but neither listening nor connected.
    "procnet": lambda truth: truth[1] == "BOUND_INACTIVE",
}

UNBOUND = "unbound"  # how every reason for a socket in no kernel table starts


@pytest.fixture(scope="module")
def zoo():
    """(pid, {label: (fd, expected)}) of a process holding the zoo, until the module's tests end."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a private network namespace, veth devices)")
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            pytest.skip("needs %s" % tool)
    child = subprocess.Popen(["unshare", "-n", sys.executable, ZOO], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()  # the zoo says when every state is reached, or exits
        if not line:
            child.stdin.close()
            pytest.fail("the zoo did not start: %s" % child.stderr.read())
        sockets = {label: tuple(entry) for label, entry in json.loads(line)["sockets"].items()}
        yield child.pid, sockets
    finally:
        if child.stdin and not child.stdin.closed:
            child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _inode(pid, fd):
    return os.stat("/proc/%d/fd/%d" % (pid, fd)).st_ino


def _protocol(record):
    return "unix" if record.family is Family.UNIX else record.kind.protocol


def _answer(sock):
    return ("socket", sock.record)


def _from_snapshot(snap, pid, inodes):
    """inode → answer for the sockets of `inodes` in a snapshot."""
    view = {s.record.inode: _answer(s) for s in snap.sockets if s.record.inode in inodes}
    assert all(any(o.pid == pid for o in snap_sock.owners) for snap_sock in snap.sockets
               if snap_sock.record.inode in inodes)
    view.update((inode, ("unresolved", u.reason)) for inode, u in snap.unresolved.items() if inode in inodes)
    return view


def _described(call, inode):
    try:
        return _answer(call())
    except procsock.SocketNotFound as exc:
        assert exc.inode == inode
        return ("unresolved", exc.reason)


def paths(pid, held):
    """Every path's view: path name → {inode: ("socket", record) or ("unresolved", reason)}."""
    inodes = {_inode(pid, fd) for fd, _ in held.values()}
    views = {
        "snapshot()": _from_snapshot(procsock.snapshot(), pid, inodes),
        "snapshot(pid=)": _from_snapshot(procsock.snapshot(pid=pid), pid, inodes),
        "describe_fd": {_inode(pid, fd): _described(lambda fd=fd: procsock.describe_fd(pid, fd), _inode(pid, fd))
                        for fd, _ in held.values()},
        "describe_inode": {i: _described(lambda i=i: procsock.describe_inode(i), i) for i in inodes},
    }
    for backend in ("netlink", "procnet", "pidfd"):
        views["snapshot(pid=, backend=%s)" % backend] = _from_snapshot(
            procsock.snapshot(pid=pid, backend=backend), pid, inodes)
    for backend in ("netlink", "procnet"):
        views["snapshot(backend=%s)" % backend] = _from_snapshot(procsock.snapshot(backend=backend), pid, inodes)
    return views


@needs_root
def test_every_path_gives_each_held_socket_the_same_answer(zoo):
    pid, held = zoo
    inodes = {_inode(pid, fd) for fd, _ in held.values()}
    # Queues move while data drains (a LAST-ACK socket probing a zero window sends more when the
    # peer's buffer is collapsed): what the paths read lies between a read of the truth before
    # them and one after them, observed rather than assumed.
    before = _from_snapshot(procsock.snapshot(pid=pid), pid, inodes)
    views = paths(pid, held)
    reference = views["snapshot(pid=)"]
    after = _from_snapshot(procsock.snapshot(pid=pid), pid, inodes)
    problems = []
    for label, (fd, expected) in sorted(held.items()):
        inode = _inode(pid, fd)
        truth = reference.get(inode)
        # The truth itself: the expected state, or unresolved with a reason saying what it is.
        if expected == UNBOUND:
            if truth is None or truth[0] != "unresolved" or not truth[1].startswith(UNBOUND):
                problems.append("%s: want unresolved (unbound...), snapshot(pid=) says %r" % (label, truth))
                continue
        elif truth is None or truth[0] != "socket" or truth[1].state is not State[expected]:
            problems.append("%s: want %s, snapshot(pid=) says %r" % (label, expected, truth))
            continue
        for path, view in views.items():
            problems += _disagreements(label, path, view.get(inode), truth, (before.get(inode), after.get(inode)))
    assert not problems, "\n".join(problems)


def _backend_of(path):
    for name in ("netlink", "procnet", "pidfd"):
        if "backend=%s" % name in path:
            return name
    return None


def _disagreements(label, path, got, truth, around=(None, None)):
    """Why `got` (one path's answer) is not `truth`, as lines; none when it is. A queue may lie
    anywhere between the reads `around` (the same socket read before and after every path)."""
    forced = _backend_of(path)
    if truth[0] == "socket" and forced == "pidfd" and (_protocol(truth[1]) == "unix"
                                                       or truth[1].state in PIDFD_DEFERS):
        # pidfd serves inet sockets its fd tells completely; alone, it says why not the others.
        if got is None or got[0] != "unresolved":
            return ["%s: %s answered %r, wanted unresolved (pidfd cannot tell it)" % (label, path, got)]
        return []
    if truth[0] == "socket" and forced in BLIND and BLIND[forced](("socket", truth[1].state.name)):
        if got is None or got[0] != "unresolved" or "bound-inactive" not in got[1]:
            return ["%s: %s answered %r, wanted unresolved saying why" % (label, path, got)]
        return []
    if got is None:
        return ["%s: %s has no answer" % (label, path)]
    if got[0] != truth[0]:
        return ["%s: %s says %r, snapshot(pid=) says %r" % (label, path, got, truth)]
    if got[0] == "unresolved":
        return [] if got[1] == truth[1] else ["%s: %s gives reason %r, not %r" % (label, path, got[1], truth[1])]
    record, want = got[1], truth[1]
    lines = []
    for field in FIELDS:
        value, wanted = getattr(record, field), getattr(want, field)
        if (value is None and cannot_carry(record, field)) or (wanted is None and cannot_carry(want, field)):
            continue
        if field in ("rx_queue", "tx_queue") and _between(value, wanted, around, field):
            continue
        if value != wanted:
            lines.append("%s: %s (%s) %s=%r, snapshot(pid=) (%s) has %r"
                         % (label, path, record.backend, field, value, want.backend, wanted))
    return lines


def _between(value, wanted, around, field):
    """Whether a queue `value` lies within the reads of the truth before, at and after the paths
    (the queue moved while they read it)."""
    seen = [wanted] + [getattr(read[1], field) for read in around if read is not None and read[0] == "socket"]
    seen = [v for v in seen if v is not None]
    return value is not None and bool(seen) and min(seen) <= value <= max(seen)


# The states whose sockets pidfd defers: its fd has no peer yet, or the socket's table entry is
# the only way to tell it apart (bound-inactive, or in no table at all).
PIDFD_DEFERS = {State.SYN_SENT, State.BOUND_INACTIVE}
