"""Rows, the hot path's form of records: a row and the record built from it never disagree, and a
backend answering with records gives the same snapshot as one answering with rows."""

import json
import os
import pickle

import attrs
import pytest

import procsock
from procsock import hookimpl, render
from procsock.api import default_registry
from procsock.backends import Registry
from procsock.model import (
    ROW_FIELDS,
    Collected,
    Query,
    Row,
    Socket,
    SocketRecord,
    Source,
    endpoint_dict,
    endpoint_of,
    endpoint_text,
    netid,
    record_from_row,
    row_from_record,
)
from procsock.resolver import Resolver


def test_row_positions_are_the_record_fields_in_order():
    assert ROW_FIELDS == tuple(field.name for field in attrs.fields(SocketRecord))
    assert [getattr(Row, name.upper()) for name in ROW_FIELDS] == list(range(len(ROW_FIELDS)))


def _zoo_rows(zoo, details):
    """Each zoo socket's row, as every built-in backend that reads whole tables answers it."""
    registry = default_registry()
    inodes = {want.inode for want in zoo.expected}
    found = []
    for backend in registry.backends:
        if backend.info.lookup_only:
            continue
        for kind in backend.info.kinds:
            try:
                collected = backend.collect(kind, Source.live(), None, details, procsock.Netns())
            except procsock.ProcsockError:
                continue
            found += [row for row in collected.rows() if row[Row.INODE] in inodes]
    return found


@pytest.mark.parametrize("details", [False, True])
def test_every_field_of_a_row_is_the_record_s(zoo, details):
    rows = _zoo_rows(zoo, details)
    assert {row[Row.INODE] for row in rows} >= {w.inode for w in zoo.expected if w.kind in ("tcp", "udp", "unix")}
    for row in rows:
        record = record_from_row(row)
        family = record.kind.family
        for name in ROW_FIELDS:
            mine = getattr(record, name)
            if name in ("local", "remote"):
                assert mine == endpoint_of(family, row[getattr(Row, name.upper())])
                assert endpoint_dict(family, row[getattr(Row, name.upper())]) == (mine and mine.as_dict())
            else:
                assert mine == row[getattr(Row, name.upper())], name
        assert endpoint_text(family, row[Row.LOCAL]) == str(record.local)
        assert netid(record.kind, row[Row.TYPE]) == record.netid
        assert row_from_record(record) == row


def test_a_snapshot_reads_the_same_as_rows_and_as_sockets(zoo, monkeypatch):
    snap = procsock.snapshot(pid=os.getpid(), details=True)
    assert len(snap.sockets) >= len(zoo.expected)
    built = tuple(snap.sockets)
    assert built == snap.sockets and snap.sockets == built and hash(snap.sockets) == hash(built)
    assert pickle.loads(pickle.dumps(snap)) == snap
    # the writers on rows give what they give for Socket objects built from records
    as_objects = [Socket(s.record, s.owners, s.peer_owners) for s in built]
    assert render.table_rows(snap.sockets) == render.table_rows(as_objects)
    assert [render.socket_to_dict(s) for s in built] == render.snapshot_to_dict(snap)["sockets"]
    monkeypatch.setattr(render, "_CHUNK", 2)  # chunk boundaries inside the socket list
    document = json.loads("".join(render.json_document(snap)))
    assert document == json.loads(json.dumps(render.snapshot_to_dict(snap)))
    lines = "".join(render.json_lines(snap)).splitlines()
    assert [json.loads(line) for line in lines] == [{"schema": document["schema"], **s} for s in document["sockets"]]


class AsRecords:
    """A third-party style backend: the built-in netlink answers, handed on as SocketRecords."""

    def __init__(self, inner):
        self.inner = inner

    @hookimpl
    def procsock_backend_info(self):
        return procsock.BackendInfo("records", 500, self.inner.info.kinds)

    @hookimpl
    def procsock_collect(self, kind, source, inodes, details, netns, holders):
        got = self.inner.collect(kind, source, inodes, details, netns, holders)
        return attrs.evolve(got, records=tuple(attrs.evolve(r, backend="netlink") for r in got.socket_records()))


class Malformed:
    """A backend whose rows are tuples of the wrong shape."""

    @hookimpl
    def procsock_backend_info(self):
        return procsock.BackendInfo("malformed", 600, (procsock.TCP,))

    @hookimpl
    def procsock_collect(self, kind, source, inodes, details, netns, holders):
        return Collected(((kind, 1, 2),))


def test_records_and_rows_give_one_snapshot(zoo):
    registry = Registry.from_entry_points()  # not the shared default one: the plugin is added
    registry.register(AsRecords(default_registry().backend("netlink")), "records")
    query = Query(pid=frozenset({os.getpid()}))
    by_rows = Resolver(default_registry(), Source.live(), "netlink").snapshot(query)
    by_records = Resolver(registry, Source.live(), "records").snapshot(query)
    assert len(by_rows.sockets) >= len(zoo.expected)
    assert by_records.sockets == by_rows.sockets


