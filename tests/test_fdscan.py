"""The fd walk on the live /proc: owners of real sockets, shared fds, vanished and odd entries."""

import os
import socket

import pytest

from procsock.errors import NoSuchProcess, NotASocket
from procsock.fdscan import process_identity, protocol_name, scan_all_in_background, scan_fds, socket_inode
from procsock.model import NETLINK, TCP, TCP6, UDP, UDP6, UDPLITE, UDPLITE6, UNIX
from sockzoo import inode_of


def test_scan_finds_own_sockets_with_fd_and_identity():
    with socket.socket() as tcp, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram:
        scan = scan_fds("/proc", [os.getpid()])
        for sock in (tcp, dgram):
            (owner,) = scan.owners[inode_of(sock)]
            assert (owner.pid, owner.fd) == (os.getpid(), sock.fileno())
            with open("/proc/self/comm", "rb") as f:
                assert os.fsencode(owner.name) == f.read().rstrip(b"\n")
            assert owner.uid == os.getuid()


def test_a_duplicated_fd_and_a_forked_child_are_all_owners():
    a, b = socket.socketpair()
    extra = os.dup(a.fileno())
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # holds the inherited sockets until the parent has looked
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    try:
        scan = scan_fds("/proc")
        owners = {(o.pid, o.fd) for o in scan.owners[inode_of(a)]}
        assert owners == {
            (os.getpid(), a.fileno()),
            (os.getpid(), extra),
            (child, a.fileno()),
            (child, extra),
        }
    finally:
        os.write(write_end, b"x")
        os.waitpid(child, 0)
        for fd in (extra, read_end, write_end):
            os.close(fd)
        a.close()
        b.close()


def test_socket_inode_and_typed_errors():
    with socket.socket() as sock:
        assert socket_inode("/proc", os.getpid(), sock.fileno()) == inode_of(sock)
    r, w = os.pipe()
    try:
        with pytest.raises(NotASocket):
            socket_inode("/proc", os.getpid(), r)
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(NoSuchProcess) as info:
        socket_inode("/proc", os.getpid(), 99999)
    assert info.value.fd == 99999
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    with pytest.raises(NoSuchProcess):
        socket_inode("/proc", dead, 0)
    with pytest.raises(NoSuchProcess):
        scan_fds("/proc", [dead])


def test_vanished_process_is_skipped_silently_in_a_full_walk():
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    scan = scan_fds("/proc", None)
    assert scan.processes > 0
    assert all(o.pid != dead for owners in scan.owners.values() for o in owners)


def test_process_identity_of_missing_process_is_unknown(tmp_path):
    assert process_identity(str(tmp_path), 12345) == ("", None)


@pytest.mark.parametrize(
    "family, type_, proto, kind",
    [
        (socket.AF_INET, socket.SOCK_STREAM, 0, TCP),
        (socket.AF_INET6, socket.SOCK_STREAM, 0, TCP6),
        (socket.AF_INET, socket.SOCK_DGRAM, 0, UDP),
        (socket.AF_INET6, socket.SOCK_DGRAM, 0, UDP6),
        (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE, UDPLITE),
        (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE, UDPLITE6),
        (socket.AF_UNIX, socket.SOCK_STREAM, 0, UNIX),
        (socket.AF_UNIX, socket.SOCK_DGRAM, 0, UNIX),
        (socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, UNIX),
        (socket.AF_NETLINK, socket.SOCK_RAW, 0, NETLINK),
    ],
)
def test_builtin_kinds_know_their_kernel_protocol_name(family, type_, proto, kind):
    with socket.socket(family, type_, proto) as sock:
        assert protocol_name("/proc", os.getpid(), sock.fileno()) in kind.kernel_names


def test_background_walk_finds_what_a_walk_here_finds_and_leaves_nothing_behind(zoo):
    fds_before = set(os.listdir("/proc/self/fd"))
    background = scan_all_in_background("/proc")()
    here = scan_fds("/proc")
    assert set(os.listdir("/proc/self/fd")) == fds_before  # the pipe is closed
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # and the walker reaped
    for item in zoo.expected:
        assert background.owners[item.inode] == here.owners[item.inode], item.label
    assert background.netns[os.getpid()] == here.netns[os.getpid()]
    assert abs(background.processes - here.processes) <= 2  # processes come and go meanwhile
