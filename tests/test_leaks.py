"""The leak check of the pytest plugin (procsock.testing.leaks), each setting run in a pytester
subprocess on real sockets and processes: what it reports, what it must not report, and how a
test suite controls it."""

import os
import re
import subprocess
import sys

import pytest

from procsock.testing import leaks

CONTROLS = """
    import asyncio, socket
    import pytest
    from procsock.testing import allow_lingering

    KEPT = []
    HELD = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # open before any baseline
    HELD.bind(("127.0.0.1", 0))
    PORT = HELD.getsockname()[1]

    def leak(*args):
        KEPT.append(socket.socket(*args))
        return KEPT[-1]

    @pytest.mark.procsock_leaks(False)
    def test_opted_out():
        leak()

    @pytest.mark.procsock_leaks(ignore_kinds=["udp"])
    def test_ignored_kind():
        leak(socket.AF_INET, socket.SOCK_DGRAM).bind(("127.0.0.1", 0))

    @pytest.mark.procsock_leaks(ignore_ports=[PORT])
    def test_ignored_remote_port():
        leak(socket.AF_INET, socket.SOCK_DGRAM).connect(("127.0.0.1", PORT))

    @pytest.mark.procsock_leaks(ignore=lambda sock: sock.record.state.label == "LISTEN")
    def test_ignored_by_callable():
        KEPT.append(socket.create_server(("127.0.0.1", 0)))

    def test_lingering_declared():
        allow_lingering(leak(socket.AF_INET, socket.SOCK_DGRAM))

    def test_fails_and_leaks():
        sock = leak(socket.AF_INET, socket.SOCK_DGRAM)
        assert sock is None

    def test_leaks_plainly():
        print("leaked port", KEPT.append(socket.create_server(("127.0.0.1", 0))) or KEPT[-1].getsockname()[1])

    def test_event_loop_left_open():
        KEPT.append(asyncio.new_event_loop())
"""


def check_controls(result):
    result.assert_outcomes(passed=7, failed=1, errors=2)
    out = result.stdout.str()
    assert sorted(re.findall(r"ERROR at teardown of (\w+)", out)) == ["test_event_loop_left_open", "test_leaks_plainly"]
    port = re.search(r"leaked port (\d+)", out).group(1)
    result.stdout.fnmatch_lines([
        "*test left 1 socket(s) open that it did not have at its start:*",
        "*tcp*LISTEN*127.0.0.1:%s*python*" % port,
    ])
    result.stdout.fnmatch_lines([
        "*test left 2 socket(s) open that it did not have at its start:*",
        "u_str socketpair: socket:[[]*[]] held by python* pid * fd * <-> socket:[[]*[]] held by python* pid * fd *",
        "hint: *unclosed event loop?*",
    ])


def test_markers_rules_and_lingering_sockets_under_the_command_line_flag(pytester):
    """Opt-out, ignore rules (kind, remote port, callable), allow_lingering; a failed test gets no
    second error; an event loop's socketpair is one readable line with a hint."""
    pytester.makepyfile(CONTROLS)
    check_controls(pytester.runpytest_subprocess("-s", "--procsock-leaks", "-p", "no:cacheprovider"))


def test_ini_setting_turns_the_check_on(pytester):
    pytester.makeini("[pytest]\nprocsock_leaks = true\n")
    pytester.makepyfile(CONTROLS)
    check_controls(pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider"))


def test_bad_settings_are_one_clear_error(pytester):
    pytester.makeini("[pytest]\nprocsock_leaks_baseline = before-call\n")
    pytester.makepyfile("def test_it():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*procsock_leaks_baseline must be one of after-setup, before-setup*"])
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        "import pytest\n@pytest.mark.procsock_leaks(children=True, child=True)\ndef test_it():\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*procsock_leaks takes (enabled=True, *, baseline, children, *got () {*'child': True}*"]
    )


BASELINE_AND_CHILDREN = """
    import socket, subprocess, sys
    import pytest

    KEPT = []
    SERVER = (
        "import socket, sys; s = socket.create_server(('127.0.0.1', 0)); "
        "print(s.getsockname()[1], flush=True); sys.stdin.read()"
    )

    @pytest.fixture
    def leaky_fixture():
        KEPT.append(socket.create_server(("127.0.0.1", 0)))
        print("fixture port", KEPT[-1].getsockname()[1])

    @pytest.mark.procsock_leaks
    def test_fixture_leak_not_counted_by_default(leaky_fixture):
        pass

    @pytest.mark.procsock_leaks(baseline="before-setup")
    def test_fixture_leak_counted_with_baseline_before_setup(leaky_fixture):
        pass

    def start_child():
        # The child holds a listener until this process exits (its stdin closes then).
        child = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        KEPT.append(child)
        print("child %d port %s" % (child.pid, child.stdout.readline().decode().strip()))

    @pytest.mark.procsock_leaks
    def test_child_not_checked_by_default():
        start_child()

    @pytest.mark.procsock_leaks(children=True)
    def test_child_checked():
        start_child()
"""


