"""Arguments checked at the door: every bad one is refused naming itself and what it accepts, in the
library (BadArgument, or TypeError for a wrong type) and in the CLI (exit 2, one line); the values
the README promises ("one value or several each") work."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

import procsock
from procsock.errors import BadArgument, ProcsockError
from procsock.fdscan import known_netns
from procsock.testing import PSUTIL_KINDS, connections_of, held_socket_inodes

CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")
OWN_NETNS = os.stat("/proc/self/ns/net").st_ino


def unknown_netns() -> int:
    """A namespace inode that no namespace here has (read from the host, not assumed)."""
    return max(known_netns("/proc")) + 1


KIND_NAMES = ["tcp", "tcp6", "unix"]
PROTOCOL_NAMES = ["tcp", "udp", "unix"]
STATE_LABELS = ["ESTAB", "LISTEN", "TIME-WAIT"]

# (keyword arguments of snapshot(), exception type, texts the message must hold: the argument's
# name and the accepted values)
BAD_SNAPSHOT_ARGUMENTS = [
    (dict(kind="bogus"), BadArgument, ["kind", "'bogus'"] + KIND_NAMES),
    (dict(kind=["tcp", "tpc"]), BadArgument, ["kind", "'tpc'"] + KIND_NAMES),
    (dict(kind=123), TypeError, ["kind", "kind name", "123"]),
    (dict(kind=[]), BadArgument, ["kind", "no value"]),
    (dict(protocol="TCPX"), BadArgument, ["protocol", "'TCPX'"] + PROTOCOL_NAMES),
    (dict(protocol=5), TypeError, ["protocol", "protocol name"]),
    (dict(state=b"LISTEN"), TypeError, ["state", "State", "ss label"]),
    (dict(state="BOGUS"), BadArgument, ["state", "'BOGUS'"] + STATE_LABELS),
    (dict(state=99), BadArgument, ["state", "99"] + STATE_LABELS),
    (dict(family="inet7"), BadArgument, ["family", "'inet7'", "inet", "inet6", "unix"]),
    (dict(family=2.0), TypeError, ["family", "Family"]),
    (dict(pid=1.5), TypeError, ["pid", "process id", "1.5"]),
    (dict(pid=True), TypeError, ["pid", "process id"]),
    (dict(pid=0), BadArgument, ["pid", "1 or more"]),
    (dict(pid=[os.getpid(), -3]), BadArgument, ["pid", "-3", "1 or more"]),
    (dict(port=70000), BadArgument, ["port", "70000", "0 to 65535"]),
    (dict(port=-1), BadArgument, ["port", "0 to 65535"]),
    (dict(port="80"), TypeError, ["port", "port number"]),
    (dict(netns=0), BadArgument, ["netns", "1 or more"]),
    (dict(netns="4026531840"), TypeError, ["netns", "namespace inode"]),
    (dict(backend="pidfd"), BadArgument, ["backend", "pidfd", "lookups only", "pid"]),
    (dict(backend=5), TypeError, ["backend", "backend name"]),
    (dict(registry="x"), TypeError, ["registry", "Registry"]),
]


@pytest.mark.parametrize("kwargs, error, says", BAD_SNAPSHOT_ARGUMENTS, ids=lambda v: repr(v)[:40])
def test_a_bad_argument_is_refused_naming_it_and_what_it_accepts(kwargs, error, says):
    with pytest.raises(error) as raised:
        procsock.snapshot(**kwargs)
    assert not isinstance(raised.value, ProcsockError) or isinstance(raised.value, BadArgument)
    message = str(raised.value)
    assert "\n" not in message
    for text in says:
        assert text in message


def test_make_query_is_the_same_door():
    with pytest.raises(BadArgument, match="bad kind 'bogus'"):
        procsock.make_query(kind="bogus")
    with pytest.raises(TypeError, match="pid takes a process id"):
        procsock.make_query(pid=1.5)


def test_an_unknown_namespace_on_the_live_host_is_refused_naming_the_known_ones():
    with pytest.raises(BadArgument) as raised:
        procsock.snapshot(netns=unknown_netns())
    assert "netns %d" % unknown_netns() in str(raised.value) and str(OWN_NETNS) in str(raised.value)
    own = procsock.snapshot(netns=OWN_NETNS).sockets  # a namespace that exists is a filter
    assert own and {s.record.netns for s in own} == {OWN_NETNS}


def test_a_namespace_filter_on_a_captured_tree_gives_an_empty_answer_with_a_note():
    snap = procsock.snapshot(proc_root=CAPTURE, netns=12345)
    assert snap.sockets == ()
    assert any("network namespace 12345" in note.text for note in snap.notes)
    assert procsock.snapshot(proc_root=CAPTURE).sockets  # the capture does have sockets


@pytest.mark.parametrize("call, error, says", [
    (lambda: procsock.describe_fd(1.5, 0), TypeError, ["pid", "process id"]),
    (lambda: procsock.describe_fd(os.getpid(), -1), BadArgument, ["fd", "0 or more"]),
    (lambda: procsock.describe_inode("5"), TypeError, ["inode", "socket inode"]),
    (lambda: connections_of(os.getpid(), kind="tpc"), BadArgument, ["kind", "'tpc'"] + list(PSUTIL_KINDS)),
    (lambda: connections_of(os.getpid(), kind=["tcp"]), TypeError, ["kind", "psutil"]),
    (lambda: connections_of(os.getpid(), protocol="tcpx"), BadArgument, ["protocol"] + PROTOCOL_NAMES),
    (lambda: held_socket_inodes(1.5), TypeError, ["pid", "process id"]),
], ids=["describe_fd-pid", "describe_fd-fd", "describe_inode", "connections_of-kind", "connections_of-type",
        "connections_of-protocol", "held_socket_inodes"])
def test_the_other_public_functions_check_their_arguments_too(call, error, says):
    with pytest.raises(error) as raised:
        call()
    for text in says:
        assert text in str(raised.value)


HOLDER = textwrap.dedent(
    """
    import os, socket, sys
    server = socket.create_server(("127.0.0.1", 0))
    print(os.fstat(server.fileno()).st_ino, flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def other_process():
    """(pid, inode): another process holding one TCP listener until the test ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.pid, int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_several_pids_walk_exactly_those_processes(other_process):
    child, child_inode = other_process
    with socket.create_server(("127.0.0.1", 0)) as ours:
        own_inode = os.fstat(ours.fileno()).st_ino
        both = {s.record.inode: s for s in procsock.snapshot(pid=[os.getpid(), child], protocol="tcp").sockets}
        assert {own_inode, child_inode} <= set(both)
        assert {o.pid for s in both.values() for o in s.owners} == {os.getpid(), child}
        only_child = {s.record.inode for s in procsock.snapshot(pid=(child,), protocol="tcp").sockets}
        assert only_child == {child_inode}
        cli = subprocess.run(
            [sys.executable, "-m", "procsock", "-t", "--jsonl", "--pid", str(os.getpid()), "--pid", str(child)],
            capture_output=True, text=True, check=True,
        )
        assert {own_inode, child_inode} <= {int(line.split('"inode": ')[1].split(",")[0]) for line in
                                             cli.stdout.splitlines()}


def test_several_ports_each_match():
    with socket.create_server(("127.0.0.1", 0)) as a, socket.create_server(("127.0.0.1", 0)) as b, \
            socket.create_server(("127.0.0.1", 0)) as c:
        ports = [a.getsockname()[1], b.getsockname()[1]]
        found = {s.record.inode for s in procsock.snapshot(pid=os.getpid(), port=ports, protocol="tcp").sockets}
        assert found == {os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino}
        assert os.fstat(c.fileno()).st_ino not in found


def test_connections_of_takes_psutil_kinds_with_psutil_meanings():
    with socket.create_server(("127.0.0.1", 0)) as tcp4, \
            socket.create_server(("::1", 0), family=socket.AF_INET6) as tcp6, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp4:
        udp4.bind(("127.0.0.1", 0))
        inode = {name: os.fstat(s.fileno()).st_ino for name, s in (("tcp4", tcp4), ("tcp6", tcp6), ("udp4", udp4))}

        def seen(kind, **kwargs):
            return {s.record.inode for s in connections_of(os.getpid(), kind=kind, **kwargs)} & set(inode.values())

        expected = {
            "tcp": {"tcp4", "tcp6"}, "tcp4": {"tcp4"}, "tcp6": {"tcp6"}, "udp": {"udp4"}, "udp4": {"udp4"},
            "udp6": set(), "inet": {"tcp4", "tcp6", "udp4"}, "inet4": {"tcp4", "udp4"}, "inet6": {"tcp6"},
            "unix": set(), "all": {"tcp4", "tcp6", "udp4"},
        }
        assert set(expected) == set(PSUTIL_KINDS)
        for kind, names in expected.items():
            assert seen(kind) == {inode[n] for n in names}, kind
        assert seen("inet", protocol="udp") == {inode["udp4"]}


CLI_BAD_ARGUMENTS = [
    (["--port", "70000"], ["port", "0 to 65535"]),
    (["--port=-1"], ["port", "0 to 65535"]),
    (["--port", "http"], ["--port", "invalid int"]),
    (["--pid", "0"], ["pid", "1 or more"]),
    (["--pid", "x"], ["--pid", "invalid int"]),
    (["--netns", "0"], ["netns", "1 or more"]),
    (["--netns", "UNKNOWN"], ["netns", "no such network namespace", str(OWN_NETNS)]),
    (["--kind", "bogus"], ["kind", "'bogus'"] + KIND_NAMES),
    (["--disable-plugin", "nosuch"], ["no plugin named nosuch to disable", "netlink", "procnet"]),
    (["compare", "--disable-plugin", "nosuch"], ["no plugin named nosuch to disable", "pidfd"]),
    (["--state", "BOGUS"], ["state", "'BOGUS'"] + STATE_LABELS),
    (["--backend", "pidfd"], ["backend", "pidfd", "pid"]),
    (["--bogus"], ["unrecognized arguments: --bogus"]),
    (["--json", "--jsonl"], ["--jsonl", "not allowed with"]),
    (["compare", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["compare", "--kind", "bogus"], ["kind", "'bogus'"] + KIND_NAMES),
    (["compare", "--pid", "-5"], ["pid -5", "1 or more"]),
    (["compare", "--pid", "0"], ["pid", "1 or more"]),
    (["compare", "pidfd", "netlink"], ["backend", "pidfd", "pid"]),
    (["compare", "netlink", "netlink"], ["two different backends"]),
    (["compare", "a", "b", "c"], ["at most two"]),
]


@pytest.mark.parametrize("args, says", CLI_BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_bad_cli_argument_exits_2_with_one_line_naming_it(args, says):
    args = [str(unknown_netns()) if a == "UNKNOWN" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "procsock", *args], capture_output=True, text=True, timeout=60)
    lines = proc.stderr.splitlines()
    assert (proc.returncode, proc.stdout, len(lines)) == (2, "", 1), proc.stderr
    assert lines[0].startswith("procsock: ")
    for text in says:
        assert text in lines[0]
