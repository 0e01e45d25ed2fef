"""procsock.diff and `procsock diff`: real sockets change between two moments; the diff names
exactly those changes, by identity, in the table, JSON and osquery's differential log format."""

import json
import os
import socket
import subprocess
import sys

import pytest

import procsock
from procsock import render
from procsock.model import State
from procsock.saved import load_text
from procsock.schema import schema_document

ME = os.getpid()


def run(*argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "procsock", *map(str, argv)], capture_output=True, text=True,
                          **kwargs)


def ids(sockets):
    return {s.record.identity.text for s in sockets}


@pytest.fixture
def moments(zoo):
    """Two snapshots of this process with known changes between them: a listener added, a UDP
    socket removed, a TCP client whose peer closed (ESTAB -> CLOSE-WAIT), a unix socket gained an fd."""
    by_label = {e.label: e.sock for e in zoo.expected}
    before = procsock.snapshot(pid=ME)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    gone = by_label["udp bound"]
    gone_id = [s.record.identity.text for s in before.sockets if s.record.inode == os.fstat(gone.fileno()).st_ino]
    gone.close()
    by_label["tcp accepted"].close()
    client = by_label["tcp client"]
    assert client.recv(1) == b""  # the peer's FIN has arrived: the client is in CLOSE-WAIT now
    unix = by_label["unix listen"]
    dup = os.dup(unix.fileno())
    try:
        after = procsock.snapshot(pid=ME)
        yield before, after, {
            "added": os.fstat(listener.fileno()).st_ino, "removed": gone_id[0],
            "closing": os.fstat(client.fileno()).st_ino, "dup": (os.fstat(unix.fileno()).st_ino, dup),
            "accepted": by_label["tcp accepted"],
        }
    finally:
        listener.close()
        os.close(dup)


def test_diff_names_each_change_by_identity(moments):
    before, after, known = moments
    result = procsock.diff(before, after)
    assert not result.same
    assert {s.record.inode for s in result.added} == {known["added"]}
    removed = ids(result.removed)
    assert known["removed"] in removed
    assert len(removed) == 2  # the UDP socket and the accepted TCP socket this process no longer holds
    changed = {c.new.record.inode: c for c in result.changed}
    assert set(changed) == {known["closing"], known["dup"][0]}
    closing = changed[known["closing"]]
    assert closing.fields == ("state",) and closing.old.record.state == State.ESTABLISHED
    assert closing.new.record.state == State.CLOSE_WAIT
    gained = changed[known["dup"][0]]
    assert gained.fields == ("owners",) and gained.gained == {(ME, known["dup"][1])} and not gained.lost
    assert procsock.diff(after, after).same and procsock.diff(before, before).same
    back = procsock.diff(after, before)  # the other way round: everything turns over
    assert ids(back.added) == removed and {s.record.inode for s in back.removed} == {known["added"]}
    assert {c.new.record.inode: c.lost for c in back.changed}[known["dup"][0]] == {(ME, known["dup"][1])}


def test_a_reused_inode_with_another_cookie_is_another_socket(zoo):
    snap = procsock.snapshot(pid=ME, kind="tcp")
    document = json.loads("".join(render.json_document(snap)))
    first = document["sockets"][0]
    assert first["cookie"] is not None
    first["cookie"] += 1
    first["id"] = first["id"].split("@")[0] + "@%x" % first["cookie"]
    reused = load_text(json.dumps(document), "t")
    result = procsock.diff(snap, reused)
    assert [s.record.cookie for s in result.added] == [first["cookie"]] and len(result.removed) == 1
    first["cookie"], first["id"] = None, first["id"].split("@")[0]  # no cookie known: the same socket
    assert procsock.diff(snap, load_text(json.dumps(document), "t")).same


def test_queues_count_only_beyond_the_threshold(zoo):
    bound = [e.sock for e in zoo.expected if e.label == "udp bound"][0]
    before = procsock.snapshot(pid=ME, kind="udp", backend="netlink")  # pidfd does not read queues
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"x" * 100, bound.getsockname())
    queued = os.fstat(bound.fileno()).st_ino
    after = procsock.snapshot(pid=ME, kind="udp", backend="netlink")
    moved = [s.record.rx_queue for s in after.sockets if s.record.inode == queued][0]
    assert moved > 0
    assert procsock.diff(before, after).same  # queues are not compared by default
    assert [c.fields for c in procsock.diff(before, after, queue_threshold=0).changed] == [("recv_q",)]
    assert procsock.diff(before, after, queue_threshold=moved).same
    with pytest.raises(TypeError):
        procsock.diff(before, after, queue_threshold=-1)


def saved(tmp_path, name, snap):
    path = tmp_path / name
    path.write_text("".join(render.json_document(snap)))
    return path


