"""A process holding a socket in each state it can reach, for tests/test_one_truth.py.

Run as root in a fresh network namespace (`unshare -n python stateszoo.py`): it builds its network
(loopback; a veth whose far end answers nobody, so a SYN to 192.0.2.99 is never answered; a second
namespace, held by a helper process, whose TCP Fast Open client reaches our listener while our
SYN-ACKs go into that silent veth), opens the zoo, waits until the kernel shows every TCP socket
in its state (polled, bounded), prints one JSON line {"sockets": {label: [fd, expected]}} and
holds everything until its standard input closes. `expected` is a State name, or "unbound" for a
socket in no kernel table.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import time

DEADLINE = 30.0  # seconds to reach every state: only a stuck kernel or host takes that long
SILENT_HOST = "192.0.2.99"  # TEST-NET-1 behind a veth that answers nothing
HERE, THERE = "198.51.100.1", "198.51.100.2"  # our veth end and the fast open client's
FAST_OPEN = "519"  # client and server on, no cookie needed either side (0x1 | 0x2 | 0x4 | 0x200)

HELPER = r"""
import socket, sys
open("/proc/sys/net/ipv4/tcp_fastopen", "w").write(sys.argv[1])
print("ready", flush=True)
host, port = sys.stdin.readline().split()
client = socket.socket()
client.setblocking(False)
client.sendto(b"hello", socket.MSG_FASTOPEN, (host, int(port)))  # SYN with data: accepted at once
print("sent", flush=True)
sys.stdin.read()
"""

TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 7: "CLOSE",
              8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN"}


def run(*commands: str) -> None:
    for command in commands:
        subprocess.run(command, shell=True, check=True, stdout=subprocess.DEVNULL)


def tcp_state(sock: socket.socket) -> str:
    return TCP_STATES.get(struct.unpack("=B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0], "?")


class Zoo:
    def __init__(self) -> None:
        self.held = {}  # label → (socket, expected)
        self.waits = []  # (label, TCP state the kernel must show)

    def add(self, label: str, sock: socket.socket, expected: str, tcp: str = "") -> socket.socket:
        self.held[label] = (sock, expected)
        if tcp:
            self.waits.append((label, tcp))
        return sock

    def pair(self, listener: socket.socket, buffer: int = 0):
        """A connected (client, accepted) pair to `listener`; small receive buffers on request."""
        client = socket.socket()
        if buffer:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        client.connect(listener.getsockname())
        accepted = listener.accept()[0]
        return client, accepted

    def wait(self) -> None:
        deadline = time.monotonic() + DEADLINE
        pause = 0.001
        while True:
            late = [(label, want, tcp_state(self.held[label][0])) for label, want in self.waits]
            late = [entry for entry in late if entry[1] != entry[2]]
            if not late:
                return
            if time.monotonic() > deadline:
                raise SystemExit("states not reached: %s" % late)
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def fill(sender: socket.socket) -> None:
    """Send until the kernel takes no more (the peer does not read): data stays queued."""
    sender.setblocking(False)
    chunk = bytes(65536)
    while True:
        try:
            sender.send(chunk)
        except BlockingIOError:
            return


def build(zoo: Zoo, helper: subprocess.Popen) -> None:
    listener = zoo.add("tcp listen", socket.socket(), "LISTEN", "LISTEN")
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    client, accepted = zoo.pair(listener)
    zoo.add("tcp established client", client, "ESTABLISHED", "ESTABLISHED")
    zoo.add("tcp established accepted", accepted, "ESTABLISHED", "ESTABLISHED")

    connecting = zoo.add("tcp syn-sent", socket.socket(), "SYN_SENT", "SYN_SENT")
    connecting.setblocking(False)
    # The most SYN retries the kernel allows (backoff capped at 120 s): the socket stays in SYN-SENT
    # for as long as a slow, busy host takes to read every path, not the default ~2 minutes.
    connecting.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 127)
    try:
        connecting.connect((SILENT_HOST, 9))
    except BlockingIOError:
        pass

    fast = socket.socket()
    fast.bind((HERE, 0))
    fast.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 4)
    fast.listen(4)
    zoo.add("tcp fast open listen", fast, "LISTEN", "LISTEN")
    helper.stdin.write("%s %d\n" % fast.getsockname())
    helper.stdin.flush()
    if helper.stdout.readline() != "sent\n":
        raise SystemExit("the fast open client did not start")
    zoo.add("tcp syn-recv (fast open, our SYN-ACK lost)", fast.accept()[0], "SYN_RECV", "SYN_RECV")

    # FIN-WAIT-1 and LAST-ACK: a FIN queued behind data the peer's full window holds back.
    sender, reader = zoo.pair(listener, buffer=4096)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    fill(sender)
    sender.shutdown(socket.SHUT_WR)
    zoo.add("tcp fin-wait-1", sender, "FIN_WAIT1", "FIN_WAIT1")
    zoo.add("tcp established, not reading", reader, "ESTABLISHED", "ESTABLISHED")

    closer, waiting = zoo.pair(listener)
    closer.shutdown(socket.SHUT_WR)
    zoo.add("tcp fin-wait-2", closer, "FIN_WAIT2", "FIN_WAIT2")
    zoo.add("tcp close-wait", waiting, "CLOSE_WAIT", "CLOSE_WAIT")

    slow, last = zoo.pair(listener, buffer=4096)
    slow.shutdown(socket.SHUT_WR)
    zoo.add("tcp fin-wait-2, not reading", slow, "FIN_WAIT2", "FIN_WAIT2")
    zoo.wait()  # the FIN has arrived: `last` is in CLOSE-WAIT
    fill(last)
    last.shutdown(socket.SHUT_WR)
    zoo.add("tcp last-ack", last, "LAST_ACK", "LAST_ACK")

    # Both FINs exchanged, fds still held: each socket is CLOSE and its port released (the
    # connection itself lives on as an inode-0 TIME-WAIT row that no fd holds).
    first, second = zoo.pair(listener)
    first.shutdown(socket.SHUT_WR)
    second.shutdown(socket.SHUT_WR)
    zoo.add("tcp closed after both FINs (active side)", first, "unbound", "CLOSE")
    zoo.add("tcp closed after both FINs (passive side)", second, "unbound", "CLOSE")

    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))
    refused_at = closed_port.getsockname()
    closed_port.close()
    for label, bind in (("tcp refused connect", False), ("tcp bound, then refused connect", True)):
        refused = zoo.add(label, socket.socket(), "unbound", "CLOSE")
        if bind:
            refused.bind(("127.0.0.1", 0))
        try:
            refused.connect(refused_at)
        except ConnectionRefusedError:
            pass
        else:
            raise SystemExit("a connect to a closed port was not refused")

    zoo.add("tcp unbound", socket.socket(), "unbound", "CLOSE")
    zoo.add("tcp6 unbound", socket.socket(socket.AF_INET6), "unbound", "CLOSE")
    zoo.add("tcp bound-inactive", socket.socket(), "BOUND_INACTIVE", "CLOSE").bind(("127.0.0.1", 0))
    zoo.add("tcp6 bound-inactive", socket.socket(socket.AF_INET6), "BOUND_INACTIVE", "CLOSE").bind(("::1", 0))

    udp = zoo.add("udp bound", socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "CLOSE")
    udp.bind(("127.0.0.1", 0))
    zoo.add("udp connected", socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "ESTABLISHED").connect(
        udp.getsockname())
    zoo.add("udp unbound", socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "unbound")
    zoo.add("udp6 unbound", socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), "unbound")
    zoo.add("udp6 bound", socket.socket(socket.AF_INET6, socket.SOCK_DGRAM), "CLOSE").bind(("::1", 0))

    build_unix(zoo)
    zoo.wait()


def build_unix(zoo: Zoo) -> None:
    tag = b"procsock-states-%d" % os.getpid()
    path = "/tmp/procsock-states-%d.sock" % os.getpid()
    listener = zoo.add("unix stream listen", socket.socket(socket.AF_UNIX), "LISTEN")
    listener.bind(path)
    listener.listen()
    client = zoo.add("unix stream client", socket.socket(socket.AF_UNIX), "ESTABLISHED")
    client.connect(path)
    os.unlink(path)  # the socket keeps its name; nothing is left behind
    zoo.add("unix stream accepted", listener.accept()[0], "ESTABLISHED")
    seq = zoo.add("unix seqpacket listen (abstract)", socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET), "LISTEN")
    seq.bind(b"\0" + tag + b"-seq")
    seq.listen()
    seq_client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    seq_client.connect(b"\0" + tag + b"-seq")
    zoo.add("unix seqpacket client", seq_client, "ESTABLISHED")
    zoo.add("unix seqpacket accepted", seq.accept()[0], "ESTABLISHED")
    zoo.add("unix dgram bound (abstract)", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "CLOSE").bind(
        b"\0" + tag + b"-alone")
    # The kernel marks a datagram socket ESTABLISHED once another connects to it, as ss shows.
    receiver = zoo.add("unix dgram connected to", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "ESTABLISHED")
    receiver.bind(b"\0" + tag + b"-dgram")
    sender = zoo.add("unix dgram connected", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "ESTABLISHED")
    sender.connect(b"\0" + tag + b"-dgram")
    zoo.add("unix stream unbound", socket.socket(socket.AF_UNIX), "CLOSE")
    zoo.add("unix dgram unbound", socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), "CLOSE")
    for index, end in enumerate(socket.socketpair()):
        zoo.add("unix socketpair %d" % index, end, "ESTABLISHED")


def main() -> None:
    run("ip link set lo up",
        "ip link add vsilent type veth peer name vsilent2", "ip addr add 192.0.2.1/24 dev vsilent",
        "ip link set vsilent up", "ip link set vsilent2 up",
        # A permanent neighbour: no ARP that fails after a few seconds and fails the connect with
        # EHOSTUNREACH. The SYNs go out and nothing ever answers them.
        "ip neigh add %s lladdr 02:00:00:00:00:99 dev vsilent nud permanent" % SILENT_HOST)
    # This namespace's sysctls: fast open on; unanswered SYNs and SYN-ACKs retried for hours, so
    # the connecting sockets stay where they are however long a slow host takes to read them.
    for name, value in (("tcp_fastopen", FAST_OPEN), ("tcp_syn_retries", "127"), ("tcp_synack_retries", "255")):
        with open("/proc/sys/net/ipv4/" + name, "w") as sysctl:
            sysctl.write(value)
    helper = subprocess.Popen(["unshare", "-n", sys.executable, "-c", HELPER, FAST_OPEN],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if helper.stdout.readline() != "ready\n":
            raise SystemExit("the fast open client did not start")
        run("ip link add vfast type veth peer name vfast2 netns %d" % helper.pid,
            "ip addr add %s/24 dev vfast" % HERE, "ip link set vfast up",
            "nsenter -t %d -n sh -c 'ip link set lo up; ip addr add %s/24 dev vfast2; ip link set vfast2 up'"
            % (helper.pid, THERE),
            # Our answers to the client go into the silent veth: its fast open socket stays SYN-RECV.
            "ip route add %s/32 dev vsilent" % THERE,
            "ip neigh add %s lladdr 02:00:00:00:00:98 dev vsilent nud permanent" % THERE)
        for conf in ("all", "default", "vfast"):
            with open("/proc/sys/net/ipv4/conf/%s/rp_filter" % conf, "w") as sysctl:
                sysctl.write("0")
        zoo = Zoo()
        build(zoo, helper)
        held = {label: [sock.fileno(), expected] for label, (sock, expected) in zoo.held.items()}
        print(json.dumps({"sockets": held}), flush=True)
        sys.stdin.read()  # hold everything until the test is done
    finally:
        helper.stdin.close()
        helper.wait()


if __name__ == "__main__":
    main()