def test_a_malformed_row_is_a_broken_answer_not_a_crash(zoo):
    registry = Registry.from_entry_points()
    registry.register(Malformed(), "malformed")
    snap = Resolver(registry, Source.live()).snapshot(Query(kinds=frozenset({"tcp"}), pid=frozenset({os.getpid()})))
    fallbacks = [note.text for note in snap.notes if note.code == "fallback"]
    assert fallbacks and "malformed" in fallbacks[0] and "not a row" in fallbacks[0]
    assert procsock.model.is_row(snap.sockets.entries[0][0])
    for wrong in (Row.INODE, Row.TYPE, Row.STATE):
        bad = snap.sockets.entries[0][0][:wrong] + ("10",) + snap.sockets.entries[0][0][wrong + 1:]
        assert not procsock.model.is_row(bad)
    assert snap.answered_by["tcp"] != "malformed"
    assert {w.inode for w in zoo.expected if w.kind == "tcp"} <= {s.record.inode for s in snap.sockets}


def test_objects_built_from_rows_are_those_init_builds(zoo):
    from procsock.model import Owner, Snapshot, _maker

    snap = procsock.snapshot(pid=os.getpid())
    for sock in snap.sockets:
        record = sock.record
        again = SocketRecord(**{name: getattr(record, name) for name in ROW_FIELDS})
        assert (record, hash(record), repr(record)) == (again, hash(again), repr(again))
        assert sock == Socket(again, tuple(Owner(o.pid, o.fd, o.name, o.uid, o.tid) for o in sock.owners),
                              sock.peer_owners)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            record.inode = 1
    with pytest.raises(TypeError, match="runs code in __init__"):
        _maker(Snapshot)


def test_json_of_odd_values_is_what_json_writes(zoo):
    """Values a row does not usually hold (a plugin's) are written as json.dumps writes them."""
    from procsock.model import Snapshot, Sockets, UnixAddress

    base = row_from_record(procsock.snapshot(pid=os.getpid()).sockets[0].record)
    odd = [
        base[:Row.RX_QUEUE] + (1.5, True) + base[Row.UID:],  # numbers of other types
        base[:Row.LOCAL] + (UnixAddress(b"\x00odd\n"), None) + base[Row.RX_QUEUE:],  # an endpoint object
        base[:Row.LOCAL] + ((b"\x7f\x00\x00\x01", "80"), (b"short", 1)) + base[Row.RX_QUEUE:],  # bad compact forms
        base[:Row.BACKEND] + ("b\u00e4ck\x1b",) + base[Row.PEER_INODE:],
    ]
    owner = (1, 2, "n\u00e4me\x07", 0, None)
    snap = Snapshot(sockets=Sockets([(row, (owner,), (owner,)) for row in odd]), answered_by={})
    want = [json.dumps(render.line_dict(entry)) for entry in snap.sockets.entries]
    assert "".join(render.json_lines(snap)).splitlines() == want
    assert render.table_rows(snap.sockets)  # and people's table of them


@pytest.mark.parametrize("field, value", [
    (Row.LOCAL, (b"\x7f\x00\x00\x01",)), (Row.LOCAL, ()), (Row.REMOTE, (b"\x7f\x00\x00\x01", "\x1b]0;x\x07")),
    (Row.LOCAL, (b"\x7f\x00\x00\x01", 80, "extra")), (Row.LOCAL, (2130706433, 80)), (Row.RX_QUEUE, "\x1b[2J"),
    (Row.TX_QUEUE, 1.5), (Row.PEER_INODE, "7"), (Row.UID, float("nan")), (Row.EXTENDED, object()),
], ids=lambda v: repr(v)[:30])
def test_a_row_a_writer_could_not_trust_is_not_a_row(field, value):
    """Every number an int or None, every endpoint its family's compact form (or an object of a
    plugin's class): anything else is refused at the door (it could crash a writer or carry
    control bytes to a terminal)."""
    from procsock.model import TCP, InetAddress, SockType, State, is_row

    good = row_from_record(SocketRecord(
        kind=TCP, inode=5, type=SockType.STREAM, protocol=6, state=State.LISTEN,
        local=InetAddress(b"\x7f\x00\x00\x01", 80), remote=InetAddress(bytes(4), 0), rx_queue=0, tx_queue=0,
        uid=0, backend="x",
    ))
    assert is_row(good)
    bad = good[:field] + (value,) + good[field + 1:]
    assert not is_row(bad)
    with pytest.raises(ValueError, match="not a row"):
        Collected((bad,)).rows()


def test_a_socket_made_by_hand_with_fields_of_wrong_types_is_refused_by_the_writers(zoo):
    """attrs does not check a Socket's field types: a hand-made one (attrs.evolve) carrying text
    where a number goes is refused, with its fields named, before a writer trusts it (a NUL or
    control byte in a cell)."""
    sock = procsock.snapshot(pid=os.getpid()).sockets[0]
    odd = attrs.evolve(sock, record=attrs.evolve(sock.record, rx_queue="1\x002\x1b[2J"))
    assert "".join(render.table_lines([sock]))
    with pytest.raises(ValueError, match=r"^a Socket with fields of wrong types: SocketRecord\(kind="):
        list(render.table_lines([sock, odd]))


def test_sockets_compare_by_what_they_build():
    from procsock.model import TCP, InetAddress, SockType, Sockets, State

    record = SocketRecord(kind=TCP, inode=5, type=SockType.STREAM, protocol=6, state=State.LISTEN,
                          local=InetAddress(b"\x7f\x00\x00\x01", 80), remote=None, rx_queue=0, tx_queue=0,
                          uid=0, backend="x")
    as_object = row_from_record(record)[:Row.LOCAL] + (record.local, None) + row_from_record(record)[Row.RX_QUEUE:]
    a, b = Sockets([(row_from_record(record), (), ())]), Sockets([(as_object, (), ())])
    assert a == b and hash(a) == hash(b) and a + () == tuple(b) and () + a == tuple(a)
