"""ss habits: -n/-p accepted, -V, -E, -N NSNAME, combined short flags, and ss's filter after the
options (and as snapshot(filter=)) on every source."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import procsock
from procsock.cli import COMMANDS
from procsock.errors import BadArgument
from procsock.filter import parse
from procsock.model import Row, identity_of_row
from procsock.render import entries
from sockzoo import needs_root

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURE = os.path.join(HERE, "fixtures", "capture")
DUMP = os.path.join(HERE, "fixtures", "ss", "ss1.dump")


def run(*args):
    return subprocess.run([sys.executable, "-m", "procsock", *args], capture_output=True, text=True, timeout=120)


def inodes(out):
    return {sock["inode"] for sock in json.loads(out)["sockets"]}


def ours(zoo, out):
    return inodes(out) & {item.inode for item in zoo.expected}


@pytest.mark.parametrize("habit, plain", [
    (["-tulpn"], ["-tul"]),
    (["-tlnp"], ["-tl"]),
    (["-xlp"], ["-xl"]),
    (["-ta4"], ["-t", "-a", "-4"]),
    (["-tuanp"], ["-tua"]),
    (["-n", "-p", "-x"], ["-x"]),
    (["--numeric", "--processes", "-t6"], ["-t", "-6"]),
])
def test_combined_habit_flags_select_what_the_plain_flags_do(zoo, habit, plain):
    pid = ["--pid", str(os.getpid()), "--json"]
    got, want = run(*habit, *pid), run(*plain, *pid)
    assert got.returncode == want.returncode == 0, got.stderr
    assert ours(zoo, got.stdout) == ours(zoo, want.stdout) and ours(zoo, got.stdout)


def test_combined_flags_mean_each_flag(zoo):
    out = run("-ta4", "--pid", str(os.getpid()), "--json").stdout
    tcp4 = {item.inode for item in zoo.expected if item.kind == "tcp"}
    assert ours(zoo, out) == tcp4 and tcp4


def test_help_says_numeric_and_processes_are_always_on():
    out = " ".join(run("--help").stdout.split())
    assert "-n, --numeric accepted for ss habits: procsock is always numeric" in out
    assert "-p, --processes accepted for ss habits: procsock always shows processes" in out
    assert "-N NSNAME, --net NSNAME" in out and "FILTER" in run("list", "--help").stdout


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag):
    proc = run(flag)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "procsock %s\n" % procsock.__version__, "")


@pytest.mark.parametrize("argv", [["-E"], ["-tE"], ["--events"], ["list", "-E"]])
def test_events_point_to_watch(argv):
    proc = run(*argv)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.count("\n") == 1 and "use `procsock watch`" in proc.stderr


@pytest.mark.parametrize("name", ["nosuch-ns-for-procsock", "../etc", "a/b", "."])
def test_an_unknown_named_namespace_is_a_usage_error(name):
    proc = run("-N", name)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.count("\n") == 1 and "no network namespace named %r" % name in proc.stderr


HOLDER = textwrap.dedent(
    """
    import os, socket, subprocess, sys
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 4243))
    listener.listen()
    print(os.fstat(listener.fileno()).st_ino, os.stat("/proc/self/ns/net").st_ino, flush=True)
    sys.stdin.read()
    """
)


@needs_root
def test_a_named_namespace_selects_its_sockets():
    if shutil.which("ip") is None:
        pytest.skip("ip (iproute2) is not installed")
    name = "procsock-h-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        holder = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", HOLDER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            inode, netns = map(int, holder.stdout.readline().split())
            by_name = run("-tlnp", "-N", name, "--json")
            by_inode = run("-tlnp", "--netns", str(netns), "--json")
            assert by_name.returncode == by_inode.returncode == 0, by_name.stderr
            found = json.loads(by_name.stdout)["sockets"]
            assert {s["netns"] for s in found} == {netns} and inode in {s["inode"] for s in found}
            assert found == json.loads(by_inode.stdout)["sockets"]
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def listener_port(zoo, kind="tcp"):
    item = next(i for i in zoo.expected if i.kind == kind and i.state.name == "LISTEN")
    return item, item.sock.getsockname()[1]


def test_the_filter_follows_the_options_and_may_come_before_them(zoo):
    item, port = listener_port(zoo)
    pid = ["--pid", str(os.getpid()), "--json"]
    for argv in (
        [*pid, "sport", "=", ":%d" % port],
        [*pid, "state", "listening", "( sport = :%d or dport = :%d )" % (port, port)],
        ["sport", "=", str(port), *pid],
        ["-t", "state", "listening", *pid, "sport eq %d" % port],
        [*pid, "(sport = :%d)" % port, "and", "src", "127.0.0.1"],
    ):
        proc = run(*argv)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert item.inode in inodes(proc.stdout), argv
        holders = {i.inode for i in zoo.expected if i.sock.getsockname()[1:2] == (port,)}
        assert inodes(proc.stdout) <= holders | {0}, argv  # no socket without that port


@pytest.mark.parametrize("argv, says", [
    (["dport", "=", "=", "3"],
     "bad filter at 9 in 'dport = = 3': '=' does not look like a port (a number or a service name)"),
    (["state", "establised"],
     "bad filter at 7 in 'state establised': unknown state 'establised' (known: all, connected, "),
    (["( sport = 1"], "bad filter at 12 in '( sport = 1': `)` expected to close the `(` at 1"),
    (["src", "10.0.0.1", "sprot", "1"],
     "bad filter at 14 in 'src 10.0.0.1 sprot 1': unknown word 'sprot' (keys: src, dst, sport, "),
    (["nosuch"], "'nosuch' is neither a command (%s) nor the start of a filter" % ", ".join(COMMANDS)),
])
def test_a_bad_filter_is_one_line_with_its_position(argv, says):
    proc = run("--pid", str(os.getpid()), *argv)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_the_library_refuses_a_bad_filter_naming_the_argument():
    with pytest.raises(BadArgument, match="bad filter at 1 in 'sprot = 1': unknown word 'sprot'") as caught:
        procsock.snapshot(pid=os.getpid(), filter="sprot = 1")
    assert caught.value.argument == "filter"
    with pytest.raises(TypeError, match="filter takes ss filter text"):
        procsock.snapshot(pid=os.getpid(), filter=443)


def filtered_by_hand(snap, text):
    chosen = parse(text)
    return [identity_of_row(row) for row, owners, _ in entries(snap.sockets) if chosen.wants(row, owners)]


def identities(snap):
    return [identity_of_row(entry[0]) for entry in entries(snap.sockets)]


@pytest.mark.parametrize("source, text", [
    ({"proc_root": CAPTURE}, "src 127.0.0.1 and sport = :39809"),
    ({"proc_root": CAPTURE}, "src unix:/tmp/* or sport = :39809"),
    ({"proc_root": CAPTURE}, "comm = capd and not src [::/0]"),
    ({"diag_file": DUMP}, "dport = 22"),
    ({"diag_file": DUMP}, "exclude listening src [fec0:42::/32]"),
    ({"pid": os.getpid()}, "src 127.0.0.1 or src [::1]"),
    ({"pid": os.getpid()}, "state listening pid = %d" % os.getpid()),
])
def test_a_filter_selects_the_same_on_every_source_as_on_its_rows(zoo, source, text):
    everything = procsock.snapshot(**source)
    selected = procsock.snapshot(filter=text, **source)
    assert identities(selected) == filtered_by_hand(everything, text)
    assert 0 < len(selected.sockets) < len(everything.sockets)


def test_the_filters_states_narrow_the_state_argument():
    snap = procsock.snapshot(diag_file=DUMP, state=["LISTEN", "ESTAB"], filter="state listening state time-wait")
    assert {entry[0][Row.STATE].name for entry in entries(snap.sockets)} == {"LISTEN"}
