"""Property tests: random, truncated and mutated input never crashes a parser or the decoder.

Anything but the project's typed ParseError escaping is a bug; so is a record whose fields are not
what the model says they are.
"""

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from procsock.errors import ParseError
from procsock.model import BUILTIN_KINDS, InetAddress, SocketRecord, UnixAddress
from procsock_plugins.netlink import codec
from procsock_plugins.procnet import parse

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def read(*parts) -> bytes:
    with open(os.path.join(FIXTURES, *parts), "rb") as f:
        return f.read()


NET_SAMPLES = {kind: read("basic", "net", kind.name) for kind in BUILTIN_KINDS}
DIAG_SAMPLES = [read("diag", name) for name in sorted(os.listdir(os.path.join(FIXTURES, "diag")))]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(data: bytes, cuts, flips) -> bytes:
    out = bytearray(data)
    for position, value in flips:
        if out:
            out[position % len(out)] = value
    for cut in cuts:
        out = out[: cut % (len(out) + 1)] + out[(cut * 7) % (len(out) + 1) :]
    return bytes(out)


def check_record(record: SocketRecord) -> None:
    assert isinstance(record.inode, int) and record.inode >= 0
    if isinstance(record.local, InetAddress):
        assert len(record.local.packed) in (4, 16) and 0 <= record.local.port <= 0xFFFF
        str(record.local)
    if isinstance(record.local, UnixAddress):
        assert record.local.display.isprintable()


mutations = st.tuples(
    st.lists(st.integers(0, 1 << 16), max_size=3),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
)


@SETTINGS
@given(kind=st.sampled_from(BUILTIN_KINDS), change=mutations)
def test_procnet_parsers_survive_mutated_tables(kind, change):
    data = mutate(NET_SAMPLES[kind], *change)
    try:
        collected = parse.parse(kind, data, source="fuzz")
    except ParseError:
        return
    for record in collected.socket_records():
        check_record(record)


@SETTINGS
@given(kind=st.sampled_from(BUILTIN_KINDS), data=st.binary(max_size=600))
def test_procnet_parsers_survive_random_bytes_after_a_valid_header(kind, data):
    header = NET_SAMPLES[kind].split(b"\n", 1)[0] + b"\n"
    try:
        collected = parse.parse(kind, header + data, source="fuzz")
    except ParseError:
        return
    for record in collected.socket_records():
        check_record(record)


@SETTINGS
@given(sample=st.sampled_from(DIAG_SAMPLES), change=mutations, details=st.booleans())
def test_netlink_decoder_survives_mutated_replies(sample, change, details):
    decoded = codec.decode(mutate(sample, *change), details=details)
    for record in decoded.socket_records():
        check_record(record)


@SETTINGS
@given(data=st.binary(max_size=800), details=st.booleans())
def test_netlink_decoder_survives_random_bytes(data, details):
    for record in codec.decode(data, details=details).socket_records():
        check_record(record)


def test_valid_replies_round_trip_through_save_numbering():
    for sample in DIAG_SAMPLES:
        # a reply procsock saved keeps the number naming its kind (MPTCP's is told by it alone)
        seq = struct.unpack_from("=I", sample, 8)[0] if len(sample) >= 16 else 0
        seq = seq if seq & 0xFFFF0000 == codec.SAVED_MARK else 7
        assert codec.decode(codec.renumber(sample, seq)).socket_records() == codec.decode(sample).socket_records()


CORPUS = os.path.join(FIXTURES, "fuzz")
KIND_BY_NAME = {kind.name: kind for kind in BUILTIN_KINDS}


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(CORPUS, "net"))))
def test_procnet_corpus_of_nasty_tables(name):
    """Each nasty table is a ParseError (not such a table) or records plus counted skips."""
    kind = KIND_BY_NAME[name.split(".")[0]]
    try:
        collected = parse.parse(kind, read("fuzz", "net", name), source=name)
    except ParseError as exc:
        assert exc.args and name in str(exc)
        return
    for record in collected.socket_records():
        check_record(record)
        assert record.inode < 2 ** 64  # an inode is an unsigned long: longer digits are a skip
    assert all(skip.startswith(name + ":") for skip in collected.skipped)


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(CORPUS, "diag"))))
def test_netlink_corpus_of_nasty_replies(name):
    """Each nasty reply decodes, with details or not, to valid records and counted skips."""
    for details in (False, True):
        decoded = codec.decode(read("fuzz", "diag", name), details=details)
        for record in decoded.socket_records():
            check_record(record)
