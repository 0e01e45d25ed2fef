"""A hostile network namespace forging sock_diag replies: procsock believes only the kernel.

An unprivileged user makes its own user+net namespace, holds sockets there (so procsock reads that
namespace through a diag socket it creates inside it) and sprays forged replies at every
NETLINK_SOCK_DIAG port id its /proc/net/netlink shows: a TCP listener on 6.6.6.6:666 and a unix
socket named /forged, both claiming the inode of root's real unix listener, each followed by
NLMSG_DONE, for every sequence number it can guess.
"""

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
from sockzoo import inode_of, needs_root

SPRAYER = textwrap.dedent(
    """
    import json, os, socket, struct, subprocess, sys
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    target = int(sys.argv[1])  # the inode of root's unix listener, which the forgeries claim
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(b"\\0procsock-attacker-%d" % os.getpid())
    unix.listen()
    sender = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
    sender.bind((0, 0))
    own_port = sender.getsockname()[0]

    def message(msg_type, seq, payload):
        return struct.pack("=IHHII", 16 + len(payload), msg_type, 2, seq, 0) + payload

    def forged(seq):
        inet = struct.pack("=BBBB", 2, 10, 0, 0) + struct.pack(">HH", 666, 0)
        inet += bytes([6, 6, 6, 6]) + bytes(12) + bytes(16) + struct.pack("=8I", 0, 0, 0, 0, 0, 0, 0, target)
        name = b"/forged"
        attr = struct.pack("=HH", 4 + len(name), 0) + name + bytes(-len(name) % 4)
        unixmsg = struct.pack("=BBBxIII", 1, 1, 10, target, 0, 0) + attr
        return message(20, seq, inet) + message(20, seq, unixmsg) + message(3, seq, struct.pack("=i", 0))

    batches = [b"".join(forged(seq) for seq in range(start, start + 256)) for start in range(1, 2049, 256)]
    print(json.dumps({
        "listener": os.fstat(listener.fileno()).st_ino, "listener_fd": listener.fileno(),
        "port": listener.getsockname()[1], "unix": os.fstat(unix.fileno()).st_ino,
        "netns": os.stat("/proc/self/ns/net").st_ino,
    }), flush=True)
    seen, sent = set(), 0
    while True:
        with open("/proc/net/netlink") as table:
            lines = table.read().splitlines()[1:]
        ports = {
            int(f[2]) for f in (line.split() for line in lines) if f[1] == "4" and f[2] not in ("0", str(own_port))
        }
        for port in ports:
            if port not in seen:
                seen.add(port)
                print("seen %d" % port, flush=True)
            for batch in batches:
                try:
                    sender.sendto(batch, (port, 0))
                    sent += 1
                except OSError:
                    break  # closed meanwhile, or refuses us
    """
)


def _world_python():
    """An interpreter any user may run (the sprayer runs as nobody; a venv may live in /root)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        real = os.path.realpath(candidate)
        parts = [real] + [os.path.dirname(real)]
        while parts[-1] != "/":
            parts.append(os.path.dirname(parts[-1]))
        if os.path.exists(real) and all(os.stat(p).st_mode & 0o001 for p in parts):
            return real
    pytest.skip("no Python interpreter here that an unprivileged user may run")


@pytest.fixture
def sprayer():
    """Root's real unix and TCP listeners, and the unprivileged sprayer in its own namespace."""
    for tool in ("setpriv", "unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    with socket.socket(socket.AF_UNIX) as unix, socket.socket() as tcp:
        unix.bind(b"\0procsock-root-listener-%d" % os.getpid())
        unix.listen()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        proc = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "unshare", "-Urn",
             _world_python(), "-c", SPRAYER, str(inode_of(unix))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            line = proc.stdout.readline()
            if not line:
                pytest.skip("an unprivileged user namespace could not be made: %s" % proc.stderr.read().strip())
            seen = []
            reader = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)
            reader.start()
            yield {"unix": unix, "tcp": tcp, "pid": proc.pid, "attacker": json.loads(line), "seen": seen}
        finally:
            proc.kill()
            proc.wait()


def _check(sockets, state, how):
    """Nothing forged; root's listeners and the attacker's own sockets, with their owners."""
    attacker, me = state["attacker"], os.getpid()
    by_inode = {}
    for sock in sockets:
        local = sock["local"]
        assert local.get("address") != "6.6.6.6", (how, sock)
        assert b"/forged" not in bytes.fromhex(local.get("name_hex", "")), (how, sock)
        by_inode.setdefault(sock["inode"], []).append(sock)
    (root_unix,) = by_inode[inode_of(state["unix"])]
    assert root_unix["kind"] == "unix" and root_unix["state"] == "LISTEN", how
    assert bytes.fromhex(root_unix["local"]["name_hex"]) == b"\0procsock-root-listener-%d" % me, how
    assert {(o["pid"], o["fd"]) for o in root_unix["owners"]} == {(me, state["unix"].fileno())}, how
    (root_tcp,) = by_inode[inode_of(state["tcp"])]
    assert root_tcp["local"]["port"] == state["tcp"].getsockname()[1], how
    assert {(o["pid"], o["fd"]) for o in root_tcp["owners"]} == {(me, state["tcp"].fileno())}, how
    (theirs,) = by_inode[attacker["listener"]]
    got = (theirs["state"], theirs["local"]["port"], theirs["netns"])
    assert got == ("LISTEN", attacker["port"], attacker["netns"]), how
    assert any(o["fd"] == attacker["listener_fd"] for o in theirs["owners"]), how
    (theirs_unix,) = by_inode[attacker["unix"]]
    assert theirs_unix["netns"] == attacker["netns"], how


