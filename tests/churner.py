"""Churns sockets for tests/test_churn.py: opens and closes sockets at RATE a second and forks
short-lived children, until its stdin closes.

Usage: churner.py LOG RATE. Every socket it holds goes to LOG as "S|O fd inode kind" (S: held
the whole run, O: opened and closed again), every child as "F pid" (it holds what its parent
held then); "ready" on stdout once the S sockets are open; "N count" ends the log.
"""

import os
import select
import socket
import struct
import sys
import time


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
    opened, children, start = 0, [], time.monotonic()
    while not select.select([sys.stdin], [], [], 0)[0]:
        batch = [held("O", socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "udp"),
                 held("O", socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), "udp6"),
                 held("O", socket.create_connection(listener.getsockname()), "tcp")]
        batch.append(held("O", listener.accept()[0], "tcp"))
        for sock in batch[2:]:  # closed with a reset: no TIME-WAIT rows left behind for other tests
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        batch += [held("O", s, "unix") for s in socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)]
        opened += len(batch)
        if opened % 80 == 0:
            child = os.fork()
            if child == 0:
                time.sleep(0.05)
                os._exit(0)
            log.write("F %d\n" % child)
            children.append(child)
        for sock in batch:
            sock.close()
        children = [c for c in children if os.waitpid(c, os.WNOHANG)[0] == 0]
        time.sleep(max(0.0, start + opened / rate - time.monotonic()))
    for child in children:
        os.waitpid(child, 0)
    log.write("N %d\n" % opened)
    log.close()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