def test_cli_diff_table_json_and_osquery(moments, tmp_path):
    before, after, known = moments
    old, new = saved(tmp_path, "old.json", before), saved(tmp_path, "new.json", after)
    same = run("diff", old, old)
    assert (same.returncode, same.stdout, same.stderr) == (0, "0 added, 0 removed, 0 changed\n", "")
    table = run("diff", old, new)
    assert table.returncode == 1, table.stderr
    lines = table.stdout.splitlines()
    assert lines[-1] == "2 added, 2 removed, 2 changed".replace("2 added", "1 added")
    signs = [line.split()[0] for line in lines[1:-1] if not line.startswith("\t")]
    assert sorted(signs) == ["+", "-", "-", "~", "~"]
    assert "\t state ESTAB->CLOSE-WAIT" in lines
    assert "\t owners +%d,%d" % (ME, known["dup"][1]) in lines
    # filters apply to both sides: only TCP
    tcp = run("diff", "-t", old, new)
    assert tcp.returncode == 1 and tcp.stdout.splitlines()[-1] == "1 added, 1 removed, 1 changed"
    assert run("diff", "-x", old, new).stdout.splitlines()[-1] == "0 added, 0 removed, 1 changed"
    # JSON: sockets in the record format
    shown = run("diff", "--json", old, new)
    document = json.loads(shown.stdout)
    assert shown.returncode == 1 and document["same"] is False and len(document["changed"]) == 2
    assert run("diff", "--format", "json", old, new).stdout == shown.stdout
    jsonschema = pytest.importorskip("jsonschema")
    schema = schema_document()
    diff_schema = {"$schema": schema["$schema"], "$ref": "#/$defs/diff", "$defs": schema["$defs"]}
    assert not list(jsonschema.Draft202012Validator(diff_schema).iter_errors(document))
    document["changed"][0]["old"]["added"] = 1
    assert list(jsonschema.Draft202012Validator(diff_schema).iter_errors(document))


def test_cli_diff_osquery_lines(moments, tmp_path):
    before, after, known = moments
    old, new = saved(tmp_path, "old.json", before), saved(tmp_path, "new.json", after)
    done = run("diff", "--format", "osquery", "--host-identifier", "web-1", old, new)
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    for row in rows:
        assert list(row) == ["name", "hostIdentifier", "calendarTime", "unixTime", "epoch", "counter", "numerics",
                             "columns", "action"]
        assert row["name"] == "procsock_sockets" and row["hostIdentifier"] == "web-1"
        assert row["action"] in ("added", "removed") and type(row["unixTime"]) is int
        assert row["calendarTime"].endswith(" UTC") and all(type(v) is str for v in row["columns"].values())
    by = {(r["action"], r["columns"]["inode"], r["columns"]["state"], r["columns"]["fd"]) for r in rows}
    closing = str(known["closing"])
    assert ("removed", closing, "ESTAB", by and [r for r in rows if r["columns"]["inode"] == closing][0][
        "columns"]["fd"]) in by
    assert {(a, s) for a, i, s, _ in by if i == closing} == {("removed", "ESTAB"), ("added", "CLOSE-WAIT")}
    inode, fd = known["dup"]
    assert {(a, f) for a, i, _, f in by if i == str(inode)} == {("added", str(fd))}  # only the new owner's row
    assert ("added", str(known["added"]), "LISTEN", by and [r for r in rows if r["columns"]["inode"] == str(
        known["added"])][0]["columns"]["fd"]) in by


def test_cli_diff_usage_and_bad_input(tmp_path):
    good = saved(tmp_path, "good.json", procsock.snapshot(pid=ME))
    bad = tmp_path / "bad.json"
    bad.write_text('{\n "schema": "1.0", "sockets": [{"id": "\x1b[2J"}]\n}\n')
    for argv in (("diff", good, bad), ("diff", tmp_path / "missing.json", good)):
        done = run(*argv)
        assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert "\x1b" not in done.stderr and done.stderr.startswith("procsock: ")
    for argv in (("diff", good), ("diff", "--json", "--format", "osquery", good, good),
                 ("diff", "--queues", "-1", good, good), ("diff", "--state", "nosuch", good, good)):
        done = run(*argv)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, (argv, done.stderr)


def test_cli_diff_against_now(zoo, tmp_path):
    now = saved(tmp_path, "now.json", procsock.snapshot(pid=ME))
    done = run("diff", "--pid", ME, now, "-")
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "0 added, 0 removed, 0 changed", done.stdout


def test_names_reach_the_table_escaped(tmp_path):
    odd = socket.socket(socket.AF_UNIX)
    odd.bind(b"\0evil\x1b[2J\nname %d" % os.getpid())  # abstract names are per network namespace: one a run
    try:
        new = saved(tmp_path, "new.json", procsock.snapshot(pid=ME, kind="unix"))
    finally:
        odd.close()
    old = saved(tmp_path, "old.json", procsock.snapshot(pid=ME, kind="unix"))
    for fmt in ("table", "json", "osquery"):
        done = run("diff", "--format", fmt, old, new)
        assert done.returncode == 1 and "\x1b" not in done.stdout and "evil" in done.stdout
