"""What a watch's polls keep from one poll for the next (procsock.scope.keeping/kept): the netlink
backend decodes only the messages whose bytes changed, the resolver checks only rows it did not
check before, the watcher keys only rows it did not key before. Reuse may save work, never change
an answer: every test here compares with what a fresh decode or snapshot says."""

import os
import select
import socket
import struct

import pytest

from procsock.api import make_query, registry_or_default
from procsock.model import TCP, UNIX, Collected, Row, Source
from procsock.plugin import kept
from procsock.resolver import Resolver
from procsock.scope import keeping
from procsock_plugins.netlink import codec

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "diag")


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def test_kept_is_one_dict_per_key_across_blocks_and_drops_what_a_block_did_not_ask():
    assert kept("a") is None  # outside a keeping block nothing is kept
    store = {}
    with keeping(store):
        kept("a")["x"] = 1
        kept("b")["y"] = 2
        assert kept("a") == {"x": 1}
    with keeping(store):
        assert kept("a") == {"x": 1}  # the next repetition gets it back
    assert store == {"a": {"x": 1}}  # "b" was not asked for in the last block: gone
    assert kept("a") is None


def test_a_memo_decode_is_the_plain_decode_and_reuses_the_rows_of_unchanged_bytes():
    for name, kind in (("tcp.bin", TCP), ("unix.bin", UNIX)):
        data = fixture(name)
        plain = codec.decode(data, kind=kind)
        first = {}
        once = codec.decode(data, kind=kind, memo=({}, first))
        assert once == plain and len(first) == len(plain.records)
        second = {}
        again = codec.decode(data, kind=kind, memo=(first, second))
        assert again == plain and second == first
        assert all(a is b for a, b in zip(again.records, once.records))  # not decoded again


def test_a_message_whose_decoding_said_something_is_not_memoised():
    data = bytearray(fixture("unix.bin"))
    # the first message's first attribute claims more bytes than its message has
    struct.pack_into("=H", data, codec._NLMSGHDR.size + codec._UNIX_MSG.size, 0xFFF0)
    data = bytes(data)
    plain = codec.decode(data, kind=UNIX)
    assert plain.skipped and "bad length" in plain.skipped[0]
    first = {}
    assert codec.decode(data, kind=UNIX, memo=({}, first)) == plain
    assert len(first) == len(plain.records) - 1
    assert codec.decode(data, kind=UNIX, memo=(first, {})) == plain  # the note is said again


def test_rows_checked_before_are_not_checked_again_and_others_still_are():
    (row,) = codec.decode(fixture("tcp.bin"), kind=TCP).records[:1]
    bad = row[:Row.STATE] + ("LISTEN",) + row[Row.STATE + 1:]
    assert Collected((row,)).rows({id(row): row}) == (row,)
    for checked in (None, {}, {id(row): row}, {id(bad): row}):  # only the very object checked passes unchecked
        with pytest.raises(ValueError):
            Collected((row, bad)).rows(checked)


def _udp_pair():
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    return a, b


def test_repeated_snapshots_reuse_unchanged_rows_and_see_every_change():
    """Real sockets: between two polls one socket's receive queue fills and a new one opens; the
    polls that keep what they made give what fresh snapshots give, with the unchanged row the
    very object of the poll before."""
    resolver = Resolver(registry_or_default(None), Source.live())
    query = make_query(kind="udp", pid=None)
    a, b = _udp_pair()
    store = {}
    try:
        def rows():
            with keeping(store):
                snap = resolver.snapshot(query)
            return {row[Row.INODE]: row for row, _, _ in snap.sockets.entries}

        ia, ib = os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino
        before = rows()
        assert before[ia][Row.RX_QUEUE] == 0 == before[ib][Row.RX_QUEUE]
        a.send(b"x" * 100)
        assert select.select([b], [], [], 10)[0] == [b]  # queued at b
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        try:
            after = rows()
            ic = os.fstat(c.fileno()).st_ino
            fresh = {row[Row.INODE]: row for row, _, _ in resolver.snapshot(query).sockets.entries}
            for inode in (ia, ib, ic):
                assert after[inode] == fresh[inode]
            assert after[ia] is before[ia]  # the same bytes: not decoded again
            assert after[ib][Row.RX_QUEUE] > 0 and after[ib] is not before[ib]
            assert ic not in before
        finally:
            c.close()
    finally:
        a.close()
        b.close()
