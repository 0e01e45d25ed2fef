"""Open N real sockets of a realistic mix over P processes, print READY, hold them, clean up.

    python bench/workload.py --sockets 10000 --procs 50 [--netns 5]

The mix: TCP listeners and established pairs (IPv4 and IPv6), UDP bound and connected, unix
stream listeners with connections, dgram and seqpacket sockets with filesystem, abstract and no
names, and socketpairs. With --netns K, K of the processes each open theirs in a network namespace
of their own (root). Holds them until stdin closes or SIGTERM (to this process or a worker); TCP
sockets close with SO_LINGER 0, so no TIME_WAIT is left behind. Raises RLIMIT_NOFILE as needed.
"""

import argparse
import ctypes
import fcntl
import os
import resource
import signal
import socket
import struct
import sys
import tempfile

LINGER_OFF = struct.pack("ii", 1, 0)
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ_FLAGS = struct.Struct("16sH14x")  # struct ifreq: name, ifr_flags


def enter_new_netns() -> None:
    """Move this process into a new network namespace and bring its loopback up (needs root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, "unshare(CLONE_NEWNET): %s" % os.strerror(code))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _, flags = IFREQ_FLAGS.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, IFREQ_FLAGS.pack(b"lo", 0)))
        fcntl.ioctl(sock, SIOCSIFFLAGS, IFREQ_FLAGS.pack(b"lo", flags | IFF_UP))


def tcp_pair(family, host, held):
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen(64)
    client = socket.socket(family)
    client.connect(listener.getsockname()[:2])
    server, _ = listener.accept()
    held += [listener, client, server]


def udp_pair(family, host, held):
    bound = socket.socket(family, socket.SOCK_DGRAM)
    bound.bind((host, 0))
    connected = socket.socket(family, socket.SOCK_DGRAM)
    connected.connect(bound.getsockname()[:2])
    held += [bound, connected]


def unix_group(directory, index, held):
    path = os.path.join(directory, "s%d-%d" % (os.getpid(), index))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(8)
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    held += [listener, client, listener.accept()[0]]
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(b"\0procsock-bench-%d-%d" % (os.getpid(), index))
    held += [abstract, socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)]
    held += list(socket.socketpair())


MIX = (
    lambda d, i, held: tcp_pair(socket.AF_INET, "127.0.0.1", held),
    lambda d, i, held: tcp_pair(socket.AF_INET6, "::1", held),
    lambda d, i, held: udp_pair(socket.AF_INET, "127.0.0.1", held),
    lambda d, i, held: udp_pair(socket.AF_INET6, "::1", held),
    unix_group,
)


def hold(count: int, directory: str, ready_fd: int, own_netns: bool) -> None:
    """In a worker: open `count` sockets (in a new network namespace if asked), report, then
    sleep until killed."""
    held = []
    index = 0
    try:
        if own_netns:
            enter_new_netns()
        while len(held) < count:
            MIX[index % len(MIX)](directory, index, held)
            index += 1
    except OSError as exc:
        print("workload: worker %d: %s" % (os.getpid(), exc), file=sys.stderr)
        os.write(ready_fd, b"0")
        os._exit(1)
    os.write(ready_fd, b"1")
    signal.signal(signal.SIGTERM, lambda *_: close_all(held))
    signal.pause()


def close_all(held):
    for sock in held:
        if sock.family != socket.AF_UNIX and sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_OFF)
        sock.close()
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--procs", type=int, default=50)
    parser.add_argument("--netns", type=int, default=0, help="how many processes get a network namespace of their own")
    args = parser.parse_args()
    per = max(1, args.sockets // args.procs)
    limit = per + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
    directory = tempfile.mkdtemp(prefix="procsock-bench-")
    read_end, write_end = os.pipe()
    workers = []
    for number in range(args.procs):
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            hold(per, directory, write_end, number < args.netns)
        workers.append(pid)
    os.close(write_end)
    answers = b"".join(os.read(read_end, 1) for _ in workers)
    if answers != b"1" * len(workers):
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        print("workload: some workers could not open their sockets", file=sys.stderr)
        return 1
    elsewhere = " (%d in namespaces of their own)" % min(args.netns, args.procs) if args.netns else ""
    print("READY %d sockets in %d processes%s" % (per * args.procs, len(workers), elsewhere), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a SIGTERM cleans up too, no orphans
    try:
        sys.stdin.read()  # until the runner closes our stdin
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        for pid in workers:
            os.waitpid(pid, 0)
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
