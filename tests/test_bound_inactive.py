"""TCP sockets bound but neither listening nor connected (issue 13, item 2).

Since Linux 6.5 sock_diag dumps them (state bit 13) and returns them as CLOSE; procsock records
them as BOUND-INACTIVE, keeps them out of -l, selects them with -B / state "bound-inactive", and
explains why /proc/net (which has no row for them) and pidfd (which cannot tell them from a socket
whose connect failed) do not list them. No root needed: the sockets are this process's own.
"""

import os
import socket
import subprocess
import sys

import pytest

import procsock
from procsock.compare import compare_backends
from procsock.model import Source, State
from procsock.render import comparison_lines
from procsock.resolver import Query

KERNEL = tuple(int(part) for part in os.uname().release.split(".")[:2] if part.isdigit())
needs_dump = pytest.mark.skipif(KERNEL < (6, 5), reason="sock_diag dumps bound-inactive sockets since Linux 6.5")


@pytest.fixture
def bound():
    """A TCP socket bound to a loopback port and nothing else, and its inode."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock, os.fstat(sock.fileno()).st_ino


def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "procsock", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@needs_dump
def test_every_path_lists_it_as_bound_inactive(bound):
    sock, inode = bound
    pid = os.getpid()
    records = [
        next(s.record for s in procsock.snapshot(pid=pid).sockets if s.record.inode == inode),
        next(s.record for s in procsock.snapshot().sockets if s.record.inode == inode),
        procsock.describe_fd(pid, sock.fileno()).record,
        procsock.describe_inode(inode).record,
    ]
    assert {(r.state, r.backend, r.local.port, r.remote.port) for r in records} == {
        (State.BOUND_INACTIVE, "netlink", sock.getsockname()[1], 0)
    }
    assert records[0].state.label == "BOUND-INACTIVE"


@needs_dump
def test_state_filter_selects_it_and_listening_leaves_it_out(bound):
    sock, inode = bound
    pid = os.getpid()
    for name in ("bound-inactive", "BOUND_INACTIVE", State.BOUND_INACTIVE):
        assert inode in {s.record.inode for s in procsock.snapshot(pid=pid, state=name).sockets}
    assert inode not in {s.record.inode for s in procsock.snapshot(pid=pid, state="listen").sockets}
    assert inode not in {s.record.inode for s in procsock.snapshot(pid=pid, state="unconn").sockets}
    port = ":%d " % sock.getsockname()[1]
    for flag in ("-B", "--bound-inactive"):
        (line,) = [row for row in _cli(flag, "-H", "--pid", str(pid)).splitlines() if port in row]
        assert line.split()[:2] == ["tcp", "BOUND-INACTIVE"] and str(inode) in line.split()
    assert port not in _cli("-l", "-H", "--pid", str(pid))


def test_procnet_cannot_list_it_and_says_why(bound):
    sock, inode = bound
    snap = procsock.snapshot(pid=os.getpid(), backend="procnet")
    assert inode not in {s.record.inode for s in snap.sockets}
    reason = snap.unresolved[inode].reason
    assert "bound-inactive" in reason and "local port %d" % sock.getsockname()[1] in reason


@needs_dump
def test_compare_explains_it_as_a_known_cause(bound):
    _, inode = bound
    query = Query(kinds=frozenset({"tcp"}), pid=os.getpid())
    for a, b, cause in (("netlink", "procnet", "only sock_diag"), ("pidfd", "netlink", "pidfd deferred it")):
        result = compare_backends(procsock.api.default_registry(), Source.live(), a, b, query)
        listed = [r for r in result.only_a + result.only_b if r.inode == inode]
        assert listed and listed[0].state is State.BOUND_INACTIVE
        assert cause in dict(result.explained_only)[listed[0]]
        assert listed[0] not in result.unexplained_only
        (line,) = [text for text in comparison_lines(result) if " inode %d " % inode in text + " "]
        assert "(expected: " in line and cause in line
