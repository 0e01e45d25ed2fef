"""A matrix of ss filters run through the real `ss` and through procsock on the same real sockets:
the same sockets selected (compared by inode, among the sockets this test holds)."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

import procsock
from procsock.model import Row
from procsock.render import entries
from sockzoo import ss_output, ss_unix_inodes

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")


def inode(sock):
    return os.fstat(sock.fileno()).st_ino


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """TCP listeners and connections on v4 and v6 loopback, bound and connected UDP, unix sockets."""
    tmp = tmp_path_factory.mktemp("sslive")
    socks = []

    def make(family, kind, bind=None):
        sock = socket.socket(family, kind)
        socks.append(sock)
        if bind is not None:
            sock.bind(bind)
        return sock

    l4 = make(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0))
    l4.listen()
    l6 = make(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0))
    l6.listen()
    p4, p6 = l4.getsockname()[1], l6.getsockname()[1]
    c4 = make(socket.AF_INET, socket.SOCK_STREAM)
    c4.connect(("127.0.0.1", p4))
    socks.append(l4.accept()[0])
    c6 = make(socket.AF_INET6, socket.SOCK_STREAM)
    c6.connect(("::1", p6))
    socks.append(l6.accept()[0])
    mapped = make(socket.AF_INET6, socket.SOCK_STREAM)
    mapped.connect(("::ffff:127.0.0.1", p4))
    socks.append(l4.accept()[0])
    u4 = make(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))
    u6 = make(socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 0))
    u4c = make(socket.AF_INET, socket.SOCK_DGRAM)
    u4c.connect(("127.0.0.1", u4.getsockname()[1]))
    lo_bound = make(socket.AF_INET, socket.SOCK_DGRAM)
    marked = make(socket.AF_INET, socket.SOCK_DGRAM)
    if os.geteuid() == 0:
        lo_bound.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        marked.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 0x5a5)
    lo_bound.bind(("127.0.0.1", 0))
    marked.bind(("127.0.0.1", 0))
    unix_listener = make(socket.AF_UNIX, socket.SOCK_STREAM, str(tmp / "alpha.sock"))
    unix_listener.listen()
    make(socket.AF_UNIX, socket.SOCK_DGRAM, str(tmp / "Beta.sock"))
    make(socket.AF_UNIX, socket.SOCK_DGRAM, b"\0procsock-sslive-%d" % os.getpid())
    values = {"p4": p4, "p6": p6, "c4": c4.getsockname()[1], "u4": u4.getsockname()[1],
              "u6": u6.getsockname()[1], "tmp": str(tmp), "pid": os.getpid()}
    try:
        yield {inode(s) for s in socks}, values
    finally:
        for sock in socks:
            sock.close()


def ss_inodes(flags, text):
    """The socket inodes ss selects: -e's ino: for inet, the column after the name for unix."""
    unix = flags == ["-xa"]
    out = ss_output(["-H", "-n", *flags, *([] if unix else ["-e"]), *text.split()], timeout=60)
    if unix:
        return ss_unix_inodes(out)
    return {int(n) for n in re.findall(r"\bino:(\d+)", out)}


def procsock_inodes(protocols, text):
    snap = procsock.snapshot(pid=os.getpid(), protocol=protocols, filter=text)
    return {entry[0][Row.INODE] for entry in entries(snap.sockets)}


