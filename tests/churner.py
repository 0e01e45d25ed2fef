"""Churns sockets for tests/test_churn.py: opens and closes sockets at RATE a second and forks
children, until its stdin closes.

Usage: churner.py LOG RATE. Every socket it holds goes to LOG as "S|O fd inode kind" (S: held
the whole run, O: opened and closed again), every child as "F pid" (it holds what its parent
held then); "ready" on stdout once the S sockets are open; "N count" ends the log.

A child lives until the test has seen it: the test writes "W START" to stdin for each full walk it
completed (START: time.monotonic() when the walk began), and a child born before START is let go.
No fixed lifetime, so a slow walk on a busy host still meets the children. At most MAX_CHILDREN wait
at a time.
"""

import os
import select
import socket
import struct
import sys
import time

MAX_CHILDREN = 3


def main(path: str, rate: float) -> None:
    log = open(path, "w")

    def held(tag, sock, kind):
        log.write("%s %d %d %s\n" % (tag, sock.fileno(), os.fstat(sock.fileno()).st_ino, kind))
        return sock

    listener = held("S", socket.create_server(("127.0.0.1", 0)), "tcp")
    stable = [listener, held("S", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "unix")]
    stable[1].bind(b"\0procsock-churn-%d" % os.getpid())
    stable += [held("S", s, "unix") for s in socket.socketpair()]
    log.flush()
    print("ready", flush=True)
    opened, start = 0, time.monotonic()
    children = []  # (pid, birth time, the pipe end whose closing lets it exit)
    walked_since = float("-inf")  # the start of the latest full walk the test completed
    pending = b""
    while True:
        if select.select([0], [], [], 0)[0]:
            got = os.read(0, 4096)
            if not got:
                break
            *lines, pending = (pending + got).split(b"\n")
            walked_since = max([walked_since] + [float(line.split()[1]) for line in lines if line.startswith(b"W ")])
        for child in [c for c in children if c[1] < walked_since]:
            os.close(child[2])
            os.waitpid(child[0], 0)
            children.remove(child)
        batch = [held("O", socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "udp"),
                 held("O", socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), "udp6"),
                 held("O", socket.create_connection(listener.getsockname()), "tcp")]
        batch.append(held("O", listener.accept()[0], "tcp"))
        for sock in batch[2:]:  # closed with a reset: no TIME-WAIT rows left behind for other tests
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        batch += [held("O", s, "unix") for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)]
        opened += len(batch)
        if opened % 80 == 0 and len(children) < MAX_CHILDREN:
            wait, release = os.pipe()
            log.flush()  # the child must not write our buffered log lines again
            child = os.fork()
            if child == 0:
                for _, _, other in children:
                    os.close(other)
                os.close(release)
                os.read(wait, 1)
                os._exit(0)
            os.close(wait)
            children.append((child, time.monotonic(), release))
            log.write("F %d\n" % child)
            log.flush()
        for sock in batch:
            sock.close()
        time.sleep(max(0.0, start + opened / rate - time.monotonic()))
    for child, _, release in children:
        os.close(release)
        os.waitpid(child, 0)
    log.write("N %d\n" % opened)
    log.close()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
