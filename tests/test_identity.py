"""A socket's identity (namespace, kind, inode, cookie): the same socket is the same identity from
every backend, and a reused inode is a different socket once the cookie tells them apart."""

import os
import socket

from procsock import describe_fd, snapshot
from procsock.model import SocketIdentity, identity_text_of_row, row_from_record


def _listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_every_backend_names_one_listener_by_one_identity():
    with _listener() as sock:
        inode = os.fstat(sock.fileno()).st_ino
        seen = {backend: describe_fd(os.getpid(), sock.fileno(), backend=backend).record.identity
                for backend in ("netlink", "procnet", "pidfd")}
        found = [s.record.identity for s in snapshot(pid=os.getpid()).sockets if s.record.inode == inode]
    assert len(found) == 1
    for identity in seen.values():
        assert identity.key == found[0].key == (found[0].netns, "tcp", inode, None)
        assert identity.same_socket(found[0]) and found[0].same_socket(identity)
    assert seen["procnet"].cookie is None and seen["netlink"].cookie == seen["pidfd"].cookie is not None
    assert found[0].text.startswith("%d/tcp/%d" % (found[0].netns, inode))


def test_a_reused_inode_with_another_cookie_is_another_socket():
    first = SocketIdentity(4026531840, "tcp", 1234, 0x10)
    assert not first.same_socket(SocketIdentity(4026531840, "tcp", 1234, 0x11))
    assert first.same_socket(SocketIdentity(4026531840, "tcp", 1234, None))
    assert not first.same_socket(SocketIdentity(4026531840, "tcp6", 1234, 0x10))
    assert not first.same_socket(SocketIdentity(None, "tcp", 1234, 0x10))
    assert first.text == "4026531840/tcp/1234@10"


def test_an_inode_0_socket_without_cookie_goes_by_its_endpoints():
    from procsock.model import TCP, InetAddress, SocketRecord, SockType, State

    record = SocketRecord(kind=TCP, inode=0, type=SockType.STREAM, protocol=6, state=State.TIME_WAIT,
                          local=InetAddress(b"\x7f\x00\x00\x01", 80), remote=InetAddress(b"\x7f\x00\x00\x02", 5555),
                          rx_queue=0, tx_queue=0, uid=0, backend="procnet", netns=7)
    assert record.identity.text == "7/tcp/0/127.0.0.1:80-127.0.0.2:5555"
    assert identity_text_of_row(row_from_record(record)) == record.identity.text


def test_the_writers_identity_text_is_the_identity_s_text():
    """The JSON writers make the identity's text from the row, without the object: one text."""
    with _listener() as sock, socket.socket(socket.AF_UNIX) as unnamed:
        found = snapshot(pid=os.getpid()).sockets
        assert {os.fstat(s.fileno()).st_ino for s in (sock, unnamed)} <= {s.record.inode for s in found}
        for each in found:
            assert identity_text_of_row(row_from_record(each.record)) == each.record.identity.text
