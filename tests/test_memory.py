"""Memory of a large listing (issue 15): what is held per socket, and what a run leaves in cycles
for the cyclic collector, which the command turns off."""

import errno
import gc
import os
import socket
import traceback
import tracemalloc
import types

import pytest

import procsock
from procsock import hookimpl
from procsock.backends import Registry
from procsock.errors import BackendUnavailable, NotApplicable
from procsock.model import TCP, UNIX, Query, Row, Sockets, Source
from procsock.render import table_lines
from procsock.resolver import Resolver
from sockzoo import needs_root
from stubs import StubBackend


@needs_root
def test_inet_rows_share_their_addresses():
    """Rows of sockets on one address share one bytes object for it (the netlink dump's rows)."""
    listeners = [socket.socket() for _ in range(3)]
    try:
        for sock in listeners:
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
        ports = {sock.getsockname()[1] for sock in listeners}
        snap = procsock.snapshot(pid=os.getpid(), backend="netlink")
        addresses = [row[Row.LOCAL][0] for row, _, _ in snap.sockets.entries if row[Row.LOCAL][1] in ports]
    finally:
        for sock in listeners:
            sock.close()
    assert len(addresses) == 3 and addresses[0] == bytes([127, 0, 0, 1])
    assert all(address is addresses[0] for address in addresses)


class _Chained(StubBackend):
    """Fails with an error raised while it handled another, which its frame still holds: a cycle
    behind the error it raises (its __context__), not in that error's own traceback."""

    @hookimpl
    def procsock_collect(self, kind, source, inodes, netns):
        try:
            raise ValueError("the first failure")
        except ValueError as first:
            held = first  # noqa: F841  (a frame of the first failure's traceback holds it)
            raise BackendUnavailable(self.name, "a second failure")


def _failing_first():
    """The installed backends, behind four that fail for TCP and unix: refused, crashed, not
    applicable, and refused while handling another failure."""
    registry = Registry.from_entry_points()
    for name, error in (("refuses", BackendUnavailable("refuses", "no")), ("crashes", RuntimeError("boom")),
                        ("declines", NotApplicable("declines", "not this shape"))):
        registry.register(StubBackend(name, 1000, [TCP, UNIX], error=error), name)
    registry.register(_Chained("chained", 1001, [TCP, UNIX]), "chained")
    return registry


def _frames_left_by(call):
    """What `call` returns, and the frames and tracebacks it left in cycles, run with the cyclic
    collector off as the command runs."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        answer = call()
        gc.collect()
        kept = [o for o in gc.garbage if isinstance(o, (types.FrameType, types.TracebackType))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    return answer, [getattr(o, "f_code", None) or o.tb_frame.f_code for o in kept]


def test_a_failing_backend_leaves_no_cycle_for_the_collector_that_is_off():
    """The command runs with the cyclic collector off. A backend's failure (refused, crashed, not
    applicable; on a kernel without some diag handler, netlink's own fallback too) must leave no
    cycle of frames: it would keep every object of the collection so far alive to the end, the
    fd walk's owners among them (8 MB at 100k sockets)."""
    snap, kept = _frames_left_by(lambda: Resolver(_failing_first(), Source.live()).snapshot())
    fell_back = " ".join(note.text for note in snap.notes)
    assert "refuses" in fell_back and "crashes" in fell_back and "a second failure" in fell_back
    assert snap.answered_by["tcp"] != "declines" and kept == []


def test_a_caller_asking_while_it_handles_an_exception_keeps_its_traceback_and_no_cycle():
    """The failures' tracebacks are dropped up to the exception the caller is handling, never its
    own. pluggy's re-raise makes that exception the failures' context, cutting the chain behind
    them: the frames they passed through are cleared all the same."""
    try:
        raise KeyError("the caller's own")
    except KeyError as caught:
        snap, kept = _frames_left_by(lambda: Resolver(_failing_first(), Source.live()).snapshot())
        assert caught.__traceback__ is not None
        caller = traceback.format_exc()
    assert "a second failure" in " ".join(note.text for note in snap.notes) and kept == []
    assert 'raise KeyError("the caller\'s own")' in caller and "test_memory.py" in caller


def test_a_scrape_leaves_no_cycle_either():
    """`procsock metrics --listen` snapshots the host at each scrape, in one long process: a
    cycle left by each (the fallbacks above) grew it by the whole snapshot, 22 MB a scrape at 30k
    sockets."""
    metrics = pytest.importorskip("procsock.metrics")
    collector = metrics.SnapshotCollector(_failing_first(), Source.live(), Query(context=True))
    exposed = metrics.collector_registry(collector)
    text, kept = _frames_left_by(lambda: metrics.exposition(exposed))
    assert "\nprocsock_up 1.0\n" in text and "procsock_fallbacks" in text and kept == []


def test_the_table_keeps_a_row_in_one_string_while_it_measures_the_columns():
    """The table's widths need every row's cells before its first line: they are held as one
    string a row (about 150 bytes here), not a tuple of strings (about 480)."""
    held = [*socket.socketpair(), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)]
    try:
        held[2].bind(("::1", 0))
        found = procsock.snapshot(pid=os.getpid()).sockets
    finally:
        for sock in held:
            sock.close()
    assert len(found) >= 3
    many = Sockets(found.entries * (20000 // len(found)), found.contexts)
    tracemalloc.start()
    try:
        lines = table_lines(many)
        next(lines)  # the header: every row is measured by now
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(1 for _ in lines) == len(many) and peak < 250 * len(many)


@pytest.mark.parametrize("argv, module, name", [
    (["watch", "--count", "1"], "procsock.watcher", "watch_query"),
    (["metrics", "--listen", "127.0.0.1:0"], "procsock.metrics", "serve"),
    (["osquery", "--socket", "/nonexistent"], "procsock.osquery", "run"),
])
def test_the_long_runs_turn_the_collector_back_on(monkeypatch, argv, module, name):
    """`procsock` turns the cyclic collector off for its short runs; a watch or a server turns it
    back on before it starts, so that a cycle a plugin makes is not kept to its end. (What starts
    is replaced here by a record of the collector's state: only the command's part is checked.)"""
    started = pytest.importorskip(module)
    seen = []

    def starting(*args, **kwargs):
        seen.append(gc.isenabled())
        raise OSError(errno.EADDRINUSE, "not started: a test")

    monkeypatch.setattr(started, name, starting)
    from procsock.cli import main

    gc.disable()
    try:
        assert main(argv) == 1
    finally:
        gc.enable()
    assert seen == [True]
