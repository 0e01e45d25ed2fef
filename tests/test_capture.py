"""A captured /proc tree (tests/fixtures/capture, taken from a real host) read through --proc-root.

The expectations are written out from the capture's own files: ports are the hex in net/*, owners
the fd symlinks under 3925/fd.
"""

import json
import os
import subprocess
import sys

import pytest

import procsock
from procsock.model import State

CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")

# (inode, kind, state, local, remote, fds of pid 3925)
EXPECTED = [
    (7148, "tcp", "LISTEN", "127.0.0.1:39809", "0.0.0.0:*", [3, 14]),
    (0, "tcp", "TIME_WAIT", "127.0.0.1:40584", "127.0.0.1:38821", []),
    (7149, "tcp", "ESTABLISHED", "127.0.0.1:55178", "127.0.0.1:39809", [4]),
    (7150, "tcp", "ESTABLISHED", "127.0.0.1:39809", "127.0.0.1:55178", [5]),
    (7151, "tcp6", "LISTEN", "[::]:49433", "[::]:*", [6]),
    (7152, "udp", "CLOSE", "0.0.0.0:41934", "0.0.0.0:*", [7]),
    (7153, "udp6", "ESTABLISHED", "[::1]:49409", "[::1]:53", [8]),
    (7154, "unix", "LISTEN", "/tmp/cap/ctl sock", None, [9]),
    (7157, "unix", "ESTABLISHED", "*", None, [13]),
    (7156, "unix", "ESTABLISHED", "*", None, [12]),
    (7155, "unix", "CLOSE", "@capd-abstract", None, [11]),
]


def as_rows(sockets):
    return sorted(
        (
            s.record.inode,
            s.record.kind.name,
            s.record.state.name,
            str(s.record.local),
            None if s.record.remote is None else str(s.record.remote),
            sorted(o.fd for o in s.owners),
        )
        for s in sockets
    )


def test_capture_lists_exactly_its_sockets_and_owners():
    snap = procsock.snapshot(proc_root=CAPTURE)
    assert as_rows(snap.sockets) == sorted(EXPECTED)
    owners = [o for s in snap.sockets for o in s.owners]
    assert {(o.pid, o.name, o.uid) for o in owners} == {(3925, "capd", 0)}
    assert set(snap.answered_by.values()) == {"procnet"}
    # Files the capture does not have are skipped with a note, never fatal.
    assert any(note.text.startswith("udplite: no backend could read it") for note in snap.notes)


def test_capture_never_asks_this_hosts_kernel():
    snap = procsock.snapshot(proc_root=CAPTURE)
    assert all(s.record.backend == "procnet" for s in snap.sockets)
    with pytest.raises(procsock.BackendUnavailable):
        procsock.snapshot(proc_root=CAPTURE, backend="netlink")


def test_capture_filters_and_describe():
    listening = procsock.snapshot(proc_root=CAPTURE, state=State.LISTEN)
    assert {s.record.inode for s in listening.sockets} == {7148, 7151, 7154}
    sock = procsock.describe_fd(3925, 14, proc_root=CAPTURE)
    assert sock.record.inode == 7148 and [o.fd for o in sock.owners] == [3, 14]
    assert procsock.describe_inode(7156, proc_root=CAPTURE).owners[0].fd == 12
    with pytest.raises(procsock.NotASocket):
        procsock.describe_fd(3925, 0, proc_root=CAPTURE)


def test_cli_json_of_capture():
    proc = subprocess.run(
        [sys.executable, "-m", "procsock", "--proc-root", CAPTURE, "--json"],
        capture_output=True, text=True, check=True,
    )
    doc = json.loads(proc.stdout)
    rows = sorted(
        (s["inode"], s["kind"], s["state"], sorted(o["fd"] for o in s["owners"])) for s in doc["sockets"]
    )
    assert rows == sorted((e[0], e[1], e[2], e[5]) for e in EXPECTED)
    unix = {s["inode"]: s for s in doc["sockets"] if s["kind"] == "unix"}
    assert bytes.fromhex(unix[7154]["local"]["name_hex"]) == b"/tmp/cap/ctl sock"
    assert bytes.fromhex(unix[7155]["local"]["name_hex"]) == b"\0capd-abstract"
    assert "udplite" in proc.stderr  # the missing-file note
