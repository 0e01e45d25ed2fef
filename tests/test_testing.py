"""procsock.testing and its pytest plugin: helpers on real sockets, the backend fixture, the leak
check and the conformance suite, each run in a pytester subprocess where it must also fail."""

import os
import re
import socket

import pytest

from procsock.api import default_registry
from procsock.model import TCP
from procsock.testing import assert_backends_agree, connections_of, listening
from sockzoo import inode_of, usable_backends_serving

# A backend that lies: procnet's records with every TCP port shifted by one, as a plugin with a
# decoding bug would report them. Registered in the pytester process's default registry.
LYING_BACKEND = '''
import attrs
import procsock
from procsock.api import default_registry
from procsock.model import BackendInfo, InetAddress, TCP
from procsock_plugins import procnet


class Lying:
    @procsock.hookimpl
    def procsock_backend_info(self):
        return BackendInfo("lying", 1, (TCP,))

    @procsock.hookimpl
    def procsock_unavailable(self, source):
        return None

    @procsock.hookimpl
    def procsock_collect(self, kind, source, inodes, details, netns, holders):
        got = procnet.procsock_collect(kind=kind, source=source, inodes=inodes, netns=netns)
        shift = lambda a: InetAddress(a.packed, a.port + 1) if a.port else a
        return attrs.evolve(got, records=tuple(
            attrs.evolve(r, local=shift(r.local), backend="lying") for r in got.socket_records()))


default_registry().register(Lying(), "lying")
'''


def test_listening_has_servers_not_clients():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            found = {s.record.inode for s in listening(pid=os.getpid())}
            assert {inode_of(server), inode_of(udp)} <= found
            assert inode_of(client) not in found
            (only,) = listening(pid=os.getpid(), port=port)
            assert only.record.inode == inode_of(server)
            assert (os.getpid(), server.fileno()) in [(o.pid, o.fd) for o in only.owners]
    assert listening(pid=os.getpid(), port=port) == ()


def test_connections_of_lists_every_socket_the_process_holds(zoo):
    held = {s.record.inode for s in connections_of(os.getpid())}
    assert {item.inode for item in zoo.expected} <= held
    established = {s.record.inode for s in connections_of(os.getpid(), state="ESTAB", protocol="tcp")}
    assert established == {i.inode for i in zoo.expected if i.kind.startswith("tcp") and i.state.name == "ESTABLISHED"}


def test_backends_agree_on_the_zoo(zoo):
    result = assert_backends_agree(pid=os.getpid(), kind=["tcp", "tcp6", "udp", "udp6", "unix"])
    assert {"tcp", "unix"} <= set(result.kinds)
    listener = next(i.inode for i in zoo.expected if i.kind == "tcp" and i.state.name == "LISTEN")
    assert listener not in {d.inode for d in result.differences}  # procnet has no Send-Q for it



