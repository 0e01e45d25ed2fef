"""Hostile unix socket names (terminal escapes, newlines, C1 controls, bidi overrides, NULs in
abstract names, invalid UTF-8, the full 108 bytes of sun_path): byte-exact through every backend
that serves unix sockets, never a raw control byte in the table, exact bytes in JSON."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

import procsock
from procsock.model import UNIX, UnixAddress
from sockzoo import usable_backends_serving

SUN_PATH_MAX = 108
HOSTILE = [
    b"\x1b]0;owned\x07title",      # OSC: sets the terminal title
    b"\x1b[2J\x1b[Hclear",         # clears the screen
    b"new\nline\rreturn",
    b"c1 \xc2\x9b31m csi",          # U+009B, the one-character CSI
    b"bidi \xe2\x80\xaegnp.exe",    # U+202E right-to-left override
    b"del \x7f and bad utf-8 \xc3\x28 \xff",
]
# Control bytes, C1 controls (as UTF-8), line/paragraph separators and bidi controls.
UNSAFE = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]")


@pytest.fixture(scope="module")
def hostile_sockets():
    """(name, socket) for each hostile name as a path and as an abstract name, plus names as long
    as they go: a path of 107 bytes (Python keeps room for the NUL) and an abstract name of the
    full 108 bytes of sun_path, NULs inside. Abstract names are one namespace for every process of
    the network namespace: each carries this process's pid, so that another run of this test at the
    same moment (two suites on one host) binds names of its own."""
    tmpdir = tempfile.mkdtemp(prefix="ps", dir="/tmp")
    base = os.fsencode(tmpdir) + b"/"
    mine = b"%d " % os.getpid()
    names = [base + n for n in HOSTILE] + [b"\0" + mine + n for n in HOSTILE]
    names.append(base + b"L" * (SUN_PATH_MAX - 1 - len(base)))
    names.append((b"\0max\0abstract\x1b[31m" + mine + b"\0" * 8).ljust(SUN_PATH_MAX, b"z"))
    held = []
    try:
        for name in names:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(name)
            held.append((name, sock))
        yield held
    finally:
        for _, sock in held:
            sock.close()
        shutil.rmtree(tmpdir)


def test_the_names_are_what_the_kernel_holds(hostile_sockets):
    for name, sock in hostile_sockets:
        assert sock.getsockname() in (name, os.fsdecode(name))
    assert max(len(name) for name, _ in hostile_sockets) == SUN_PATH_MAX


@pytest.mark.procsock_kinds("unix")
def test_describe_inode_returns_each_name_byte_exact(hostile_sockets, procsock_backend):
    for name, sock in hostile_sockets:
        if procsock_backend.name == "procnet" and b"\0" in name[1:]:
            continue  # /proc/net/unix prints every NUL as '@' (documented): not representable
        found = procsock.describe_inode(os.fstat(sock.fileno()).st_ino, backend=procsock_backend.name)
        assert found.record.local.name == name
        assert [(o.pid, o.fd) for o in found.owners] == [(os.getpid(), sock.fileno())]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "procsock", *args], capture_output=True, check=True).stdout


def test_table_never_emits_a_raw_control_byte(hostile_sockets):
    table = cli("-x", "--pid", str(os.getpid()))
    for line in table.split(b"\n"):
        assert not UNSAFE.search(line), line
    tokens = {token for line in table.splitlines() for token in line.split()}
    assert {b"%d" % os.fstat(s.fileno()).st_ino for _, s in hostile_sockets} <= tokens  # every one listed


def test_json_carries_the_exact_bytes_and_only_escaped_text(hostile_sockets):
    raw = cli("--json", "-x", "--pid", str(os.getpid()))
    by_inode = {s["inode"]: s["local"] for s in json.loads(raw)["sockets"]}
    for name, sock in hostile_sockets:
        local = by_inode[os.fstat(sock.fileno()).st_ino]
        assert bytes.fromhex(local["name_hex"]) == name
        assert not UNSAFE.search(local["name"].encode("utf-8", "surrogatepass"))


def test_a_name_forging_the_row_of_a_real_socket_is_not_believed():
    """/proc/net/unix prints names raw: a name holding a newline can forge a whole row. A forged
    row naming a real socket's inode disagrees with that socket's own row: both are left out and
    reported, never shown under the forger's name; netlink still reports the socket exactly."""
    with socket.socket(socket.AF_UNIX) as victim, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as forger:
        victim.bind(b"\0procsock-victim-%d" % os.getpid())
        victim.listen()
        victim_inode = os.fstat(victim.fileno()).st_ino
        forged_row = b"\n0000000000000000: 00000002 00000000 00000000 0002 01 %d /run/fake.sock"
        forger.bind(b"\0procsock-forger-%d" % os.getpid() + forged_row % victim_inode)
        for snap in (procsock.snapshot(backend="procnet", protocol="unix"),
                     procsock.snapshot(pid=os.getpid(), backend="procnet")):
            assert victim_inode not in {s.record.inode for s in snap.sockets}
            assert UnixAddress(b"/run/fake.sock") not in {s.record.local for s in snap.sockets}
            assert any("socket:[%d] on rows that disagree" % victim_inode in line for line in snap.skipped)
        if "netlink" in usable_backends_serving(UNIX):
            exact = procsock.describe_inode(victim_inode, backend="netlink").record.local
            assert exact == UnixAddress(b"\0procsock-victim-%d" % os.getpid())
