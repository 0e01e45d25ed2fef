"""Notes are values with a code (what code acts on) and a text (what users read), the same in every
output; a Snapshot is a hashable value like the rest of the model; the resolver's rooms and the
renderer depend only downwards."""

import ast
import json
import os
import pickle
import socket

import pytest

import procsock
from procsock.errors import BackendUnavailable
from procsock.model import TCP, UDP, Note, NoteCode, Snapshot, Source
from procsock.render import notes_lines, snapshot_to_dict
from procsock.resolve.collect import Answer, collect
from procsock.resolver import Resolver
from stubs import StubBackend, registry_of
from test_resolver import BrokenInfo, tcp_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def failing_and_fine(listener):
    high = StubBackend("high", 100, [TCP, UDP], error=BackendUnavailable("high", "refused"))
    low = StubBackend("low", 10, [TCP], [tcp_record(listener, "low")])
    return registry_of(high, low)


def test_a_fallback_and_a_table_nobody_read_are_told_by_code(listener):
    snap = Resolver(failing_and_fine(listener), Source.live()).snapshot()
    own = [n for n in snap.notes if n.kind == "udp" and n.code is NoteCode.UNREADABLE_TABLE]
    ours = [n.text for n in own if not n.text.startswith("udp (netns")]
    assert ours == ["udp: no backend could read it (high: refused)"]
    fallback = [n for n in snap.notes if n.code is NoteCode.FALLBACK]
    assert fallback and all(n.backend == "high" for n in fallback)
    assert all(n.text.startswith("high: refused; using low for tcp") for n in fallback)


def test_collect_answers_with_a_typed_value_naming_who_answered_and_who_failed(listener):
    registry = failing_and_fine(listener)
    answer = collect(registry.backends, Source.live(), TCP, None, False, procsock.Netns(), {})
    assert isinstance(answer, Answer) and answer.backend == "low"
    assert answer.failures == (("high", "refused"),)
    assert [r.backend for r in answer.collected.socket_records()] == ["low"]
    nobody = collect(registry.backends, Source.live(), UDP, None, False, procsock.Netns(), {})
    assert (nobody.backend, nobody.collected, nobody.failures) == (None, None, (("high", "refused"),))


def test_a_broken_plugin_is_a_note_with_its_code_and_name(listener):
    registry = registry_of(StubBackend("low", 10, [TCP], [tcp_record(listener, "low")]))
    registry.register(BrokenInfo(), "broken")
    snap = Resolver(registry, Source.live()).snapshot(procsock.Query(pid=os.getpid()))
    (note,) = snap.notes
    assert note.code is NoteCode.BROKEN_PLUGIN and note.backend == "broken"
    assert "cannot describe myself" in note.text


def test_a_namespace_missing_from_a_capture_is_a_coded_note_in_json_too():
    snap = procsock.snapshot(proc_root=CAPTURE, netns=12345)
    (note,) = [n for n in snap.notes if n.code is NoteCode.NETNS_MISSING]
    assert "network namespace 12345" in note.text
    shown = json.loads(json.dumps(snapshot_to_dict(snap)))["notes"]
    said = {"code": "netns-missing", "text": note.text, "kind": None, "backend": None, "netns": None}
    assert said in shown
    assert len(shown) == len(snap.notes)


def test_a_note_is_shown_by_its_text_escaped_once():
    note = Note("fallback", "bad\x1b[31m: refused; using x for tcp")
    snap = Snapshot(sockets=(), answered_by={}, notes=(note,))
    assert list(notes_lines(snap)) == ["procsock: bad\\x1b[31m: refused; using x for tcp"]
    assert str(snap.notes[0]) == snap.notes[0].text
    with pytest.raises(ValueError):
        Note("no-such-code", "text")


def test_every_note_code_is_documented_and_said_somewhere():
    with open(os.path.join(ROOT, "procsock", "resolve", "explain.py")) as f:
        source = f.read()
    for code in NoteCode:
        assert "``%s``" % code.name in NoteCode.__doc__, code
        assert "NoteCode.%s" % code.name in source, code


def test_a_snapshot_is_hashable_read_only_and_survives_pickling(listener):
    snap = procsock.snapshot(pid=os.getpid(), protocol="tcp")
    assert any(s.record.inode == os.fstat(listener.fileno()).st_ino for s in snap.sockets)
    again = pickle.loads(pickle.dumps(snap))
    assert again == snap and hash(again) == hash(snap) and {snap: 1}[again] == 1
    assert snap.answered_by == dict(snap.answered_by)
    assert json.loads(json.dumps(snap.answered_by)) == snap.answered_by
    with pytest.raises(TypeError, match="read-only"):
        snap.answered_by["tcp"] = "forged"
    with pytest.raises(TypeError, match="read-only"):
        snap.unresolved.clear()
    with pytest.raises(TypeError):  # by keyword: a Snapshot's fields may grow or be built on access
        Snapshot((), {})
    other = Snapshot(sockets=(), answered_by={"tcp": "a"}, netns_names={1: "x"})
    assert hash(other) == hash(Snapshot(sockets=(), answered_by={"tcp": "a"}, netns_names={1: "x"}))
    assert other != Snapshot(sockets=(), answered_by={"tcp": "b"}, netns_names={1: "x"})


def imports_of(*parts):
    with open(os.path.join(ROOT, "procsock", *parts), "rb") as f:
        tree = ast.parse(f.read())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


ROOMS = [("resolve", name) for name in ("plan.py", "collect.py", "join.py", "explain.py")]


@pytest.mark.parametrize("parts", [("model.py",), ("scope.py",), ("limits.py",), ("render.py",), ("fdscan.py",),
                                   ("rewalk.py",)] + ROOMS, ids="/".join)
def test_imports_go_one_way(parts):
    above = {"procsock.resolver", "procsock.api", "procsock.cli"}
    if parts != ("render.py",):  # render shows comparisons too
        above |= {"procsock.render", "procsock.compare"}
    if parts in (("model.py",), ("scope.py",), ("limits.py",)):
        above |= {"procsock.backends", "procsock.fdscan", "procsock.resolve"}
    assert not {m for m in imports_of(*parts) if m in above or m.startswith("procsock.cli.")}