def test_disagreeing_backends_fail_with_the_difference(pytester):
    pytester.makeconftest(LYING_BACKEND)
    pytester.makepyfile(
        """
        import os, socket
        from procsock.testing import assert_backends_agree

        def test_agree():
            with socket.create_server(("127.0.0.1", 0)):
                assert_backends_agree("procnet", "lying", pid=os.getpid(), kind="tcp")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*backends disagree*", "*differs: tcp inode * local: procnet=127.0.0.1:* lying=127.0.0.1:*"]
    )


def test_backend_fixture_runs_a_test_once_per_usable_backend(pytester):
    """Lookup-only backends (pidfd) run only the tests marked procsock_lookups: they cannot list a table."""
    pytester.makepyfile(
        """
        import os, socket
        import pytest
        from procsock import snapshot
        from procsock.testing import listening

        @pytest.mark.procsock_kinds("tcp")
        @pytest.mark.procsock_lookups
        def test_server_seen(procsock_backend):
            with socket.create_server(("127.0.0.1", 0)) as server:
                port = server.getsockname()[1]
                assert listening(pid=os.getpid(), port=port, backend=procsock_backend.name)

        @pytest.mark.procsock_kinds("tcp")
        def test_whole_table(procsock_backend):
            with socket.create_server(("127.0.0.1", 0)) as server:
                port = server.getsockname()[1]
                assert snapshot(port=port, backend=procsock_backend.name).sockets
        """
    )
    result = pytester.runpytest_subprocess("-v")
    names = usable_backends_serving(TCP)
    tables = [n for n in names if not default_registry().by_name()[n].info.lookup_only]
    assert "pidfd" in names and "pidfd" not in tables  # the case this test is about
    result.assert_outcomes(passed=len(names) + len(tables))
    result.stdout.fnmatch_lines(["*test_server_seen?%s? PASSED*" % name for name in names], consecutive=False)
    result.stdout.fnmatch_lines(["*test_whole_table?%s? PASSED*" % name for name in tables], consecutive=False)
    # Named on the command line, a lookup-only backend skips the table test with the reason.
    named = pytester.runpytest_subprocess("-rs", "--procsock-backend", "pidfd")
    named.assert_outcomes(passed=1, skipped=1)
    named.stdout.fnmatch_lines(["*backend 'pidfd' is lookup-only: mark the test procsock_lookups*"])


def test_backend_option_names_one_backend_and_unknown_names_are_one_usage_error(pytester):
    pytester.makepyfile("def test_it(procsock_backend):\n    assert procsock_backend.name == 'procnet'\n")
    pytester.runpytest_subprocess("--procsock-backend", "procnet").assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--procsock-backend", "nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--procsock-backend nosuch: not an installed procsock backend (installed: *netlink*procnet*)"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_unknown_kind_in_procsock_kinds_is_an_error_naming_the_known_kinds(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.procsock_kinds("tcp4")
        def test_typo(procsock_backend):
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*procsock_kinds('tcp4'): unknown kind(s) 'tcp4'; known kinds: *tcp, tcp6*"])
    assert "empty parameter set" not in result.stdout.str()


LEAKY_TESTS = """
    import socket
    import pytest

    KEPT = []

    def open_listener():
        sock = socket.create_server(("127.0.0.1", 0))
        KEPT.append(sock)
        return sock.getsockname()[1]

    @pytest.fixture
    def server():
        with socket.create_server(("127.0.0.1", 0)) as sock:
            yield sock

    {mark}
    def test_leaks():
        print("leaked port", open_listener())

    {mark}
    def test_closes_what_it_opens(server):
        with socket.socket() as client:
            client.connect(server.getsockname())
"""


def test_leak_check_names_the_leaked_socket(pytester):
    pytester.makepyfile(LEAKY_TESTS.format(mark="@pytest.mark.procsock_leaks"))
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=2, errors=1)
    port = re.search(r"leaked port (\d+)", result.stdout.str()).group(1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_leaks*",
        "*test left 1 socket(s) open that it did not have at its start:*",
        "*tcp*LISTEN*127.0.0.1:%s*python*" % port,
    ])


def test_leak_check_is_off_unless_asked_and_on_for_a_whole_run(pytester):
    pytester.makepyfile(LEAKY_TESTS.format(mark=""))
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
    pytester.runpytest_subprocess("--procsock-leaks").assert_outcomes(passed=2, errors=1)


@pytest.mark.parametrize("backend", ["procnet", "netlink"])
def test_conformance_suite_runs_from_the_command_line(pytester, backend):
    result = pytester.runpytest_subprocess("--pyargs", "procsock.testing.conformance", "--procsock-backend", backend)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) > 10 and "failed" not in outcomes and "errors" not in outcomes


def test_conformance_suite_catches_a_lying_backend(pytester):
    pytester.makeconftest(LYING_BACKEND)
    pytester.makepyfile(
        """
        from procsock.testing.conformance import BackendConformance

        class TestLying(BackendConformance):
            backend_name = "lying"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines(["*tcp listen (lying): local: got 127.0.0.1:*, want 127.0.0.1:*"])