INET = [
    "sport = :{p4}", "sport {p4}", "dport = :{p4}", "( sport = :{p4} or dport = :{p4} )", "sport != :{p4}",
    "sport neq {p4}", "sport < {p4}", "sport lt {p4}", "sport > {p4}", "sport gt {p4}", "sport <= {p4}",
    "sport le {p4}", "sport >= {p4}", "sport ge {p4}", "dport > {p4}", "dport < {p4}", "dport <= {p4}",
    "dport >= {p6}", "dport eq {p6}", "src 127.0.0.1", "src = 127.0.0.0/8", "dst 127.0.0.1:{p4}",
    "src [::1]", "src [::1]:{p6}", "dst [::1]", "dst [::ffff:127.0.0.1]", "src *:{p4}", "dst *:{u4}",
    "src 127.0.0.1 and sport = :{u4}", "src 127.0.0.1 or src [::1] and sport = :{p4}",
    "src 127.0.0.1 or ( src [::1] and sport = :{p6} )", "not src 127.0.0.1", "! dport = :{p4}",
    "state established", "state listening", "state unconnected", "exclude listening", "excl established",
    "state connected", "state synchronized", "state big", "state bucket", "state all",
    "state established dport = :{p4}", "state listening state established ( sport = :{p6} or dport = :{p6} )",
    "sport = :{p4} || sport = :{p6} && dport > 0", "autobound", "not autobound",
]
ROOT_ONLY = ["dev = lo", "dev != lo", "fwmark = 0x5a5", "fwmark 0x5/0xf", "fwmark != 0x5a5"]
UNIX = ["src {tmp}/*", "src {tmp}/a*", "src {tmp}/BETA*", "src unix:{tmp}/*", "state listening",
        "not src {tmp}/*"]


def check(flags, protocols, text, values, ours):
    text = text.format(**values)
    want = ss_inodes(flags, text) & ours
    assert procsock_inodes(protocols, text) & ours == want, text
    return want


def test_inet_filters_select_what_ss_selects(held):
    ours, values = held
    answers = {text: check(["-tua"], ["tcp", "udp"], text, values, ours) for text in INET}
    assert len({frozenset(a) for a in answers.values()}) > len(INET) // 3  # the filters tell sockets apart
    assert not answers["sport = :{p4}"] & answers["sport != :{p4}"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (SO_BINDTODEVICE, SO_MARK)")
def test_device_and_mark_filters_select_what_ss_selects(held):
    ours, values = held
    for text in ROOT_ONLY:
        assert check(["-ua"], ["udp"], text, values, ours), text


CGROUP_HOLDER = textwrap.dedent(
    """
    import json, os, re, socket, subprocess, sys, tempfile
    mnt = tempfile.mkdtemp()
    subprocess.run(["mount", "-t", "cgroup2", "none", mnt], check=True)
    name = "procsock-test-%d" % os.getpid()
    os.mkdir(os.path.join(mnt, name))
    try:
        before = socket.socket(); before.bind(("127.0.0.1", 0)); before.listen()
        with open(os.path.join(mnt, name, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        inside = socket.socket(); inside.bind(("127.0.0.1", 0)); inside.listen()
        ours = {os.fstat(s.fileno()).st_ino for s in (before, inside)}
        out = subprocess.run(["ss", "-Htlne", "cgroup", "/" + name], capture_output=True, text=True,
                             check=True).stdout
        proc = subprocess.run([sys.executable, "-m", "procsock", "-tl", "--pid", str(os.getpid()), "--json",
                               "cgroup", "/" + name], capture_output=True, text=True, check=True)
        print(json.dumps({
            "ss": sorted({int(n) for n in re.findall(r"\\bino:(\\d+)", out)} & ours),
            "procsock": sorted({s["inode"] for s in json.loads(proc.stdout)["sockets"]} & ours),
            "inside": os.fstat(inside.fileno()).st_ino,
        }))
    finally:
        with open(os.path.join(mnt, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        os.rmdir(os.path.join(mnt, name))
        subprocess.run(["umount", mnt], check=True)
        os.rmdir(mnt)
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare (a cgroup2 mount and a cgroup of its own)")
def test_cgroup_filter_selects_what_ss_selects():
    """A process moves itself into a new cgroup (a cgroup2 mount of its own mount namespace) between
    two sockets: `cgroup PATH` selects the second, in ss and in procsock."""
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", CGROUP_HOLDER],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["ss"] == found["procsock"] == [found["inside"]]


def test_unix_filters_select_what_ss_selects(held):
    ours, values = held
    answers = [check(["-xa"], ["unix"], text, values, ours) for text in UNIX]
    assert answers[1] and answers[2] and answers[1] != answers[2] and answers[5] and not answers[0] & answers[5]
