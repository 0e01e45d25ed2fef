"""Hostile captured trees and saved files (FIFOs, devices, links out of the tree, huge sparse files,
malformed numbers) and hostile strings from files and plugins: each is a one-line error or a counted
skip, never a hang, a leak of a file's content, a live socket passed off as captured, or a raw
control byte on the terminal."""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys

import pytest

import procsock
from procsock import api, cli, hookimpl
from procsock.backends import Registry
from procsock.errors import InputError, NotASocket
from procsock.fdscan import netns_inode, scan_fds
from procsock.inputs import decimal, hexadecimal, read_file, read_named_file
from procsock.model import (
    TCP, BackendInfo, Collected, Family, InetAddress, SocketKind, SocketRecord, SockType, Source, State,
)
from procsock_plugins import netlink
from procsock_plugins.procnet import parse

CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")
CAPTURED_INODES = {0, 7148, 7149, 7150, 7151, 7152, 7153, 7154, 7155, 7156, 7157}
SAFETY_NET = 120  # seconds: only so a regression fails instead of hanging the suite
MARKER = "s3cret-marker-4f1d9c"
HUGE = 8 << 30
# A raw control byte (TAB and LF aside: the -i table indents its detail lines), DEL, a C1 control
# as UTF-8, a line or paragraph separator, a bidi control.
UNSAFE = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]")
HOSTILE_TEXT = "\x1b]0;owned\x07 \x1b[31m red \x9b1m c1 \u202egnp.exe del\x7f \ttab \nnewline"


def assert_clean(data: bytes, allow_tab: bool = False) -> None:
    found = UNSAFE.search(data) or (None if allow_tab else re.search(rb"\t", data))
    assert found is None, data


@pytest.fixture
def tree(tmp_path):
    """A copy of the real captured tree (fd links kept as links) to damage."""
    root = tmp_path / "capture"
    shutil.copytree(CAPTURE, root, symlinks=True)
    return root


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret"
    path.write_text("root:%s:19000:0:99999:7:::\n" % MARKER)
    return path


