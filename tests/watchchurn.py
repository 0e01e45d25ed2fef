"""Runs for tests/test_watch.py, in a world of their own (private pid and network namespaces): a
churner (tests/churner.py) opens and closes sockets while procsock.watch looks on.

Usage: watchchurn.py churn|soak RATE POLLS. Prints one JSON object: what the test asserts on.
churn: the events of POLLS polls of the churn, then of two more after the churner ended.
soak: tracemalloc's growth over POLLS polls, after 20 polls of warming up.
Or watchchurn.py flood DURATION INTERVAL: a watch of DURATION seconds while a child opens and closes
UDP sockets as fast as it can (faster than destroys are decoded): how long the watch took, how long
a poll takes in the flood, how far the resident memory grew, the events counted.
Or watchchurn.py forge INTERVAL POLLS: a watch of POLLS polls while a child sends forged destroy
messages to the destroy groups as fast as it can: the gaps said, the sockets invented.
"""

import collections
import gc
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc

import procsock
import procsock.api

CHURNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "churner.py")
FLOODER = ("import socket, sys\nprint('ready', flush=True)\nwhile True:\n"
           "    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()\n")


def until(events, polls, seen=None):
    """Read events until `polls` polls were made (each poll during a churn brings events)."""
    for event in events:
        if seen is not None:
            seen.append(event)
        if events.polls >= polls:
            return
    raise SystemExit("the watch ended before %d polls" % polls)


def read_log(log):
    """(inode -> fd of every socket the churner held, how many TCP sockets it opened and closed,
    its listener's inode)"""
    ever, opened_tcp, listener = {}, 0, None
    log.seek(0)
    for line in log:
        tag, *fields = line.split()
        if tag in "SO":
            ever[int(fields[1])] = int(fields[0])
            opened_tcp += tag == "O" and fields[2] == "tcp"
            listener = listener or (int(fields[1]) if tag == "S" and fields[2] == "tcp" else None)
    return ever, opened_tcp, listener


def tcp_closes(seen, listener):
    return [e for e in seen if e.kind == "close" and e.socket.record.kind.name == "tcp"
            and e.socket.record.inode != listener]


def main(mode, rate, polls):
    log = tempfile.NamedTemporaryFile("r", prefix="watchchurn-", suffix=".log")
    seen = []
    with procsock.watch(kind=["tcp", "udp", "unix"], interval=0.02, duration=600) as events:
        churner = subprocess.Popen([sys.executable, CHURNER, log.name, str(rate)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, bufsize=1)
        assert churner.stdout.readline() == "ready\n"
        churner.stdin.write("W 1e300\n")  # its forked children may go at once
        if mode == "soak":
            until(events, 20)
            gc.collect()
            tracemalloc.start()
            begin = tracemalloc.take_snapshot()
            until(events, 20 + polls)
            gc.collect()
            grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(begin, "filename"))
            tracemalloc.stop()
            churner.stdin.close()
            churner.wait()
            print(json.dumps({"grown": grown, "polls": polls}))
            return
        until(events, polls, seen)
        churner.stdin.close()
        churner.wait()
        ever, opened_tcp, listener = read_log(log)
        # the kernel sends destroys from a work queue, some time after the close: poll until every
        # connection is closed or 50 polls in a row bring nothing (a quiet world sends no event)
        quiet = 0
        while quiet < 50 and len(tcp_closes(seen, listener)) < opened_tcp:
            last = events.poll_now()
            seen += last
            quiet = 0 if last else quiet + 1
    tcp = [e for e in seen if e.socket is not None and e.socket.record.kind.name == "tcp"]
    closes = tcp_closes(seen, listener)
    print(json.dumps({
        "opened_tcp": opened_tcp,
        "closes": len(closes),
        "from_kernel": len([e for e in closes if e.source == "destroy"]),
        "with_owners": len([e for e in closes if e.socket.owners]),
        "repeated": [c for c, n in collections.Counter(e.socket.record.cookie for e in closes).items() if n > 1],
        "lost": [e.text for e in seen if e.kind == "gap" and e.source == "destroy"],
        "listener": [" ".join((e.kind,) + e.changed) for e in tcp if e.socket.record.inode == listener],
        "wrong_owners": [repr(e) for e in seen if e.socket is not None for o in e.socket.owners
                         if o.pid == churner.pid and ever.get(e.socket.record.inode) != o.fd],
        "invented": [repr(e) for e in tcp if e.kind == "open" and e.socket.record.inode
                     and e.socket.record.inode not in ever],
    }))


