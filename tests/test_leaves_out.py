"""Coverage limits said as data (BackendInfo.leaves_out): each built-in's declaration is true of a
real socket, and an unreported socket of that kind is explained by it, not called closed."""

import os
import socket

import pytest

import procsock
from procsock.backends import Registry
from procsock.errors import SocketNotFound
from procsock.model import TCP, BackendInfo, Source
from procsock_plugins import netlink, pidfd, procnet
from stubs import StubBackend

BUILTINS = {"procnet": procnet, "netlink": netlink}


def _tcp(family, host):
    def bound_only():
        sock = socket.socket(family)
        sock.bind((host, 0))
        return sock
    return bound_only


def _unbound(*args):
    return lambda: socket.socket(*args)


# One real socket of what each declaration says its backend leaves out.
WITNESSES = {
    ("procnet", "tcp"): _tcp(socket.AF_INET, "127.0.0.1"),
    ("procnet", "tcp6"): _tcp(socket.AF_INET6, "::1"),
    ("netlink", "tcp"): _unbound(socket.AF_INET, socket.SOCK_STREAM),
    ("netlink", "tcp6"): _unbound(socket.AF_INET6, socket.SOCK_STREAM),
    ("procnet", "netlink"): _unbound(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE),
    ("netlink", "netlink"): _unbound(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE),
}
for _backend in BUILTINS:
    for _kind, _family in (("udp", socket.AF_INET), ("udp6", socket.AF_INET6)):
        WITNESSES[_backend, _kind] = _unbound(_family, socket.SOCK_DGRAM)
    for _kind, _family in (("udplite", socket.AF_INET), ("udplite6", socket.AF_INET6)):
        WITNESSES[_backend, _kind] = _unbound(_family, socket.SOCK_DGRAM, 136)  # IPPROTO_UDPLITE

DECLARED = [(name, kind, what) for name, module in BUILTINS.items()
            for kind, what in module.procsock_backend_info().leaves_out]


def only(*names):
    registry = Registry()
    for name in names:
        registry.register({"pidfd": pidfd, **BUILTINS}[name], name)
    return registry


def test_every_declaration_has_a_witness():
    assert {(name, kind) for name, kind, _ in DECLARED} == set(WITNESSES)


@pytest.mark.parametrize("name, kind, what", DECLARED, ids=["%s-%s" % d[:2] for d in DECLARED])
def test_a_socket_a_backend_leaves_out_is_said_so(name, kind, what):
    try:
        sock = WITNESSES[name, kind]()
    except OSError as exc:
        pytest.skip("cannot open a %s socket here: %s" % (kind, exc.strerror))
    registry = only(name)
    why_not = registry.backend(name).unavailable(Source.live())
    if why_not:
        pytest.skip(why_not)
    with sock:
        inode = os.fstat(sock.fileno()).st_ino
        snap = procsock.snapshot(pid=os.getpid(), registry=registry)
        assert inode not in {s.record.inode for s in snap.sockets}  # the declaration is true
        assert snap.answered_by[kind] == name
        assert snap.unresolved[inode].reason == "%s does not list %s: likely one of those, or it closed during " \
            "the snapshot" % (name, what)


def test_socket_not_found_says_what_the_backend_leaves_out():
    with _tcp(socket.AF_INET, "127.0.0.1")() as sock:
        with pytest.raises(SocketNotFound, match=r"not found: procnet does not list TCP sockets in state CLOSE: "):
            procsock.describe_fd(os.getpid(), sock.fileno(), registry=only("procnet"))


@pytest.mark.skipif(pidfd.procsock_unavailable(Source.live()) is not None, reason="pidfd_getfd is not available here")
def test_what_a_lookup_backend_reads_of_the_fd_comes_before_the_declared_limit():
    """Every path gives a socket the same reason (one truth): what pidfd read of its fd, not a
    guess that depends on which table backend answered."""
    with _tcp(socket.AF_INET, "127.0.0.1")() as sock:
        inode = os.fstat(sock.fileno()).st_ino
        snap = procsock.snapshot(pid=os.getpid(), backend="procnet", registry=only("pidfd", "procnet"))
        reason = snap.unresolved[inode].reason
        assert reason.startswith("unbound or bound-inactive: neither listening nor connected, local port %d"
                                 % sock.getsockname()[1])


class Declares(StubBackend):
    def __init__(self, leaves_out):
        super().__init__("declares", 60, [TCP])
        self.leaves_out = leaves_out

    @procsock.hookimpl
    def procsock_backend_info(self):
        return BackendInfo(self.name, self.priority, self.kinds, leaves_out=self.leaves_out)


@pytest.mark.parametrize("leaves_out, says", [
    ([("tcp", "x")], "leaves_out is a list, not a tuple of (kind name, what) pairs"),
    (("tcp", "x"), "leaves_out holds str, not a (kind name, what) pair of strings"),
    ((("tcp", 3),), "leaves_out holds tuple, not a (kind name, what) pair"),
    ((("udp", "unbound ones"),), "leaves_out names kind 'udp', which it does not serve"),
    ((("tcp", "two\nlines"),), "leaves_out of tcp: say what in one printable line"),
    ((("tcp", " "),), "leaves_out of tcp: say what in one printable line"),
    ((("tcp", "x" * 201),), "leaves_out of tcp: say what in one printable line of 1 to 200 characters"),
])
def test_a_malformed_declaration_makes_the_plugin_broken(leaves_out, says):
    registry = Registry()
    registry.register(Declares(leaves_out), "declares")
    (failure,) = registry.failures
    assert says in failure.reason and registry.backends == () and registry.plugins == ()
    assert str(failure).startswith("plugin declares is broken and was skipped: leaves_out")
