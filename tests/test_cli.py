"""The procsock command as users run it: table, JSON, filters, exit codes, hostile names."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from sockzoo import inode_of


def run(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "procsock", *args], capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_json_is_valid_and_lists_own_sockets(zoo):
    proc = run("--json")
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=proc.stdout, capture_output=True, text=True)
    assert tool.returncode == 0
    doc = json.loads(proc.stdout)
    by_inode = {s["inode"]: s for s in doc["sockets"]}
    for item in zoo.expected:
        entry = by_inode[item.inode]
        assert entry["kind"] == item.kind and entry["state"] == item.state.name
        assert {"pid": os.getpid(), "fd": item.sock.fileno()} in [
            {"pid": o["pid"], "fd": o["fd"]} for o in entry["owners"]
        ]


def test_jsonl_and_pid_filter(zoo):
    lines = run("--jsonl", "--pid", str(os.getpid())).stdout.splitlines()
    inodes = {json.loads(line)["inode"] for line in lines}
    assert inodes == {item.inode for item in zoo.expected}


def test_table_has_ss_columns_and_owner(zoo):
    out = run("-t", "-l", "--pid", str(os.getpid())).stdout.splitlines()
    assert out[0].split() == ["Netid", "State", "Recv-Q", "Send-Q", "Local", "Peer", "Inode", "Process"]
    listeners = [i for i in zoo.expected if i.kind.startswith("tcp") and i.state.name == "LISTEN"]
    assert len(out) == 1 + len(listeners)
    for item in listeners:
        (row,) = [line for line in out if " %d " % item.inode in line]
        assert row.split()[:2] == [item.kind[:3], "LISTEN"]
        assert row.endswith(",%d,%d" % (os.getpid(), item.sock.fileno()))


def test_hostile_unix_name_is_escaped_in_table_and_exact_in_json():
    name = b"\0evil\x1b[31m\xff\x07 name"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(name)
        table = subprocess.run(
            [sys.executable, "-m", "procsock", "-x", "--pid", str(os.getpid())], capture_output=True
        ).stdout
        assert b"\x1b" not in table and b"\x07" not in table and b"\xff" not in table
        assert b"@evil\\x1b[31m\\xff\\x07 name" in table
        doc = json.loads(run("--json", "-x", "--pid", str(os.getpid())).stdout)
        (entry,) = [s for s in doc["sockets"] if s["inode"] == inode_of(sock)]
        assert bytes.fromhex(entry["local"]["name_hex"]) == name
        assert entry["local"]["abstract"] is True


def test_exit_codes():
    assert run("--pid", "notanumber", check=False).returncode == 2
    missing = run("--proc-root", "/nonexistent/proc", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "not a directory" in missing.stderr
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    gone = run("--pid", str(dead), check=False)
    assert gone.returncode == 1 and "no such process %d" % dead in gone.stderr
    assert run("--backend", "nope", check=False).returncode == 1
    no_file = run("--diag-file", "/nonexistent.diag", check=False)
    assert no_file.returncode == 1 and "not a readable file" in no_file.stderr


def test_list_backends_shows_builtin_backends():
    out = run("--list-backends").stdout
    assert any(line.startswith("procnet ") and "ready" in line for line in out.splitlines())
    (netlink,) = [line for line in out.splitlines() if line.startswith("netlink ")]
    assert "(inet,inet6,unix,packet,netlink) plugin netlink from procsock " in netlink


CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")


@pytest.mark.parametrize("args, code, says", [
    (["--proc-root", "/nonexistent/proc"], 1, "proc root /nonexistent/proc is not a directory"),
    (["--diag-file", "/nonexistent.diag"], 1, "diag file /nonexistent.diag is not a readable file"),
    (["--backend", "nope"], 1, "backend nope unavailable: no such backend (installed: "),
    (["--backend", "netlink", "--proc-root", CAPTURE], 1, "backend netlink unavailable: a captured /proc tree"),
    (["--save-diag", "/nonexistent/dir/saved.diag"], 1, "/nonexistent/dir/saved.diag: No such file or directory"),
    (["--pid", str(2 ** 22 + 7)], 1, "no such process %d" % (2 ** 22 + 7)),
    (["--kind", "nosuch"], 2, "bad kind 'nosuch' (accepted: tcp, tcp6, "),
    (["--state", "BOGUS"], 2, "bad state 'BOGUS' (accepted: ESTAB, "),
    (["--backend", "pidfd"], 2, "backend pidfd answers lookups only: give a pid with it"),
    (["--proc-root", os.path.join(CAPTURE, "3925")], 1, "no socket table could be read: tcp: no backend could read it"),
    (["compare", "nope"], 1, "backend nope unavailable: no such backend (installed: "),
])
def test_errors_are_one_line_saying_what_and_why_and_debug_adds_the_detail(args, code, says):
    failed = run(*args, check=False)
    assert (failed.returncode, failed.stdout) == (code, "")
    lines = failed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("procsock: ") and says in lines[0]
    if code == 1:
        detailed = run(*args, "--debug", check=False)
        assert detailed.returncode == 1 and "Traceback (most recent call last)" in detailed.stderr
        assert detailed.stderr.splitlines()[-1] == failed.stderr.splitlines()[0]


def test_a_closed_pipe_ends_the_output_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "procsock"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before it writes anything: like `procsock | true`
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr


def _leftovers(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


@pytest.mark.parametrize("spelling", ["same", "symlink", "hardlink", "dotted"])
def test_save_diag_never_overwrites_the_diag_file_it_reads(tmp_path, spelling):
    saved = tmp_path / "host.diag"
    saved.write_bytes(b"what was saved before")
    target = {"same": str(saved), "dotted": str(tmp_path / "." / "host.diag")}.get(spelling, str(tmp_path / "other"))
    if spelling == "symlink":
        os.symlink(saved, target)
    elif spelling == "hardlink":
        os.link(saved, target)
    failed = run("--diag-file", str(saved), "--save-diag", target, check=False)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.splitlines() == ["procsock: --save-diag %s would overwrite the --diag-file input" % target]
    assert saved.read_bytes() == b"what was saved before" and _leftovers(tmp_path) == []


def test_save_diag_never_writes_inside_the_proc_root_it_reads(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(CAPTURE, root, symlinks=True)
    tcp = root / "net" / "tcp"
    before = tcp.read_bytes()
    failed = run("--proc-root", str(root), "--save-diag", str(tcp), check=False)
    assert failed.returncode == 2
    assert failed.stderr.splitlines() == ["procsock: --save-diag %s is inside the --proc-root input %s" % (tcp, root)]
    assert tcp.read_bytes() == before and _leftovers(root / "net") == []


def test_a_failed_save_leaves_the_file_as_it_was(tmp_path):
    """A captured tree has no kernel to ask: the save fails (exit 1) and the old file stays."""
    saved = tmp_path / "host.diag"
    saved.write_bytes(b"what was saved before")
    failed = run("--proc-root", CAPTURE, "--save-diag", str(saved), check=False)
    assert failed.returncode == 1 and "no backend here can save raw sock_diag replies" in failed.stderr
    assert saved.read_bytes() == b"what was saved before" and _leftovers(tmp_path) == []


def test_a_save_replaces_the_file_whole(tmp_path):
    saved = tmp_path / "host.diag"
    saved.write_bytes(b"x" * 10_000_000)  # longer than any save here: nothing of it may remain
    run("-x", "--save-diag", str(saved))
    data = saved.read_bytes()
    assert data and not data.startswith(b"x" * 16) and _leftovers(tmp_path) == []
    assert saved.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