def forged_destroy(cookie):
    """A destroy message as the kernel would send it, of a TCP socket 127.0.0.1:1 -> 127.0.0.1:2."""
    sockid = struct.pack(">HH", 1, 2) + socket.inet_aton("127.0.0.1") + bytes(12) + socket.inet_aton("127.0.0.1") \
        + bytes(12) + struct.pack("=III", 0, cookie & 0xFFFFFFFF, cookie >> 32)
    payload = struct.pack("=BBBB", socket.AF_INET, 7, 0, 0) + sockid + struct.pack("=IIIII", 0, 0, 0, 0, 0)
    payload += struct.pack("=HHB3x", 5, 5, 6)  # INET_DIAG_PROTOCOL: TCP
    return struct.pack("=IHHII", 16 + len(payload), 20, 0, 0, 0) + payload


def forge(interval, polls):
    cookie = 0x5EED00000000 + os.getpid()
    stop_r, stop_w = os.pipe()
    with procsock.watch(kind="tcp", interval=interval, duration=600) as events:
        reads = []
        listeners = list(events._watch.listeners.values())
        for listener in listeners:  # count the reads: each drops forgeries
            listener.read = (lambda read: lambda: reads.append(1) or read())(listener.read)
        child = os.fork()
        if child == 0:  # sends to SKNLGRP_INET_TCP_DESTROY (root of this namespace may) until told to stop
            os.close(stop_w)
            os.set_blocking(stop_r, False)
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4) as forger:
                message = forged_destroy(cookie)
                while True:
                    for _ in range(100):
                        forger.sendto(message, (0, 1))
                    try:
                        if os.read(stop_r, 1) == b"":
                            os._exit(0)
                    except BlockingIOError:
                        pass
        os.close(stop_r)
        seen = []
        until(events, polls, seen)
        os.close(stop_w)
        os.waitpid(child, 0)
    print(json.dumps({
        "polls": events.polls,
        "reads": len(reads),
        "gaps": [e.text for e in seen if e.kind == "gap" and e.source == "destroy"],
        "invented": [repr(e) for e in seen if e.socket is not None and e.socket.record.cookie == cookie],
    }))


def flood(duration, interval):
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER], stdout=subprocess.PIPE, text=True)
    try:
        assert flooder.stdout.readline() == "ready\n"
        counts = collections.Counter()
        procsock.api.default_registry()  # the plugins load before the clock starts
        grown_from = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.monotonic()
        with procsock.watch(kind="udp", interval=interval, duration=duration) as events:
            for event in events:  # counted, not kept: what the watch itself holds is measured
                counts[event.kind] += 1
            took = time.monotonic() - start
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grown_from
        polls = []
        for _ in range(3):  # what one poll of the flooded namespace takes here, now
            begin = time.monotonic()
            procsock.snapshot(kind="udp")
            polls.append(time.monotonic() - begin)
    finally:
        flooder.kill()
        flooder.wait()
    print(json.dumps({"took": took, "poll": max(polls), "grown_kib": grown, "counts": counts}))


if __name__ == "__main__":
    if sys.argv[1] == "flood":
        flood(float(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1] == "forge":
        forge(float(sys.argv[2]), int(sys.argv[3]))
    else:
        main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
