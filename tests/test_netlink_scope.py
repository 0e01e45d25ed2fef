"""The netlink backend under procsock.scope: one diag socket per namespace and operation, none
left open after it, and a reused socket that never takes an earlier request's reply for its own."""

import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import procsock
from procsock.api import default_registry
from procsock.compare import compare_backends
from procsock.model import UNIX, Netns, SocketKind, Source
from procsock.plugin import BackendUnavailable, scope
from procsock.resolve import join
from procsock.resolver import Resolver
from procsock_plugins import netlink
from procsock_plugins.netlink import codec, transport
from sockzoo import inode_of, needs_root

HOLDER = textwrap.dedent(
    """
    import json, os, socket, sys
    tcp = socket.socket()
    tcp.bind(("0.0.0.0", 0))
    tcp.listen()
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(b"\\0procsock-scope-test-%d" % os.getpid())
    unix.listen()
    held = [tcp, udp, unix]
    print(json.dumps({"netns": os.stat("/proc/self/ns/net").st_ino, "fd": tcp.fileno(),
                      "inodes": [os.fstat(s.fileno()).st_ino for s in held]}), flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def two_namespaces():
    """Two processes, each in a fresh network namespace of its own, holding TCP, UDP and unix
    sockets: {pid: report}."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    procs = []
    try:
        for _ in range(2):
            procs.append(subprocess.Popen(
                ["unshare", "-n", sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True,
            ))
        yield {proc.pid: json.loads(proc.stdout.readline()) for proc in procs}
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=60)


def own_sockets():
    """The inodes of every socket this process holds (whatever its namespace)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:  # the fd of the listing itself, gone
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def netns_of(pid):
    return os.stat("/proc/%d/ns/net" % pid).st_ino


@pytest.fixture
def opened(monkeypatch):
    """Every diag socket the netlink backend opens, with the namespace it was opened in (None:
    ours) and the number of requests each served: instrumentation of the real calls."""
    log = {"sockets": [], "requests": collections.Counter()}
    plain, inside, query = transport.open_diag_socket, transport.open_diag_socket_in, transport.query

    def open_here():  # also called by open_diag_socket_in, in its setns thread: logged there
        sock = plain()
        if threading.current_thread().name != "procsock-setns":
            log["sockets"].append((None, sock))
        return sock

    def open_in(proc_root, pid):
        namespace = netns_of(pid)
        sock = inside(proc_root, pid)
        log["sockets"].append((namespace, sock))
        return sock

    def counted(sock, *args, **kwargs):
        log["requests"][id(sock)] += 1
        return query(sock, *args, **kwargs)

    monkeypatch.setattr(netlink.transport, "open_diag_socket", open_here)
    monkeypatch.setattr(netlink.transport, "open_diag_socket_in", open_in)
    monkeypatch.setattr(netlink.transport, "query", counted)
    return log


@needs_root
def test_a_snapshot_opens_one_diag_socket_per_namespace(two_namespaces, opened):
    before = own_sockets()
    snap = procsock.snapshot()
    assert own_sockets() <= before  # nothing of ours left open (the walker's pipe is no socket)
    found = {s.record.inode: s.record for s in snap.sockets}
    mine = {report["netns"] for report in two_namespaces.values()}
    for report in two_namespaces.values():
        for inode in report["inodes"]:
            assert found[inode].netns == report["netns"] and found[inode].backend == "netlink"
    by_namespace = collections.defaultdict(list)
    for namespace, sock in opened["sockets"]:
        by_namespace[namespace].append(sock)
    ours = [by_namespace[namespace] for namespace in [None, *mine]]
    assert [len(sockets) for sockets in ours] == [1, 1, 1]  # other namespaces of a busy host: not ours to count
    for (sock,) in ours:
        assert sock.fileno() == -1  # closed
        assert opened["requests"][id(sock)] > 1  # one socket served several kinds


@needs_root
def test_describe_raw_dumps_and_compare_leave_no_socket_open(two_namespaces, opened):
    pid, report = next(iter(two_namespaces.items()))
    before = own_sockets()
    sock = procsock.describe_fd(pid, report["fd"], backend="netlink")
    assert sock.record.netns == report["netns"]
    dumps, _ = Resolver(default_registry(), Source.live()).raw_dumps()
    assert {netns.inode for _, netns, _, _ in dumps} >= {r["netns"] for r in two_namespaces.values()}
    compare_backends(default_registry(), Source.live(), "netlink", "procnet", procsock.make_query(pid=pid))
    assert own_sockets() <= before
    assert opened["sockets"] and all(s.fileno() == -1 for _, s in opened["sockets"])


def test_an_exception_inside_the_operation_still_closes_every_socket(zoo, opened, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("join failed")

    monkeypatch.setattr(join, "join", broken)
    before = own_sockets()
    with pytest.raises(RuntimeError, match="join failed"):
        procsock.snapshot(pid=os.getpid(), backend="netlink")
    assert opened["sockets"] and all(s.fileno() == -1 for _, s in opened["sockets"])
    assert own_sockets() <= before


def test_outside_an_operation_each_call_opens_and_closes_its_own(zoo, opened):
    for _ in range(2):
        collected = netlink.procsock_collect(UNIX, Source.live(), None, False, Netns(), False)
        assert collected.socket_records()
    assert len(opened["sockets"]) == 2 and all(s.fileno() == -1 for _, s in opened["sockets"])


def test_a_reply_left_unread_is_not_taken_for_the_next_requests():
    """A reused socket may hold the answer of an earlier request (read by no one): the next
    request skips it by its sequence number, whichever comes first, a dump or a lookup."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe, transport.open_diag_socket() as diag:
        probe.bind(b"\0procsock-scope-leftover-%d" % os.getpid())
        inode = inode_of(probe)
        stale = 0x5EED
        diag.send(codec.unix_request(stale, inode))  # a lookup whose answer nobody reads
        decoded, _, _ = transport.query(diag, lambda seq: codec.unix_request(seq), backend="netlink")
        assert [r.inode for r in decoded.socket_records()].count(inode) == 1  # from the dump, not twice
        assert any("message of another request (seq %d)" % stale in why for why in decoded.skipped)

        diag.send(codec.unix_request(stale))  # a whole dump whose answer nobody reads
        decoded, _, _ = transport.query(
            diag, lambda seq: codec.unix_request(seq, inode), lookup=True, backend="netlink"
        )
        assert [r.inode for r in decoded.socket_records()] == [inode]  # the lookup's answer alone


def test_a_request_answered_with_an_errno_leaves_the_socket_to_the_next_kind(zoo, opened):
    """A family the kernel does not serve is answered in full with an errno (here EINVAL: no
    address family 255): nothing is left unread, so the operation's socket stays for the next kind."""
    unserved = SocketKind("unserved", 255, "tcp")
    with scope():
        with pytest.raises(BackendUnavailable, match="EINVAL"):
            netlink.procsock_collect(unserved, Source.live(), None, False, Netns(), False)
        assert netlink.procsock_collect(UNIX, Source.live(), None, False, Netns(), False).socket_records()
        assert len(opened["sockets"]) == 1 and opened["sockets"][0][1].fileno() != -1
    assert opened["sockets"][0][1].fileno() == -1
