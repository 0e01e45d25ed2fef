"""Snapshots stay right while the host changes under them: about 1,000 sockets a second opened and
closed, children forked and gone. (Interrupted dumps: tests/test_netlink_codec.py.)

The churners (tests/churner.py) log every socket they ever held, so each owner a snapshot names can
be checked against what that process really held.
"""

import collections
import os
import subprocess
import sys
import time

import pytest

import procsock

CHURNER = os.path.join(os.path.dirname(__file__), "churner.py")
CHURNERS = 4
RATE = 250.0  # sockets opened and closed per second by each churner
SECONDS = 6.0  # at least; then until every mode ran 3 times and a forked child was seen
MODES = ("netlink", "procnet", "pid", "describe")
GIVE_UP = 300.0  # a host where that takes longer is not one to test on: the test fails


def read_log(path):
    """(pid → set of (fd, inode, kind) it ever held, stable (fd, inode, kind) set, children, count)."""
    ever, stable, children, count = set(), set(), [], None
    with open(path) as f:
        for line in f:
            tag, *fields = line.split()
            if tag in "SO":
                entry = (int(fields[0]), int(fields[1]), fields[2])
                ever.add(entry)
                if tag == "S":
                    stable.add(entry)
            elif tag == "F":
                children.append(int(fields[0]))
            else:
                count = int(fields[0])
    return ever, stable, children, count


@pytest.fixture
def churners(tmp_path):
    procs = []
    try:
        for i in range(CHURNERS):
            log = str(tmp_path / ("churn%d.log" % i))
            proc = subprocess.Popen([sys.executable, CHURNER, log, str(RATE)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, bufsize=1)
            procs.append((proc, log))
            assert proc.stdout.readline() == "ready\n"
        yield procs
    finally:
        for proc, _ in procs:
            proc.stdin.close()
            proc.wait(timeout=30)


def check_snapshot(snap, seen_owners):
    inodes = [s.record.inode for s in snap.sockets if s.record.inode]
    assert len(inodes) == len(set(inodes)), "a socket listed twice"
    fds = collections.Counter()
    for sock in snap.sockets:
        for owner in sock.owners:
            fds[(owner.pid, owner.fd)] += 1
            seen_owners.append((owner.pid, owner.fd, sock.record.inode, sock.record.kind.name))
    assert not [key for key, n in fds.items() if n > 1], "one fd named as the owner of two sockets"


def test_snapshots_stay_right_while_processes_churn(churners):
    stable = {}
    for proc, log in churners:
        stable[proc.pid] = read_log(log)[1]
    seen_owners, modes = [], collections.Counter()
    pids = sorted(stable)
    begin = time.monotonic()
    turn = 0
    while time.monotonic() < begin + SECONDS or not (min(modes[m] for m in MODES) >= 3 and forked_child_seen(
            churners, pids, seen_owners)):
        assert time.monotonic() < begin + GIVE_UP, "no forked child seen in %d s (modes %s)" % (GIVE_UP, modes)
        mode = MODES[turn % 4]
        turn += 1
        modes[mode] += 1
        pid = pids[turn % len(pids)]
        if mode == "describe":
            fd, inode, kind = sorted(stable[pid])[turn % len(stable[pid])]
            sock = procsock.describe_fd(pid, fd)
            assert (sock.record.inode, sock.record.kind.name) == (inode, kind)
            assert (pid, fd) in {(o.pid, o.fd) for o in sock.owners}
            continue
        if mode == "pid":
            snap = procsock.snapshot(pid=pid)
        else:
            started = time.monotonic()
            snap = procsock.snapshot(backend=mode)
            for proc, _ in churners:  # children born before `started` were walked: they may go
                proc.stdin.write("W %r\n" % started)
        check_snapshot(snap, seen_owners)
        found = {s.record.inode: s for s in snap.sockets}
        for holder in ([pid] if mode == "pid" else pids):
            for fd, inode, kind in stable[holder]:
                sock = found.get(inode)
                assert sock is not None and sock.record.kind.name == kind, (mode, holder, fd, kind)
                assert (holder, fd) in {(o.pid, o.fd) for o in sock.owners}, (mode, holder, fd)
    held = {}
    family = {}
    opened = 0
    for proc, log in churners:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        ever, _, children, count = read_log(log)
        opened += count
        held[proc.pid] = ever
        family.update({child: proc.pid for child in children})
        family[proc.pid] = proc.pid
    wrong = [(pid, fd, inode, kind) for pid, fd, inode, kind in seen_owners
             if pid in family and (fd, inode, kind) not in held[family[pid]]]
    assert not wrong, "owners that never held that socket: %s" % wrong[:5]
    assert forked_child_seen(churners, pids, seen_owners)
    assert opened >= CHURNERS * 60, "the churners did not churn"  # ten batches each, however busy the host


def forked_child_seen(churners, pids, seen_owners):
    """Whether a snapshot named a child a churner forked (the children churners logged so far)."""
    children = {child for _, log in churners for child in read_log(log)[2]}
    return bool(children & {pid for pid, *_ in seen_owners})

