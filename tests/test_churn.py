"""Snapshots stay right while the host changes under them: other processes open and close about
a thousand sockets a second and fork children that hold sockets and exit."""

import collections
import os
import subprocess
import sys
import time

import procsock

CHURN_SECONDS = 6.0

# Opens and closes TCP connections (closed with SO_LINGER 0: no TIME_WAIT pile-up), unix
# socketpairs and forked children holding a socket, about 1,000 sockets a second, until killed.
CHURNER = r"""
import os, socket, struct, time
LINGER_0 = struct.pack("ii", 1, 0)
opened = 0
start = time.monotonic()
while True:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    pair = socket.socketpair()
    for s in (client, server, listener):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        s.close()
    for s in pair:
        s.close()
    opened += 5
    if opened % 50 == 0:
        child = os.fork()
        if child == 0:
            held = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            time.sleep(0.02)
            os._exit(0)
        os.waitpid(child, 0)
    ahead = opened / 1000 - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
"""

# Holds sockets for the whole test and says which fd holds which inode.
HOLDER = r"""
import os, socket, sys
udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp6.bind(("::1", 0))
held = [socket.create_server(("127.0.0.1", 0)), *socket.socketpair(), udp6]
for s in held:
    print(s.fileno(), os.fstat(s.fileno()).st_ino, flush=True)
sys.stdin.read()
"""


def test_snapshots_under_churn_stay_consistent():
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    held = dict(tuple(map(int, holder.stdout.readline().split()))[::-1] for _ in range(4))  # inode → fd
    churners = [subprocess.Popen([sys.executable, "-c", CHURNER]) for _ in range(2)]
    snapshots = retries = 0
    problems = collections.Counter()
    try:
        deadline = time.monotonic() + CHURN_SECONDS
        while time.monotonic() < deadline:
            snap = procsock.snapshot(backend=("netlink", "procnet", None)[snapshots % 3])
            snapshots += 1
            retries += snap.retries
            inodes = [s.record.inode for s in snap.sockets if s.record.inode]
            if len(inodes) != len(set(inodes)):
                problems["a socket listed twice"] += 1
            by_inode = {s.record.inode: s for s in snap.sockets}
            for inode, fd in held.items():
                sock = by_inode.get(inode)
                if sock is None or [(o.pid, o.fd) for o in sock.owners] != [(holder.pid, fd)]:
                    problems["a held socket missing or with wrong owners"] += 1
            for sock in snap.sockets:
                if any(o.pid == holder.pid for o in sock.owners) and sock.record.inode not in held:
                    problems["the holder named as owner of a socket it does not hold"] += 1
    finally:
        for churner in churners:
            churner.kill()
            churner.wait()
        holder.communicate("")
    assert all(churner.returncode is not None for churner in churners)
    assert snapshots >= 10 and retries >= 0
    assert not problems, dict(problems)
