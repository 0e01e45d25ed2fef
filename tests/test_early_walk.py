"""The `procsock` process starts the fd walk before its imports; a snapshot moments later uses it."""

import os
import socket

import pytest

import procsock
from procsock import __main__ as entry
from procsock import fdscan
from procsock.cli import COMMANDS, DEFAULT


@pytest.mark.parametrize("argv", [[], ["-t"], ["list"], ["--json"], ["-tl", "--port", "80"], ["--kind", "tcp", "-4"],
                                  ["capture", "out.tar.gz"]])
def test_a_plain_listing_walks_every_process(argv):
    assert entry.walks_every_process(argv)


@pytest.mark.parametrize("argv", [
    ["--pid", "1"], ["--pid=1"], ["--pi", "1"], ["--proc-root", "/tmp/x"], ["--diag-file", "f"], ["-h"], ["-th"],
    ["--help"], ["--list-backends"], ["--save-diag", "f"], ["--save-diag=f"],
    ["--from", "saved.json"],
] + [[name] for name in COMMANDS if name not in (DEFAULT, "capture")])
def test_other_runs_do_not(argv):
    assert not entry.walks_every_process(argv)


def _walkers():
    """Children of this process running our own command line: forked walkers."""
    mine = open("/proc/self/cmdline", "rb").read()
    found = []
    for name in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                parent = int(f.read().rsplit(b")", 1)[1].split()[1])
            if parent == os.getpid() and open("/proc/%s/cmdline" % name, "rb").read() == mine:
                found.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_snapshot_takes_the_early_walk_and_sees_sockets_opened_since(zoo):
    fdscan.start_early_walk("/proc")
    later = socket.create_server(("127.0.0.1", 0))  # opened after the walk began: ours are walked last
    try:
        snap = procsock.snapshot()
        assert "walk" not in fdscan._early_walk
        owned = {s.record.inode: s.owners for s in snap.sockets}
        for sock in [later] + [want.sock for want in zoo.expected if want.kind == "tcp"]:
            assert [o.pid for o in owned[os.fstat(sock.fileno()).st_ino]] == [os.getpid()]
    finally:
        later.close()
    assert _walkers() == []


@pytest.mark.parametrize("why", ["stale", "another root"])
def test_an_early_walk_not_fit_for_the_snapshot_is_stopped_and_a_new_one_taken(zoo, monkeypatch, why):
    fdscan.start_early_walk("/proc" if why == "stale" else "/proc/")
    if why == "stale":
        monkeypatch.setattr(fdscan, "EARLY_WALK_MAX_AGE", -1.0)
    snap = procsock.snapshot()
    assert "walk" not in fdscan._early_walk and _walkers() == []
    tcp = {want.inode for want in zoo.expected if want.kind == "tcp"}
    assert tcp <= {s.record.inode for s in snap.sockets if s.owners}


def test_an_early_walk_never_claimed_is_stopped_and_reaped():
    fdscan.start_early_walk("/proc")
    assert _walkers() or "walk" in fdscan._early_walk  # a walker runs (or one CPU: it walks here later)
    fdscan._discard_early_walk()
    assert "walk" not in fdscan._early_walk and _walkers() == []


def test_no_fd_left_for_the_early_walk_is_the_command_s_one_line_error():
    import resource
    import subprocess
    import sys

    def few_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (6, 6))

    done = subprocess.run([sys.executable, "-m", "procsock"], preexec_fn=few_fds, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr
    assert done.returncode == 1 and done.stderr.startswith("procsock: ") and done.stderr.count("\n") == 1, done.stderr
