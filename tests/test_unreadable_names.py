"""The "N processes not readable" note names a few of them (pid and escaped name) and counts the
rest, checked as nobody against processes root holds."""

import os
import pathlib
import pwd
import re
import sys
import tempfile

from procsock.text import escape_text
from sockzoo import needs_root

NOTE = re.compile(r"procsock: (\d+) processes not readable \(permission denied\): (.*); their sockets have no "
                  r"owner here$")


def procsock_as_nobody(*args):
    """The command's note on unreadable processes, run as nobody in a forked child (no exec, so
    neither the interpreter nor the installed package need be readable by nobody)."""
    nobody = pwd.getpwnam("nobody")
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        code = 70
        try:
            os.close(reader)
            os.dup2(writer, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.chdir("/")
            from procsock.cli import main

            code = main(list(args))
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as f:
        stderr = f.read()
    _, status = os.waitpid(child, 0)
    assert b"Traceback" not in stderr and os.waitstatus_to_exitcode(status) == 0, stderr
    (note,) = [m for m in map(NOTE.match, stderr.decode().splitlines()) if m]
    return int(note.group(1)), note.group(2)


def named(listing):
    """[(pid, name or None)] and the count of the rest, from "1 (init), 2 (x) and 5 more"."""
    listing, _, rest = listing.partition(" and ")
    pairs = [re.fullmatch(r"(\d+)(?: \((.*)\))?", item).groups() for item in listing.split(", ")]
    return [(int(pid), name) for pid, name in pairs], int(rest.split()[0]) if rest else 0


@needs_root
def test_nobody_is_told_which_root_processes_it_could_not_read():
    count, listing = procsock_as_nobody("-t")
    shown, more = named(listing)
    assert len(shown) == 3 and count == len(shown) + more
    assert [pid for pid, _ in shown] == sorted(pid for pid, _ in shown)  # the first ones walked
    for pid, name in shown:  # real root processes, under their own (escaped) names
        assert os.stat("/proc/%d" % pid).st_uid == 0
        with open("/proc/%d/comm" % pid, "rb") as f:
            assert name == escape_text(os.fsdecode(f.read().rstrip(b"\n")))


@needs_root
def test_hostile_names_of_unreadable_processes_are_escaped():
    """A captured tree whose fd tables only root may read, with names made to attack a terminal."""
    with tempfile.TemporaryDirectory() as tree:  # under /tmp, where nobody can reach it
        os.chmod(tree, 0o755)
        check_hostile_names(pathlib.Path(tree))


def check_hostile_names(tmp_path):
    names = {11: b"\x1b]0;owned\x07", 12: b"a\nprocsock: fake", 13: b"\xff\\x", 14: b"four", 15: b""}
    os.makedirs(tmp_path / "net")
    (tmp_path / "net" / "unix").write_bytes(b"Num       RefCount Protocol Flags    Type St Inode Path\n")
    for pid, name in names.items():
        os.makedirs(tmp_path / str(pid) / "fd", mode=0o700)
        (tmp_path / str(pid) / "comm").write_bytes(name + b"\n")
    count, listing = procsock_as_nobody("--proc-root", str(tmp_path), "-x")
    assert count == 5
    assert listing == "11 (\\x1b]0;owned\\x07), 12 (a\\nprocsock: fake), 13 (\\xff\\\\x) and 2 more"
