"""The conformance suite catches what it claims to: each deliberately broken backend below is
registered in a pytester subprocess, the suite runs on it and must fail, naming the check and
what differed; the built-in backends pass it (tests/test_conformance.py)."""

import pytest

# Each broken backend wraps a real one (procnet or netlink) for TCP and breaks one promise.
BROKEN = '''
import attrs
import procsock
from procsock.api import default_registry
from procsock.model import BackendInfo, InetAddress, SockType, SocketRecord, Source, State, TCP
from procsock_plugins import netlink, procnet

SEEN, CACHE = {}, {}


def real(kind, source, inodes, netns):
    return procnet.procsock_collect(kind=kind, source=source, inodes=inodes, netns=netns)


def caching(kind, source, inodes, netns, holders):
    key = (kind, source, inodes, netns)
    if key not in CACHE:
        CACHE[key] = real(kind, source, inodes, netns)
    return CACHE[key]


def remembering(kind, source, inodes, netns, holders):
    got = real(kind, source, inodes, netns)
    SEEN.update((r.inode, r) for r in got.socket_records())
    return attrs.evolve(got, records=tuple(SEEN.values()))


def inventing(kind, source, inodes, netns, holders):
    got = real(kind, source, inodes, netns)
    known = {r.inode for r in got.socket_records()}
    made_up = tuple(
        SocketRecord(kind=kind, inode=inode, type=SockType.STREAM, protocol=6, state=State.LISTEN,
                     local=InetAddress(bytes(4), 0), remote=None, rx_queue=None, tx_queue=None, uid=None,
                     backend="broken", netns=netns.inode)
        for inode in sorted(inodes or ()) if inode in holders and inode not in known
    )
    return attrs.evolve(got, records=got.socket_records() + made_up)


def no_netns(kind, source, inodes, netns, holders):
    got = real(kind, source, inodes, netns)
    return attrs.evolve(got, records=tuple(attrs.evolve(r, netns=None) for r in got.socket_records()))


def live_for_a_capture(kind, source, inodes, netns, holders):
    return netlink.procsock_collect(kind=kind, source=Source.live(), inodes=inodes, details=False, netns=netns,
                                    raw=False)


class Broken:
    def __init__(self, collect):
        self.impl = collect

    @procsock.hookimpl
    def procsock_backend_info(self):
        return BackendInfo("broken", 1, (TCP,))

    @procsock.hookimpl
    def procsock_unavailable(self, source):
        return None

    @procsock.hookimpl
    def procsock_collect(self, kind, source, inodes, netns, holders):
        got = self.impl(kind, source, inodes, netns, holders)
        return attrs.evolve(got, records=tuple(attrs.evolve(r, backend="broken") for r in got.socket_records()))


default_registry().register(Broken(HOW), "broken")
'''

SUITE = """
from procsock.testing.conformance import BackendConformance


class TestBroken(BackendConformance):
    backend_name = "broken"
"""


@pytest.mark.parametrize(
    "how, check, says",
    [
        ("caching", "test_closed_socket_is_not_reported",
         "*lookup read: tcp listen (socket:[[]*[]]) is closed, yet reported LISTEN*"),
        ("remembering", "test_closed_socket_is_not_reported",
         "*table read: tcp client (socket:[[]*[]]) is closed, yet reported ESTABLISHED*"),
        ("inventing", "test_lookup_reports_each_socket_exactly",
         "*socket:[[]*[]] is a AF_UNIX socket, yet reported as tcp LISTEN*"),
        ("no_netns", "test_table_lists_each_socket_once", "*socket:[[]*[]] (broken): netns: got None, want *"),
        ("live_for_a_capture", "test_capture_is_read_from_files_only",
         "*asked to read an empty captured tree, it reported live sockets: tcp listen, tcp client, tcp accepted*"),
    ],
    ids=lambda value: value if value in ("caching", "remembering", "inventing", "no_netns", "live_for_a_capture")
    else "",
)
def test_suite_fails_a_broken_backend_naming_the_check(pytester, how, check, says):
    pytester.makeconftest(BROKEN.replace("HOW", how))
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["FAILED *::TestBroken::%s[[]broken-tcp[]]*" % check])
    result.stdout.fnmatch_lines([says])
    assert "where all(" not in result.stdout.str()


def test_a_plugins_own_kinds_fail_from_the_command_line_until_it_subclasses(pytester):
    """`pytest --pyargs procsock.testing.conformance --procsock-backend ping` cannot open ping
    sockets: it fails telling the author to subclass, instead of passing with everything skipped."""
    result = pytester.runpytest_subprocess(
        "--pyargs", "procsock.testing.conformance", "--procsock-backend", "ping", "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    assert result.ret != 0 and outcomes.get("errors", 0) >= 6 and "skipped" not in outcomes, outcomes
    result.stdout.fnmatch_lines([
        "*backend 'ping' serves kind 'icmp', which procsock cannot open: subclass "
        "procsock.testing.conformance.BackendConformance in your plugin's tests, set backend_name = 'ping' "
        "and override open_sockets(zoo, kind)*",
    ])


def test_open_sockets_that_opens_nothing_fails(pytester):
    pytester.makepyfile(
        """
        from procsock.testing.conformance import BackendConformance

        class TestLazy(BackendConformance):
            backend_name = "procnet"

            def open_sockets(self, zoo, kind):
                pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "tcp")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*open_sockets() opened no socket of kind 'tcp': the checks would test nothing*"])
