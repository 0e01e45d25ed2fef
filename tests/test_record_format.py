"""The record format: real output validates against the shipped JSON Schema (and a field the
schema does not know fails), every socket carries its identity, and procsock.load reads saved
output back into the same Snapshot, refusing hostile files with one line naming file and place."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import attrs
import pytest

import procsock
from procsock import render
from procsock.backends import Registry
from procsock.details import Extended, MemInfo, NetlinkInfo, PacketInfo, PacketRing, TcpInfo
from procsock.errors import InputError
from procsock.saved import load, load_text, selected
from procsock.model import Context, Family, FrozenDict, NoteCode, Sockets, SockType, State, identity_of_row
from procsock.schema import SCHEMA_VERSION, schema_document
from procsock.testing.zoo import SocketZoo
from sockzoo import needs_root

jsonschema = pytest.importorskip("jsonschema")

CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")


def validator(jsonl=False):
    schema = schema_document(jsonl)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def document_of(snap):
    return json.loads("".join(render.json_document(snap)))


def lines_of(snap):
    return [json.loads(line) for line in "".join(render.json_lines(snap)).splitlines()]


def assert_valid(snap):
    """Both forms of `snap` validate; returns how many objects were validated."""
    document = document_of(snap)
    errors = list(validator().iter_errors(document))
    assert not errors, errors[0]
    line_validator = validator(jsonl=True)
    lines = lines_of(snap)
    for line in lines:
        assert line["schema"] == SCHEMA_VERSION
        errors = list(line_validator.iter_errors(line))
        assert not errors, errors[0]
    assert len(lines) == len(document["sockets"])
    return 1 + len(lines)


@pytest.fixture
def full_zoo():
    """Every kind the zoo knows that this host can open (raw, packet need root)."""
    with tempfile.TemporaryDirectory() as tmpdir:
        zoo = SocketZoo(tmpdir).build()
        try:
            yield zoo
        finally:
            zoo.close()


@pytest.mark.parametrize("details", [False, True])
def test_every_kind_of_the_zoo_validates(full_zoo, details):
    snap = procsock.snapshot(pid=os.getpid(), details=details)
    kinds = {s.record.kind.name for s in snap.sockets}
    assert {e.kind for e in full_zoo.expected} <= kinds
    assert assert_valid(snap) > len(full_zoo.expected)
    if details:
        assert any(s["extended"] and s["extended"]["tcp_info"] for s in document_of(snap)["sockets"])


def test_the_whole_host_validates_with_unresolved_and_notes(zoo):
    assert_valid(procsock.snapshot())
    # no backend for unix sockets: the zoo's are unresolved
    unserved = procsock.snapshot(registry=Registry.from_entry_points(disabled=["netlink", "pidfd", "procnet"]))
    assert document_of(unserved)["unresolved"]
    assert_valid(unserved)
    assert load_text("".join(render.json_document(unserved)), "t") == unserved
    captured = procsock.snapshot(proc_root=CAPTURE)  # notes, and a TIME_WAIT socket of inode 0
    assert captured.notes and any(s.record.inode == 0 for s in captured.sockets)
    assert_valid(captured)


def test_every_socket_carries_its_identity(zoo):
    snap = procsock.snapshot(pid=os.getpid())
    for entry, shown in zip(snap.sockets.entries, document_of(snap)["sockets"]):
        assert shown["id"] == identity_of_row(entry[0]).text
        assert shown["id"] == "%d/%s/%d@%x" % (shown["netns"], shown["kind"], shown["inode"], shown["cookie"])
    time_wait = [s for s in document_of(procsock.snapshot(proc_root=CAPTURE))["sockets"] if s["inode"] == 0][0]
    assert time_wait["id"] == "-/tcp/0/127.0.0.1:40584-127.0.0.1:38821"


@pytest.mark.parametrize("where", [
    (), ("sockets", 0), ("sockets", 0, "local"), ("sockets", 0, "owners", 0), ("notes", 0), ("unresolved", 0),
    ("unresolved", 0, "owners", 0),
])
def test_a_field_the_schema_does_not_know_fails(where):
    owner = {"pid": 1, "fd": 3, "process": "x", "process_hex": "78", "uid": 0, "tid": None, "context": None}
    snap = procsock.snapshot(proc_root=CAPTURE)
    document = document_of(snap)
    document["unresolved"] = [{"inode": 9, "owners": [owner], "reason": "r"}]
    assert not list(validator().iter_errors(document))
    target = document
    for key in where:
        target = target[key]
    target["added"] = 1
    assert list(validator().iter_errors(document))
    if where[:1] == ("sockets",):
        line = {"schema": SCHEMA_VERSION, **document["sockets"][0]}
        assert list(validator(jsonl=True).iter_errors(line))


def test_the_schema_lists_what_the_writers_write():
    defs = schema_document()["$defs"]
    entry = procsock.snapshot(proc_root=CAPTURE).sockets.entries[0]
    assert list(defs["socket_fields"]["properties"]) == list(render.entry_dict(entry))
    assert list(schema_document()["properties"]) == list(render.snapshot_to_dict(procsock.snapshot(proc_root=CAPTURE)))
    assert list(defs["owner"]["properties"]) == list(render.owner_row_dict((1, 2, "x", 0, None)))
    everything = Extended(packet=PacketInfo(), netlink=NetlinkInfo(), timer=(1, 2, 3))  # keys present only when set
    assert list(defs["extended"]["properties"]) == list(everything.as_dict())
    assert defs["extended"]["required"] == list(Extended().as_dict())
    assert list(defs["timer"]["properties"]) == list(everything.as_dict()["timer"])
    assert list(defs["packet_info"]["properties"]) == list(PacketInfo().as_dict())
    assert list(defs["packet_ring"]["properties"]) == list(PacketRing(*range(7)).as_dict())
    assert list(defs["netlink_info"]["properties"]) == list(NetlinkInfo().as_dict())
    assert list(defs["context"]["properties"]) == list(render.context_dict(Context()))
    from procsock_plugins.netlink.families.tipc import TipcAddress
    from procsock_plugins.netlink.families.vsock import VsockAddress
    from procsock_plugins.netlink.families.xdp import XdpAddress

    for name, cls in (("vsock", VsockAddress), ("xdp", XdpAddress), ("tipc", TipcAddress)):
        assert list(defs[name]["properties"]) == list(cls(1, 2).as_dict())
    tcp = defs["extended"]["properties"]["tcp_info"]["anyOf"][0]["properties"]
    assert list(tcp) == [f.name for f in attrs.fields(TcpInfo)]
    assert list(defs["extended"]["properties"]["meminfo"]["anyOf"][0]["properties"]) == list(MemInfo().as_dict())
    for name, enum in (("family", Family), ("type", SockType), ("state", State)):
        assert defs["socket_fields"]["properties"][name]["enum"] == [m.name for m in enum]
    assert defs["note"]["properties"]["code"]["enum"] == [c.value for c in NoteCode]
    assert defs["version"]["const"] == SCHEMA_VERSION
    from procsock.changes import Diff
    from procsock.diffout import diff_to_dict

    assert list(defs["diff"]["properties"]) == list(diff_to_dict(Diff((), (), ())))


def test_schema_command_prints_both_schemas():
    for extra, title in (([], "--json document"), (["--jsonl"], "--jsonl line")):
        done = subprocess.run([sys.executable, "-m", "procsock", "schema", *extra], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert title in json.loads(done.stdout)["title"]


# --- procsock.load: saved output is an input ---------------------------------------------------


@pytest.mark.parametrize("details, context", [(False, False), (True, False), (True, True)])
def test_load_gives_back_the_snapshot_saved(full_zoo, tmp_path, details, context):
    snap = procsock.snapshot(details=details, context=context)
    if context:  # every owner came back with its Context (in the owner row's sixth position)
        assert all(o.context is not None for s in snap.sockets for o in s.owners)
    saved = tmp_path / "snap.json"
    saved.write_text("".join(render.json_document(snap)))
    back = procsock.load(saved)
    assert back == snap  # records, owners, notes, unresolved: every field
    assert [s.record for s in back.sockets] == [s.record for s in snap.sockets]
    assert [s.owners for s in back.sockets] == [s.owners for s in snap.sockets]
    lines = tmp_path / "snap.jsonl"
    lines.write_text("".join(render.json_lines(snap)))
    assert load(lines).sockets == snap.sockets
    assert "".join(render.json_document(back)) == saved.read_text()  # and writes the same text again


def test_a_netlink_socket_past_group_32_loads_back(tmp_path):
    """sock_diag gives every group a netlink socket joined, past the 32 of sockaddr_nl: the saved
    bitmap is wider than 32 bits and a saved file holding it reads back."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)  # NETLINK_GENERIC
    try:
        sock.bind((0, 0))
        sock.setsockopt(270, 1, 33)  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP: group 33
    except OSError as exc:
        sock.close()
        pytest.skip("cannot join netlink group 33 here: %s" % exc)
    with sock:
        inode = os.fstat(sock.fileno()).st_ino
        snap = procsock.snapshot(pid=os.getpid(), kind="netlink")
    (mine,) = [s for s in snap.sockets if s.record.inode == inode]
    assert mine.record.local.groups >> 32 & 1  # group 33: bit 32
    text = "".join(render.json_document(snap))
    back = load_text(text, "t")
    assert back == snap
    assert "".join(render.json_document(back)) == text