@needs_root
def test_forged_replies_from_a_hostile_namespace_are_never_believed(sprayer):
    from procsock.render import socket_to_dict

    rounds = 0
    while rounds < 6 or len(sprayer["seen"]) < 12:  # until the sprayer has aimed at many of our sockets
        assert rounds < 60, "the sprayer never saw our diag sockets: %r" % sprayer["seen"]
        for args in ((), ("--backend", "netlink")):
            out = subprocess.run(
                [sys.executable, "-m", "procsock", "--json", *args], capture_output=True, text=True, timeout=120
            )
            assert out.returncode == 0, out.stderr
            _check(json.loads(out.stdout)["sockets"], sprayer, "cli %s" % (args,))
        for backend in (None, "netlink"):
            snap = procsock.snapshot(backend=backend)
            _check([socket_to_dict(s) for s in snap.sockets], sprayer, "api %s" % backend)
        rounds += 1


HOLDER = textwrap.dedent(
    """
    import json, os, socket, sys
    channel = socket.socket(fileno=int(sys.argv[1]))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(b"\\0procsock-b-listener-%d" % os.getpid())
    listener.listen()
    passed = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    passed.bind(b"\\0procsock-b-passed-%d" % os.getpid())
    socket.send_fds(channel, [b"x"], [passed.fileno()])
    report = {"listener": os.fstat(listener.fileno()).st_ino, "passed": os.fstat(passed.fileno()).st_ino,
              "netns": os.stat("/proc/self/ns/net").st_ino}
    passed.close()  # from now on only the test's process holds it: namespace B alone reports it
    print(json.dumps(report), flush=True)
    sys.stdin.read()
    """
)

# Binds unix names holding a newline, so that its /proc/net/unix shows a forged row for each inode
# in argv, named /forgedproc.
ROW_FORGER = textwrap.dedent(
    """
    import os, socket, sys
    held = []
    for inode in sys.argv[1:]:
        sock = socket.socket(socket.AF_UNIX)
        row = "0000000000000000: 00000002 00000000 00010000 0001 0A %s /forgedproc" % inode
        sock.bind(b"\\0x%d\\n" % len(held) + row.encode())
        held.append(sock)
    with open("/proc/self/net/unix", "rb") as table:
        assert table.read().count(b"/forgedproc") == len(held)
    print(os.stat("/proc/self/ns/net").st_ino, flush=True)
    sys.stdin.read()
    """
)


@needs_root
def test_a_namespace_may_report_only_sockets_its_own_processes_hold_or_no_one_else_reported():
    """Namespace C forges /proc/net/unix rows (a name holding a newline) claiming a listener of
    namespace B and one of ours: procnet's rows of C for them are left out and counted, B's and
    ours stand. A socket created in B and passed to us over SCM_RIGHTS is reported by B alone:
    it stands, held by us, in B."""
    for tool in ("setpriv", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    ours, theirs = socket.socketpair()
    with ours, theirs, socket.socket(socket.AF_UNIX) as mine:
        mine.bind(b"\0procsock-own-listener-%d" % os.getpid())
        mine.listen()
        holder = subprocess.Popen(
            ["unshare", "-n", sys.executable, "-c", HOLDER, str(theirs.fileno())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=[theirs.fileno()],
        )
        try:
            _, (passed_fd,), _, _ = socket.recv_fds(ours, 1, 1)
            report = json.loads(holder.stdout.readline())
            forger = subprocess.Popen(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "unshare", "-Urn",
                 _world_python(), "-c", ROW_FORGER, str(report["listener"]), str(inode_of(mine))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            try:
                line = forger.stdout.readline()
                assert line, forger.stderr.read()
                hostile_netns = int(line)
                with socket.socket(fileno=passed_fd) as passed:
                    for backend in ("procnet", None):
                        snap = procsock.snapshot(backend=backend)
                        found = {}
                        for sock in snap.sockets:
                            assert getattr(sock.record.local, "name", b"") != b"/forgedproc", sock  # a forged row
                            found.setdefault(sock.record.inode, []).append(sock)
                        (b_listener,) = found[report["listener"]]
                        got = (b_listener.record.netns, [o.pid for o in b_listener.owners])
                        assert got == (report["netns"], [holder.pid])
                        (own,) = found[inode_of(mine)]
                        assert [(o.pid, o.fd) for o in own.owners] == [(os.getpid(), mine.fileno())]
                        (moved,) = found[report["passed"]]
                        assert moved.record.netns == report["netns"]
                        assert [(o.pid, o.fd) for o in moved.owners] == [(os.getpid(), passed.fileno())]
                        claims = [n.text for n in snap.notes
                                  if n.netns == hostile_netns and n.code == "claimed-elsewhere"]
                        if backend == "procnet":
                            assert claims == [
                                "netns %d reported 2 sockets that processes of another namespace hold and that "
                                "namespace reported too: left out (forged?)" % hostile_netns
                            ]
                        assert report["passed"] not in snap.unresolved
            finally:
                forger.stdin.close()
                forger.wait(timeout=30)
        finally:
            holder.stdin.close()
            holder.wait(timeout=30)