def test_baseline_before_setup_and_child_processes(pytester):
    pytester.makepyfile(BASELINE_AND_CHILDREN)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    out = result.stdout.str()
    assert sorted(re.findall(r"ERROR at teardown of (\w+)", out)) == [
        "test_child_checked", "test_fixture_leak_counted_with_baseline_before_setup"]
    fixture_ports = re.findall(r"fixture port (\d+)", out)
    (child_pid, child_port) = re.findall(r"child (\d+) port (\d+)", out)[1]
    result.stdout.fnmatch_lines(["*tcp*LISTEN*127.0.0.1:%s*python*" % fixture_ports[1]])
    result.stdout.fnmatch_lines(["*tcp*LISTEN*127.0.0.1:%s*python*,%s,*" % (child_port, child_pid)])
    assert "127.0.0.1:%s " % fixture_ports[0] not in out


def test_baseline_children_and_ignore_rules_from_the_ini_file(pytester):
    """The ini settings apply to every checked test (a bare marker keeps them); ignore_kinds too."""
    pytester.makeini("[pytest]\nprocsock_leaks_baseline = before-setup\nprocsock_leaks_children = true\n")
    pytester.makepyfile(BASELINE_AND_CHILDREN)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=4)
    pytester.makeini("[pytest]\nprocsock_leaks_baseline = before-setup\nprocsock_leaks_children = true\n"
                     "procsock_leaks_ignore_kinds = udp tcp\n")
    pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider").assert_outcomes(passed=4)


SERVER_THREAD = """
    import gc, socket, threading
    import pytest

    ARMED, ACCEPTED = threading.Event(), threading.Event()
    PENDING, CLOSED_LATE, KEPT = [], [], []  # PENDING: an event per connection the server is to close

    def release():
        for event in PENDING:
            event.set()

    def on_gc(phase, info):
        if phase == "start" and ARMED.is_set():
            release()

    gc.callbacks.append(on_gc)

    @pytest.fixture(scope="session")
    def server():
        # A session-lived server thread. It closes its end of each connection only once the leak
        # check has had its first look (its garbage collection), so the check sees a socket that
        # is still closing (CLOSE-WAIT) and must wait for it; a connection marked "k" it keeps.
        listener = socket.create_server(("127.0.0.1", 0))

        def serve():
            while True:
                try:
                    conn = listener.accept()[0]
                except OSError:
                    return
                mode = conn.recv(1)
                conn.recv(1)  # the client's EOF
                if mode == b"k":
                    KEPT.append(conn)
                    ACCEPTED.set()
                    continue
                done = threading.Event()
                PENDING.append(done)
                ACCEPTED.set()
                done.wait()
                CLOSED_LATE.append(conn.fileno())
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()
        release()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join()
        print("closed late:", len(CLOSED_LATE))

    @pytest.fixture
    def armed():
        release()  # a check that did not look twice left one open: close it now
        ARMED.clear()
        ACCEPTED.clear()
        yield
        assert ACCEPTED.wait(60)  # the server holds its end now, until the check has looked
        ARMED.set()

    @pytest.mark.parametrize("round", range(20))
    def test_client_closes(server, armed, round):
        with socket.create_connection(server) as client:
            client.sendall(b"c")

    @pytest.mark.procsock_leaks(grace=0.2)
    def test_server_keeps_the_connection(server, armed):
        with socket.create_connection(server) as client:
            client.sendall(b"k")
"""


def test_sockets_still_closing_are_not_leaks_but_kept_ones_are(pytester):
    """A connection a session-scoped server thread is still closing is waited for (the grace
    period, from the ini), so it is no false positive; one the server keeps is reported."""
    pytester.makeini("[pytest]\nprocsock_leaks_grace = 60\n")
    pytester.makepyfile(SERVER_THREAD)
    result = pytester.runpytest_subprocess("-s", "--procsock-leaks", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=21, errors=1)
    out = result.stdout.str()
    assert re.findall(r"ERROR at teardown of (\w+)", out) == ["test_server_keeps_the_connection"]
    result.stdout.fnmatch_lines(["*tcp*CLOSE-WAIT*127.0.0.1:*python*"])
    assert int(re.search(r"closed late: (\d+)", out).group(1)) == 20


def test_descendants_are_found_with_and_without_the_kernels_child_lists():
    """Both ways of finding the test's descendants (per-thread child lists; every process's parent
    from /proc/PID/stat, for kernels without CONFIG_PROC_CHILDREN) find a child and a grandchild."""
    code = ("import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], "
            "stdin=subprocess.PIPE); print(g.pid, flush=True); sys.stdin.read(); g.stdin.close(); g.wait()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        grandchild = int(child.stdout.readline())
        assert {child.pid, grandchild} <= set(leaks.descendants(os.getpid()))
        assert {child.pid, grandchild} <= set(leaks._descendants_by_parent(os.getpid()))
    finally:
        child.stdin.close()
        child.wait()