def test_load_keeps_exact_names_and_plugin_kinds(tmp_path):
    named = socket.socket(socket.AF_UNIX)
    named.bind(b"\0odd\nname\xff\x1b[2J %d" % os.getpid())  # abstract: one a run in the namespace
    try:
        snap = procsock.snapshot(pid=os.getpid(), kind="unix")
        text = "".join(render.json_document(snap))
        assert load_text(text, "t") == snap
        # a kind this installation does not know comes back as the file describes it
        foreign = text.replace('"kind": "unix"', '"kind": "unix2"').replace("/unix/", "/unix2/")
        back = load_text(foreign, "t")
        assert {s.record.kind.name for s in back.sockets} == {"unix2"}
        assert {s.record.kind.family for s in back.sockets} == {Family.UNIX}
    finally:
        named.close()


def test_selected_filters_a_loaded_snapshot_as_a_snapshot_would(zoo):
    snap = procsock.snapshot(pid=os.getpid())
    for query in (procsock.make_query(protocol="tcp"), procsock.make_query(state="LISTEN"),
                  procsock.make_query(port=zoo.expected[0].local.port), procsock.make_query(kind="unix")):
        got = selected(load_text("".join(render.json_document(snap)), "t"), query)
        want = tuple(s for s in snap.sockets if query.wants_kind(s.record.kind) and query.wants(s.record))
        assert got.sockets == want
        assert len(got.sockets) > 0


