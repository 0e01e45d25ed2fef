"""-r/--resolve: host and service names where the system has them, never an unbounded wait."""

import os
import socket
import subprocess
import sys
import threading

from procsock.names import Names, host_names, service_name
from sockzoo import needs_root

LOOPBACK = socket.inet_aton("127.0.0.1")
OTHER = socket.inet_aton("192.0.2.1")


def test_an_address_whose_lookup_never_answers_stays_numeric():
    never = threading.Event()

    def lookup(packed):
        if packed == OTHER:
            never.wait()  # a DNS server that never answers
        return "host-%d" % packed[-1]

    try:
        found = host_names([LOOPBACK, OTHER, bytes(4), bytes(16), LOOPBACK], budget=0.5, lookup=lookup)
    finally:
        never.set()
    assert found == {LOOPBACK: "host-1"}  # the wildcards were not looked up, the silent one left out


def test_a_hostile_name_is_escaped():
    found = host_names([LOOPBACK], lookup=lambda packed: "evil\x1b[2Jname\n")
    assert found == {LOOPBACK: "evil\\x1b[2Jname\\n"}


def test_a_name_that_reads_as_another_address_stays_numeric():
    """A PTR record may answer "10.0.0.1" for 192.0.2.1: -r must not show one address as another."""
    names = {LOOPBACK: "10.0.0.1", OTHER: "fe80::1%eth0"}
    assert host_names([LOOPBACK, OTHER], lookup=names.get) == {}
    assert host_names([LOOPBACK], lookup=lambda packed: "10.0.0.1.example.") == {LOOPBACK: "10.0.0.1.example."}


def test_endpoints_with_names_as_ss_r_shows_them():
    names = Names({LOOPBACK: "localhost"})
    ssh = service_name(22, "tcp")
    assert names.endpoint_text(LOOPBACK, 22, "tcp", "127.0.0.1") == "localhost:%s" % (ssh or 22)
    assert names.endpoint_text(OTHER, 0, "tcp", "192.0.2.1") == "192.0.2.1:*"
    assert names.endpoint_text(bytes(16), 65000, "udp", "::") == "[::]:%s" % (service_name(65000, "udp") or 65000)
    assert names.endpoint_text(OTHER, 1, "raw", "192.0.2.1") == "192.0.2.1:1"  # a raw socket's protocol


def test_the_command_shows_the_names_the_system_has():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        argv = [sys.executable, "-m", "procsock", "-tH", "--pid", str(os.getpid())]
        plain = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.split()
        named = subprocess.run(argv + ["-r"], capture_output=True, text=True, timeout=60).stdout.split()
        host = host_names([LOOPBACK]).get(LOOPBACK, "127.0.0.1")
        assert "127.0.0.1:%d" % port in plain
        assert "%s:%s" % (host, service_name(port, "tcp") or port) in named
    finally:
        listener.close()


NAMES = (b"ev\x1b[2Jil\x07", b"bad\xffname", b"443", b"*", b"a:443", b"good-name_1.x+y")


@needs_root
def test_a_service_name_that_is_not_one_shows_the_port_s_number(tmp_path):
    """The services database is no one's promise either (NSS may read it from the network). In a
    private mount namespace's /etc/services, names with control bytes, not UTF-8, or that read as
    another port (443, *, a:443) are not shown: the port's number is; a real name is."""
    listeners = [socket.socket() for _ in NAMES]
    try:
        for listener in listeners:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
        ports = [listener.getsockname()[1] for listener in listeners]
        services = tmp_path / "services"
        services.write_bytes(b"".join(b"%s %d/tcp\n" % pair for pair in zip(NAMES, ports)))
        shown = subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/services && exec "$@"', str(services),
             sys.executable, "-m", "procsock", "-tHr", "--pid", str(os.getpid())],
            capture_output=True, timeout=60,
        )
    finally:
        for listener in listeners:
            listener.close()
    assert shown.returncode == 0 and shown.stderr == b"", shown.stderr
    locals_ = {line.split()[4] for line in shown.stdout.decode().splitlines()}
    host = host_names([LOOPBACK]).get(LOOPBACK, "127.0.0.1")
    assert {"%s:%d" % (host, port) for port in ports[:-1]} | {"%s:good-name_1.x+y" % host} <= locals_
    assert b"\x1b" not in shown.stdout and b"\x07" not in shown.stdout
