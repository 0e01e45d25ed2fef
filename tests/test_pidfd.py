"""The pidfd backend: exact targeted lookups through a copy of the holder's fd, no fd left behind."""

import os
import socket

import pytest

import procsock
from procsock.compare import compare_records
from procsock.model import INET_KINDS, Netns, Source
from procsock_plugins import netlink, pidfd
from sockzoo import inode_of, needs_root

pytestmark = pytest.mark.skipif(
    pidfd.procsock_unavailable(Source.live()) is not None, reason="pidfd_getfd is not available here"
)


def test_inet_lookups_are_answered_by_pidfd_and_agree_with_netlink(zoo):
    inet = [item for item in zoo.expected if not item.kind.startswith("unix")]
    found = {}
    for item in inet:
        sock = procsock.describe_fd(os.getpid(), item.sock.fileno())
        assert sock.record.backend == "pidfd", item.label
        rec = sock.record
        assert (rec.kind.name, rec.state, rec.local, rec.remote) == (item.kind, item.state, item.local, item.remote)
        found[rec.inode] = rec
    for kind in INET_KINDS:
        ours = [r for r in found.values() if r.kind == kind]
        if not ours:
            continue
        wanted = frozenset(r.inode for r in ours)
        theirs = [r for r in netlink.procsock_collect(kind, Source.live(), None, False, Netns(), False).socket_records()
                  if r.inode in wanted]
        only_a, only_b, diffs = compare_records(kind, ours, theirs)
        assert (only_a, only_b, [d for d in diffs if d.field != "netns"]) == ([], [], []), kind.name


@needs_root
def test_a_raw_socket_beside_netlink_and_packet_ones_is_answered(zoo):
    """Netlink and packet sockets are SOCK_RAW too: taken for raw6, one crashed the whole raw6
    answer of a process (a bound netlink socket: most daemons hold one), and with
    `--backend pidfd` its raw6 sockets went unresolved."""
    held = [socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0), socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0),
            socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)]
    try:
        held[0].bind((0, 0))
        raw6 = inode_of(held[2])
        snap = procsock.snapshot(pid=os.getpid(), backend="pidfd", kind="raw6")
    finally:
        for sock in held:
            sock.close()
    assert [note.text for note in snap.notes if "pidfd" in note.text] == []
    assert raw6 in {sock.record.inode for sock in snap.sockets}
    assert {sock.record.kind.name for sock in snap.sockets} == {"raw6"}


def test_another_process_socket_and_listener_queues():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(3)
        client = socket.create_connection(listener.getsockname())
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # holds inherited copies until told to go
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        try:
            record = procsock.describe_fd(child, listener.fileno()).record
            assert record.backend == "pidfd"
            assert (record.state.name, record.rx_queue, record.tx_queue) == ("LISTEN", 1, 3)
            assert record.inode == inode_of(listener) and record.uid == os.getuid()
        finally:
            os.write(write_end, b"x")
            os.waitpid(child, 0)
            for fd in (read_end, write_end):
                os.close(fd)
            client.close()


def test_no_fd_is_left_open_after_many_lookups_failing_ones_included():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # bound only, pidfd would defer it to sock_diag
        dead = os.fork()
        if dead == 0:
            os._exit(0)
        os.waitpid(dead, 0)
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(100):
            assert procsock.describe_fd(os.getpid(), sock.fileno()).record.backend == "pidfd"
            with pytest.raises(procsock.NoSuchProcess):
                procsock.describe_fd(dead, 3)
            collected = pidfd.procsock_collect(
                procsock.model.TCP, Source.live(), frozenset({inode_of(sock)}), False, Netns(),
                {inode_of(sock): [procsock.Owner(os.getpid(), 999, "x", 0)]},
            )
            assert collected.socket_records() == () and collected.skipped
        assert len(os.listdir("/proc/self/fd")) == before


def test_whole_tables_and_details_go_to_the_table_backends(zoo):
    snap = procsock.snapshot()
    assert "pidfd" not in snap.answered_by.values()
    tcp = next(item for item in zoo.expected if item.kind == "tcp")
    detailed = procsock.describe_fd(os.getpid(), tcp.sock.fileno(), details=True).record
    assert detailed.backend == "netlink" and detailed.extended is not None


def test_an_unbound_socket_is_settled_not_asked_of_every_other_backend():
    """pidfd reads an unbound UDP socket's fd: no table lists it, so no other backend dumps a whole
    table looking for it (at 100k sockets that cost a second), and every path gives one reason."""
    from procsock.backends import Registry
    from procsock.model import UDP6, Query, Source
    from procsock.resolver import Resolver
    from stubs import StubBackend

    if "pidfd" not in {b.name for b in Registry.from_entry_points().backends}:
        pytest.skip("no pidfd backend here")
    witness = StubBackend("witness", 1, [UDP6])
    registry = Registry.from_entry_points()
    registry.register(witness, "witness")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as unbound:
        inode = os.fstat(unbound.fileno()).st_ino
        resolver = Resolver(registry, Source.live())
        if "pidfd" not in {b.name for b in resolver.usable_backends()}:
            pytest.skip("pidfd is not usable here (needs pidfd_getfd and ptrace rights)")
        mine = resolver.snapshot(Query(pid=frozenset({os.getpid()})))
        assert [inodes for _, inodes in witness.calls if inodes and inode in inodes] == []
        every = procsock.snapshot()
        assert mine.unresolved[inode].reason == every.unresolved[inode].reason
        assert mine.unresolved[inode].reason.startswith("unbound: in no kernel table")