def _document(tmp_path):
    return document_of(procsock.snapshot(proc_root=CAPTURE))


@pytest.mark.parametrize("change, where", [
    (lambda d: d["sockets"][0].update(id="0/tcp/1"), "sockets[0].id"),
    (lambda d: d["sockets"][0].update(inode=-1), "sockets[0].inode"),
    (lambda d: d["sockets"][0].update(inode=True), "sockets[0].inode"),
    (lambda d: d["sockets"][0].update(recv_q="1"), "sockets[0].recv_q"),
    (lambda d: d["sockets"][0]["local"].update(port=70000), "sockets[0].local.port"),
    (lambda d: d["sockets"][0]["local"].update(address="127.0.0.001"), "sockets[0].local.address"),
    (lambda d: d["sockets"][0]["local"].update(address="::1"), "sockets[0].local.address"),
    (lambda d: d["sockets"][0].update(state="LISTENING"), "sockets[0].state"),
    (lambda d: d["sockets"][0].update(family="INET6"), "sockets[0].family"),
    (lambda d: d["sockets"][0].update(netid="udp"), "sockets[0].netid"),
    (lambda d: d["sockets"][0].update(extra=1), "sockets[0]: unknown field"),
    (lambda d: d["sockets"][0].pop("cookie"), "sockets[0]: missing field"),
    (lambda d: d["sockets"][0]["owners"][0].update(process="\x1b[2J"), "owners[0].process"),
    (lambda d: d["sockets"][0]["owners"][0].update(process_hex="6G"), "owners[0].process_hex"),
    (lambda d: d["sockets"][0]["owners"][0].update(pid=0), "owners[0].pid"),
    (lambda d: d["sockets"][9]["local"].update(name_hex="00"), "sockets[9].local"),
    (lambda d: d.update(schema="2.0"), "schema: version 2.0"),
    (lambda d: d.pop("schema"), "missing field 'schema'"),
    (lambda d: d["notes"][0].update(code="nope"), "notes[0].code"),
    (lambda d: d.update(netns_names={"x": "y"}), "netns_names"),
])
def test_load_refuses_a_bad_value_naming_where(tmp_path, change, where):
    document = _document(tmp_path)
    assert document["sockets"][9]["family"] == "UNIX"
    change(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document, indent=1))
    with pytest.raises(InputError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ") and where in message and "\n" not in message


def _first(document, kind):
    return next(i for i, s in enumerate(document["sockets"]) if s["kind"] == kind and s["owners"])


def _set(kind, path, value):
    """A change that sets the field at `path` of the first `kind` socket with owners."""
    def change(document):
        target = document["sockets"][_first(document, kind)]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


_CONTEXT = ("owners", 0, "context")


@pytest.mark.parametrize("change, where", [
    (_set("tcp", _CONTEXT + ("cgroup",), "/a\x1b[2J"), "owners[0].context.cgroup: not escaped"),
    (_set("tcp", _CONTEXT + ("cmdline",), "a\\q"), "owners[0].context.cmdline: not escaped"),
    (_set("tcp", _CONTEXT + ("unit",), 5), "owners[0].context.unit: not a string"),
    (_set("tcp", _CONTEXT + ("cgroup_id",), -1), "owners[0].context.cgroup_id"),
    (_set("tcp", _CONTEXT + ("cgroup_id",), "1"), "owners[0].context.cgroup_id"),
    (_set("tcp", _CONTEXT + ("user",), "x" * 5000), "owners[0].context: not a context"),
    (_set("tcp", _CONTEXT + ("extra",), {"bad key": "x"}), "owners[0].context: not a context"),
    (_set("tcp", _CONTEXT + ("extra",), {"unit": "x"}), "owners[0].context.extra"),
    (_set("tcp", _CONTEXT + ("extra",), {"site": True}), "owners[0].context.extra.site"),
    (_set("tcp", _CONTEXT + ("extra",), []), "owners[0].context.extra"),
    (_set("tcp", _CONTEXT + ("added",), 1), "owners[0].context: unknown field"),
    (_set("tcp", ("owners", 0, "context"), "root"), "owners[0].context: not an object"),
    # one process, one context: an owner of this pid that says otherwise than its others
    (_set("tcp", _CONTEXT + ("user",), "someone-else"), "context: differs from another owner's of process"),
    (_set("tcp", ("cgroup_moved",), True), "cgroup_moved: does not follow"),
    (_set("tcp", ("cgroup_moved",), None), "cgroup_moved: does not follow"),
    (_set("tcp", ("cgroup_moved",), 0), "cgroup_moved: does not follow"),
    (_set("tcp", ("extended", "timer", "expires_ms"), -1), "extended.timer.expires_ms"),
    (_set("tcp", ("extended", "timer", "timer"), 256), "extended.timer.timer"),
    (_set("tcp", ("extended", "timer", "added"), 1), "extended.timer: unknown field"),
    (_set("tcp", ("extended", "added"), 1), "extended: unknown field"),
    pytest.param(_set("netlink", ("extended", "netlink", "groups"), [3, 1]), "extended.netlink.groups",
                 marks=needs_root),
    pytest.param(_set("netlink", ("extended", "netlink", "flags"), "x"), "extended.netlink.flags", marks=needs_root),
    pytest.param(_set("packet", ("extended", "packet", "fanout_id"), 70000), "extended.packet.fanout_id",
                 marks=needs_root),
    pytest.param(_set("packet", ("extended", "packet", "rx_ring"), {"block_size": 1}), "extended.packet.rx_ring",
                 marks=needs_root),
])
def test_load_refuses_a_bad_context_or_detail_naming_where(full_zoo, tmp_path, change, where):
    snap = procsock.snapshot(pid=os.getpid(), details=True, context=True)
    document = document_of(snap)
    path = tmp_path / "good.json"
    path.write_text(json.dumps(document, indent=1))
    assert load(path) == snap  # the unchanged document loads: the change alone is refused
    change(document)
    path.write_text(json.dumps(document, indent=1))
    with pytest.raises(InputError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": sockets[") and where in message and "\n" not in message


def test_loaded_context_text_is_the_text_shown(tmp_path):
    """Escaped context text (a cgroup path with control bytes and bytes that are not UTF-8) comes
    back as the text it shows, so writing it again writes the same JSON."""
    from procsock.model import Owner

    odd = Context(cgroup="/a\\b\x1b[2J\udcff\n", cmdline="x\ty", cgroup_id=7,
                  extra=FrozenDict({"site": "\x00", "n": 3}))
    snap = procsock.snapshot(proc_root=CAPTURE)
    pids = {o[0] for _, owners, peers in snap.sockets.entries for o in owners + peers}
    snap = attrs.evolve(snap, sockets=Sockets(snap.sockets.entries, FrozenDict(dict.fromkeys(pids, odd))))
    text = "".join(render.json_document(snap))
    assert "\x1b" not in text and "\\x1b[2J" in text
    back = load_text(text, "t")
    held = [o for s in back.sockets for o in s.owners]
    assert held and all(o.context == odd for o in held) and all(isinstance(o, Owner) for o in held)
    assert "".join(render.json_document(back)) == text


@pytest.mark.parametrize("text, reason", [
    ('{"schema": "1.0", "inode": 1.5}', "fractions"),
    ('{"schema": "1.0", "inode": NaN}', "NaN"),
    ("[" * 100000 + "]" * 100000, "nested deeper"),
    ('{"schema": "1.0", "inode": 1' + "0" * 5000 + "}", "not a procsock --jsonl line"),
    ('{"inode": 1}', "no schema field"),
    ("not json", "not a procsock --jsonl line"),
])
def test_load_refuses_hostile_lines_with_file_and_line(tmp_path, text, reason):
    path = tmp_path / "bad.jsonl"
    good = "".join(render.json_lines(procsock.snapshot(proc_root=CAPTURE))).splitlines()[0]
    path.write_text(good + "\n" + text + "\n")
    with pytest.raises(InputError) as caught:
        load(path)
    assert str(caught.value).startswith("%s:2: " % path) and reason in str(caught.value)
    assert len(str(caught.value)) < 300


def test_load_refuses_what_is_not_a_small_regular_text_file(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("".join(render.json_document(procsock.snapshot(proc_root=CAPTURE))))
    with pytest.raises(InputError, match="larger than 100 bytes"):
        load(path, max_input_bytes=100)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="not UTF-8"):
        load(path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load(fifo)  # never blocks waiting for a writer
    with pytest.raises(InputError, match="empty"):  # a truncated file is not a host without sockets
        load_text(" \n", "empty")


@needs_root
def test_root_only_kinds_round_trip(full_zoo):
    snap = procsock.snapshot(pid=os.getpid(), details=True)
    assert {"raw", "packet", "netlink"} <= {s.record.kind.name for s in snap.sockets}
    assert load_text("".join(render.json_document(snap)), "t") == snap


# --- The README's sections on the record format, diff and capture ----------------------------------

README = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()


def test_readme_record_format_example_runs(zoo, capsys):
    import re

    names = {}
    exec(re.search(r"```python\n(# Keep it: save.*?)```", README, re.S).group(1), names)
    assert names["changes"] is not None  # ran to its end: its asserts held
    shutil.rmtree(os.path.dirname(names["saved"]))


@pytest.mark.parametrize("name", ["schema", "diff", "capture"])
def test_readme_documents_each_option_of_the_new_commands(name):
    import re

    from procsock.cli import command_parser

    for heading in ("### Keep it: the record format", "### What changed: procsock diff", "### Capture a host"):
        assert heading in README
    own = {flag for action in command_parser(name)._actions for flag in action.option_strings
           if flag not in ("-h", "--help", "--debug", "--disable-plugin")}
    shared = {flag for action in command_parser("list")._actions for flag in action.option_strings}
    for flag in sorted(own - shared):
        assert re.search(r"`%s[ `]" % re.escape(flag), README), flag
    assert "`--from PATH`" in README