@pytest.fixture
def live_listener():
    """A live TCP listener of this host, which no captured tree may list."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield os.fstat(sock.fileno()).st_ino


def run_cli(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "procsock", *map(str, args)], capture_output=True, timeout=SAFETY_NET
    )
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert_clean(proc.stdout, allow_tab=True)
    assert_clean(proc.stderr)
    return proc


def json_of(root, *args):
    proc = run_cli("--proc-root", root, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr.decode()


def inodes_of(document):
    return {s["inode"] for s in document["sockets"]}


def owners_of(document):
    return {(o["pid"], o["fd"], o["process"], o["uid"]) for s in document["sockets"] for o in s["owners"]}


def tcp_note(stderr):
    (line,) = [line for line in stderr.splitlines() if line.startswith("procsock: tcp: no backend")]
    return line


# -- files that are not regular files, or not in the tree ------------------------------------------


def test_a_fifo_as_a_table_is_refused_not_waited_on(tree):
    os.remove(tree / "net" / "tcp")
    os.mkfifo(tree / "net" / "tcp")
    document, stderr = json_of(tree)
    assert "(not a regular file)" in tcp_note(stderr)
    assert inodes_of(document) == CAPTURED_INODES - {0, 7148, 7149, 7150}  # the other tables are read


@pytest.mark.parametrize("name", ["comm", "status"])
def test_a_fifo_as_comm_or_status_leaves_the_owner_unnamed(tree, name):
    os.remove(tree / "3925" / name)
    os.mkfifo(tree / "3925" / name)
    document, _ = json_of(tree)
    assert inodes_of(document) == CAPTURED_INODES
    expected = ("", 0) if name == "comm" else ("capd", None)
    assert {(o[2], o[3]) for o in owners_of(document)} == {expected}


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_a_device_as_a_table_is_refused(tree):
    os.remove(tree / "net" / "tcp")
    os.mknod(tree / "net" / "tcp", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # what /dev/zero is
    _, stderr = json_of(tree)
    assert "(not a regular file)" in tcp_note(stderr)


def test_a_link_to_dev_zero_is_not_followed(tree):
    os.remove(tree / "net" / "tcp")
    os.symlink("/dev/zero", tree / "net" / "tcp")
    _, stderr = json_of(tree)
    assert "(a symbolic link (links in a captured tree are not followed))" in tcp_note(stderr)


def test_a_link_to_a_secret_never_shows_its_content(tree, secret):
    os.remove(tree / "net" / "unix")
    os.symlink(secret, tree / "net" / "unix")
    proc = run_cli("--proc-root", tree)
    assert proc.returncode == 0
    assert b"unix: no backend could read it" in proc.stderr and b"symbolic link" in proc.stderr
    assert MARKER.encode() not in proc.stdout + proc.stderr


def test_a_copied_secret_as_a_table_is_a_parse_error_that_does_not_quote_it(tree, secret):
    shutil.copy(secret, tree / "net" / "unix")
    proc = run_cli("--proc-root", tree, "-x")
    assert proc.returncode == 1
    assert proc.stderr.count(b"\n") == 1
    assert b"not a /proc/net/unix table (header does not match)" in proc.stderr
    assert MARKER.encode() not in proc.stdout + proc.stderr


def test_a_link_to_the_live_table_lists_no_live_socket(tree, live_listener):
    os.remove(tree / "net" / "tcp")
    os.symlink("/proc/net/tcp", tree / "net" / "tcp")
    document, stderr = json_of(tree)
    assert live_listener not in inodes_of(document)
    assert inodes_of(document) == CAPTURED_INODES - {0, 7148, 7149, 7150}
    assert "symbolic link" in tcp_note(stderr)


def test_a_linked_net_directory_lists_no_live_socket(tree, live_listener):
    shutil.rmtree(tree / "net")
    os.symlink("/proc/net", tree / "net")
    proc = run_cli("--proc-root", tree, "--json")
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr.startswith(b"procsock: no socket table could be read: ") and proc.stderr.count(b"\n") == 1
    assert b"symbolic link" in proc.stderr and str(live_listener).encode() not in proc.stderr


def test_a_linked_process_directory_is_not_walked(tree, live_listener):
    os.symlink("/proc/%d" % os.getpid(), tree / "4242")  # a live process, our own, posing as a captured one
    os.symlink("/proc/%d/fd" % os.getpid(), tree / "3925" / "fd2")  # not a pid: never looked at
    document, stderr = json_of(tree)
    assert {o[0] for o in owners_of(document)} == {3925}
    assert live_listener not in inodes_of(document)
    assert not any(u["inode"] == live_listener for u in document["unresolved"])
    with pytest.raises(procsock.NoSuchProcess):
        procsock.describe_fd(4242, 0, proc_root=str(tree))


def test_a_linked_fd_directory_is_not_walked(tree, live_listener):
    shutil.rmtree(tree / "3925" / "fd")
    os.symlink("/proc/%d/fd" % os.getpid(), tree / "3925" / "fd")
    document, _ = json_of(tree)
    assert owners_of(document) == set()
    assert not any(u["inode"] == live_listener for u in document["unresolved"])


def test_an_oversized_sparse_table_is_refused_and_the_bound_can_change(tree):
    with open(tree / "net" / "tcp", "r+b") as f:
        f.truncate(HUGE)
    _, stderr = json_of(tree)
    assert "larger than %d bytes" % procsock.model.DEFAULT_MAX_INPUT_BYTES in tcp_note(stderr)
    proc = run_cli("--proc-root", tree, "--max-input-bytes", 100, "-x")  # net/unix is 325 bytes
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1
    assert b"unix: no backend could read it" in proc.stderr and b"larger than 100 bytes" in proc.stderr


def test_an_oversized_sparse_diag_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(HUGE)
    proc = run_cli("--diag-file", path)
    assert proc.returncode == 1 and proc.stdout == b""
    limit = b"larger than %d bytes" % procsock.model.DEFAULT_MAX_INPUT_BYTES
    assert proc.stderr.count(b"\n") == 1 and limit in proc.stderr


def test_a_fifo_as_diag_file_is_a_one_line_error(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    proc = run_cli("--diag-file", tmp_path / "fifo")
    assert proc.returncode == 1 and proc.stderr.count(b"\n") == 1


def test_the_diag_file_bound_comes_from_the_source():
    path = os.path.join(os.path.dirname(__file__), "fixtures", "diag", "tcp.bin")
    size = os.path.getsize(path)
    assert read_named_file(path, size) == open(path, "rb").read()
    with pytest.raises(InputError, match="larger than %d bytes" % (size - 1)):
        read_named_file(path, size - 1)
    tight = Source(proc_root=None, kernel=False, diag_file=path, max_input_bytes=size - 1)
    with pytest.raises(procsock.BackendUnavailable, match="larger than %d bytes" % (size - 1)):
        netlink.procsock_collect(TCP, tight, None, False, procsock.Netns(), False)


def test_read_file_reads_in_the_tree_only(tree):
    source = Source.capture(str(tree))
    assert read_file(source, "net", "unix").startswith(b"Num")
    for parts in (("..", "capture", "net", "unix"), ("net/unix",), ("net", ""), ("net", ".", "unix")):
        with pytest.raises(InputError, match="not a plain path"):
            read_file(source, *parts)


# -- malformed numbers -----------------------------------------------------------------------------


def test_malformed_fd_links_and_names_are_counted_skips(tree):
    fd_dir = tree / "3925" / "fd"
    os.symlink("socket:[1234", fd_dir / "20")  # no "]": was read as inode 123
    os.symlink("socket:[\u0661\u0662\u0663]", fd_dir / "21")  # Arabic-Indic digits
    os.symlink("socket:[7152]", fd_dir / "\u0667")  # an fd named with an Arabic-Indic 7
    os.symlink("socket:[%s]" % ("9" * 30), fd_dir / "22")  # beyond an unsigned long
    os.symlink("socket:[7152]", fd_dir / "99999999999")  # beyond an int
    os.mkdir(tree / "\u0663\u0669")  # a "pid" in Arabic-Indic digits
    os.symlink("socket:[7152]", tree / "3925" / "fd" / "+7")
    document, stderr = json_of(tree)
    assert inodes_of(document) == CAPTURED_INODES
    assert {o[1] for o in owners_of(document)} == {3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14}
    assert {u["inode"] for u in document["unresolved"]} == set()  # 123, 1234 are nobody's
    assert "procsock: 6 socket fd entries skipped: not socket:[INODE] with a decimal fd and inode" in stderr
    scan = scan_fds(str(tree), captured=True)
    assert scan.malformed == 6 and scan.processes == 1
    with pytest.raises(NotASocket):
        procsock.describe_fd(3925, 20, proc_root=str(tree))
    with pytest.raises(NotASocket):
        procsock.describe_fd(3925, 21, proc_root=str(tree))


def test_a_5000_digit_inode_skips_one_unix_row_only(tree):
    table = (tree / "net" / "unix").read_bytes()
    bad = b"00000000ff871b03: 00000002 00000000 00000000 0001 01  " + b"7" * 5000 + b" /tmp/long\n"
    (tree / "net" / "unix").write_bytes(table + bad)
    collected = parse.parse_unix(table + bad, source="net/unix")
    assert {r.inode for r in collected.socket_records()} == {7154, 7155, 7156, 7157}
    (skip,) = collected.skipped
    assert skip.startswith("net/unix:6: b'7777") and "is not a decimal number" in skip and len(skip) < 100
    document, stderr = json_of(tree)
    assert inodes_of(document) == CAPTURED_INODES


def test_decimal_and_hex_take_bounded_ascii_only():
    assert decimal("4294967295") == decimal(b"4294967295") == 2**32 - 1
    assert decimal(b"18446744073709551615") == 2**64 - 1
    for bad in ("", "+1", "-1", "1_0", " 1", "\u0661", "\u00b2", "1" * 21, "18446744073709551616", b"9" * 5000):
        with pytest.raises(ValueError):
            decimal(bad)
    with pytest.raises(ValueError):
        decimal("2147483648", 2**31 - 1)
    assert hexadecimal(b"0A") == hexadecimal("0a") == 10
    for bad in (b"", b"0x1", b"-1", b"1_0", b" a", "\u0661", b"f" * 33, b"1" + b"0" * 16):
        with pytest.raises(ValueError):
            hexadecimal(bad)


def test_a_captured_netns_link_is_read_not_followed(tree):
    ns = tree / "3925" / "ns"
    ns.mkdir()
    os.symlink("net:[4026531999]", ns / "net")
    assert netns_inode(str(tree), 3925, captured=True) == 4026531999
    os.remove(ns / "net")
    os.symlink("/proc/self/ns/net", ns / "net")  # the live namespace: never stat-ed
    assert netns_inode(str(tree), 3925, captured=True) is None
    os.remove(ns / "net")
    os.symlink("net:[\u0664\u0660]", ns / "net")
    assert netns_inode(str(tree), 3925, captured=True) is None


# -- hostile strings reaching the terminal ---------------------------------------------------------


def _congestion_name():
    with open("/proc/sys/net/ipv4/tcp_congestion_control", "rb") as f:
        return f.read().strip()


def test_an_escape_in_a_saved_congestion_name_is_escaped_in_the_table(tmp_path, live_listener):
    saved = tmp_path / "live.bin"
    proc = run_cli("--save-diag", saved, "-t")
    assert proc.returncode == 0, proc.stderr
    data = saved.read_bytes()
    name = _congestion_name()
    assert data.count(name + b"\0") >= 1  # INET_DIAG_CONG of our listener, at least
    hostile = (b"\x1b[" + b"3" * len(name))[: len(name) - 1] + b"m"  # same length: the messages stay whole
    assert len(hostile) == len(name) and hostile[:1] == b"\x1b"
    (tmp_path / "hostile.bin").write_bytes(data.replace(name + b"\0", hostile + b"\0"))
    table = run_cli("--diag-file", tmp_path / "hostile.bin", "-i", "-t")
    assert table.returncode == 0
    assert b" " + hostile.replace(b"\x1b", b"\\x1b") + b" " in table.stdout  # bare, as ss -i shows it
    document = json.loads(run_cli("--diag-file", tmp_path / "hostile.bin", "-i", "-t", "--json").stdout)
    listener = [s for s in document["sockets"] if s["inode"] == live_listener]
    assert listener and listener[0]["extended"]["congestion"] == hostile.decode()


class HostilePlugin:
    """A plugin whose every word carries control bytes: kind, description, reasons, notes."""

    name = "evil"
    kind = SocketKind("ev\x1bil" + HOSTILE_TEXT, Family.INET, "ev\x1b[1mil", ("EVIL",))

    @hookimpl
    def procsock_backend_info(self):
        return BackendInfo(self.name, 1000, (self.kind, TCP), "desc " + HOSTILE_TEXT)

    @hookimpl
    def procsock_unavailable(self, source):
        return None

    @hookimpl
    def procsock_collect(self, kind, source, netns):
        if kind == TCP:
            raise procsock.BackendUnavailable(self.name, "reason " + HOSTILE_TEXT)
        if netns.pid is not None:
            return Collected(())
        record = SocketRecord(
            kind=kind, inode=424242, type=SockType.DGRAM, protocol=0, state=State.CLOSE,
            local=InetAddress(b"\x7f\0\0\1", 7), remote=None, rx_queue=0, tx_queue=0, uid=0, backend=self.name,
        )
        return Collected((record,), ("skipped " + HOSTILE_TEXT,))


@pytest.fixture
def hostile_registry(monkeypatch):
    registry = Registry.from_entry_points()
    registry.register(HostilePlugin(), "evil\x1b[31m")
    monkeypatch.setattr(api, "default_registry", lambda: registry)  # what the command loads
    return registry


@pytest.mark.parametrize(
    "argv",
    [
        ["--list-backends"],
        [],
        ["--kind", "nonesuch\x1b[31m"],
        ["compare", "evil", "procnet"],
        ["--json"],
    ],
    ids=["list-backends", "table", "usage-error", "compare", "json"],
)
def test_a_plugins_control_bytes_never_reach_the_terminal(hostile_registry, capfdbinary, argv):
    cli.main(argv)
    out, err = capfdbinary.readouterr()
    assert_clean(out)
    assert_clean(err)
    if argv == ["--list-backends"]:
        assert b"ev\\x1bil" in out
    elif argv == []:
        assert b"ev\\x1b[1mil" in out and b"reason \\x1b]0;owned\\x07" in err and b"skipped \\x1b" in err
    elif argv == ["--json"]:
        document = json.loads(out)
        assert "skipped " + HOSTILE_TEXT in document["skipped"]
