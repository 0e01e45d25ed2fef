"""Sockets held by a process in another network namespace, resolved there with the right owner."""

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import procsock
from sockzoo import model_endpoint, needs_root, ss_endpoint

HOLDER = textwrap.dedent(
    """
    import os, socket, subprocess, sys
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 4242))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", 4242))
    server, _ = listener.accept()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", 5353))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(b"\\0procsock-netns-test")
    held = {"listen": listener, "client": client, "server": server, "udp": udp, "unix": unix}
    report = {name: [s.fileno(), os.fstat(s.fileno()).st_ino] for name, s in held.items()}
    report["netns"] = os.stat("/proc/self/ns/net").st_ino
    print(__import__("json").dumps(report), flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def other_namespace():
    """A process in a fresh network namespace holding TCP, UDP and unix sockets."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip (util-linux, iproute2) is not installed")
    proc = subprocess.Popen(
        ["unshare", "-n", sys.executable, "-c", HOLDER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        report = json.loads(proc.stdout.readline())
        yield proc.pid, report
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def check(snap, pid, report):
    found = {s.record.inode: s for s in snap.sockets}
    for name in ("listen", "client", "server", "udp", "unix"):
        fd, inode = report[name]
        sock = found.get(inode)
        assert sock is not None, name
        assert sock.record.netns == report["netns"], name
        assert (pid, fd) in {(o.pid, o.fd) for o in sock.owners}, name
    listen = found[report["listen"][1]].record
    assert (listen.state.name, str(listen.local)) == ("LISTEN", "127.0.0.1:4242")
    assert str(found[report["udp"][1]].record.local) == "[::1]:5353"


@needs_root
@pytest.mark.parametrize("backend", ["netlink", "procnet"])
def test_both_backends_resolve_another_namespace(other_namespace, backend):
    pid, report = other_namespace
    assert report["netns"] != os.stat("/proc/self/ns/net").st_ino
    check(procsock.snapshot(backend=backend), pid, report)
    check(procsock.snapshot(pid=pid, backend=backend), pid, report)
    sock = procsock.describe_fd(pid, report["listen"][0], backend=backend)
    assert sock.record.inode == report["listen"][1] and sock.record.netns == report["netns"]


@needs_root
def test_cli_shows_and_filters_by_namespace(other_namespace):
    pid, report = other_namespace
    out = subprocess.run(
        [sys.executable, "-m", "procsock", "--netns", str(report["netns"])],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert out[0].split()[0] == "Netns"
    rows = [line for line in out[1:] if line.strip()]
    assert rows and all(line.split()[0] == str(report["netns"]) for line in rows)
    assert any("127.0.0.1:4242" in line and ",%d,%d" % (pid, report["listen"][0]) in line for line in rows)


@needs_root
def test_a_named_namespace_is_named():
    if shutil.which("ip") is None:
        pytest.skip("ip (iproute2) is not installed")
    name = "procsock-test-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", HOLDER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            report = json.loads(proc.stdout.readline())
            snap = procsock.snapshot()
            assert snap.netns_names.get(report["netns"]) == name
            check(snap, proc.pid, report)
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@needs_root
def test_a_saved_file_keeps_every_namespace(other_namespace, zoo, tmp_path):
    """--save-diag saves each namespace's replies with its inode; --diag-file gives each record
    its namespace back, --netns filters a saved file, and `ss` still reads the file's first dump
    (our own namespace's TCP sockets) and stops there."""
    pid, report = other_namespace
    own = os.stat("/proc/self/ns/net").st_ino
    saved = str(tmp_path / "host.diag")
    subprocess.run([sys.executable, "-m", "procsock", "--save-diag", saved], capture_output=True, check=True)
    replay = procsock.snapshot(diag_file=saved, proc_root="/proc")
    check(replay, pid, report)
    found = {s.record.inode: s.record for s in replay.sockets}
    assert {found[item.inode].netns for item in zoo.expected} == {own}
    out = subprocess.run(
        [sys.executable, "-m", "procsock", "--diag-file", saved, "--netns", str(report["netns"]), "--json"],
        capture_output=True, text=True, check=True,
    )
    listed = json.loads(out.stdout)["sockets"]
    assert {s["netns"] for s in listed} == {report["netns"]}
    assert {inode for _, inode in (report[name] for name in ("listen", "client", "server", "udp", "unix"))} <= {
        s["inode"] for s in listed
    }
    if shutil.which("ss") is None:
        return
    ss = subprocess.run(["ss", "-tanH"], env=dict(os.environ, TCPDIAG_FILE=saved), capture_output=True, text=True)
    assert ss.returncode == 0 and ss.stderr == ""
    shown = {(f[0], ss_endpoint(f[3]), ss_endpoint(f[4])) for f in (line.split() for line in ss.stdout.splitlines())}
    for item in zoo.expected:
        if item.kind == "tcp":
            record = found[item.inode]
            assert (record.state.label, model_endpoint(record.local), model_endpoint(record.remote)) in shown
    assert not any(local == (ipaddress.ip_address("127.0.0.1"), 4242) for _, local, _ in shown) or any(
        r.netns == own and str(r.local) == "127.0.0.1:4242" for r in found.values()
    )  # the other namespace's listener is past the first NLMSG_DONE: ss never reads it
