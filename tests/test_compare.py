"""Backend diff and raw dumps, with the real procnet backend against stub backends."""

import os
import socket

import attrs

import procsock
from procsock.compare import compare_backends, compare_records
from procsock.model import TCP, UDP, UNIX, Netns, Source, State, UnixAddress
from procsock.resolver import Query, Resolver
from procsock_plugins import procnet
from stubs import StubBackend, registry_of


def procnet_records(kind):
    return procnet.procsock_collect(kind, Source.live(), None, netns=Netns()).records


def with_procnet(*stubs):
    registry = registry_of(*stubs)
    registry.register(procnet, "procnet")
    return registry


def test_identical_views_agree(zoo):
    mirror = StubBackend("mirror", 60, [TCP, UNIX], procnet_records(TCP) + procnet_records(UNIX))
    result = compare_backends(with_procnet(mirror), Source.live(), query=Query(kinds=frozenset({"tcp"})))
    assert (result.a, result.b, result.kinds) == ("mirror", "procnet", ("tcp",))
    assert not result.unexplained
    # The views are taken at two moments: only sockets that did not change in between may differ.
    assert all(r.inode not in {i.inode for i in zoo.expected} for r in result.only_a + result.only_b)


def test_differences_are_found_and_explained(zoo):
    listener = next(i for i in zoo.expected if i.kind == "tcp" and i.state is State.LISTEN)
    client = next(i for i in zoo.expected if i.kind == "tcp" and i.label.endswith("client"))
    # procnet leaves a listener's Send-Q unknown (None); a backend printing the row's 0 differs.
    records = [attrs.evolve(r, tx_queue=0) if r.inode == listener.inode else r for r in procnet_records(TCP)]
    changed = []
    for rec in records:
        if rec.inode == listener.inode:
            rec = attrs.evolve(rec, tx_queue=128)  # the backlog limit, as inet_diag reports it
        elif rec.inode == client.inode:
            rec = attrs.evolve(rec, uid=rec.uid + 1)
        changed.append(rec)
    only_a, only_b, diffs = compare_records(TCP, changed, records)
    assert only_a == only_b == []
    by_inode = {d.inode: d for d in diffs}
    assert by_inode[listener.inode].field == "tx_queue" and by_inode[listener.inode].explained
    assert by_inode[client.inode].field == "uid" and by_inode[client.inode].explained is None
    extra = changed[0]
    only_a, only_b, _ = compare_records(TCP, changed, [r for r in records if r.inode != extra.inode])
    assert only_a == [extra] and only_b == []


def test_abstract_names_with_nul_are_an_explained_difference():
    name = b"\0two\0nuls"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(name)
        inode = os.fstat(sock.fileno()).st_ino
        seen = [r for r in procnet_records(UNIX) if r.inode == inode]
        exact = [attrs.evolve(r, local=UnixAddress(name)) for r in seen]
        _, _, (diff,) = compare_records(UNIX, exact, seen)
        assert diff.field == "local" and "NUL" in diff.explained


def test_raw_dumps_come_from_the_first_backend_with_a_wire_form():
    failing = StubBackend("wire", 100, [TCP, UDP], error=procsock.BackendUnavailable("wire", "refused"))
    fine = StubBackend("other", 10, [TCP])
    dumps, notes = Resolver(registry_of(failing, fine), Source.live()).raw_dumps()
    assert [(k.name, b, d) for k, b, d in dumps] == [("tcp", "other", b"other:tcp;")]
    assert notes == ["udp: no raw dump (wire: refused)"]
