"""Backend diff and raw dumps, with the real procnet backend against stub backends."""

import json
import os
import socket
import subprocess
import sys

import attrs
import pytest

import procsock
from procsock.compare import compare_backends, compare_records
from procsock.errors import BadArgument, NothingCompared
from procsock.plugin import hookimpl
from procsock.testing import assert_backends_agree
from procsock.model import TCP, UDP, UNIX, Netns, Source, State, UnixAddress
from procsock.resolver import Query, Resolver
from procsock_plugins import pidfd, procnet
from sockzoo import needs_root
from stubs import StubBackend, registry_of
from test_netns import other_namespace  # noqa: F401 (a fixture)


def procnet_records(kind):
    return procnet.procsock_collect(kind, Source.live(), None, netns=Netns()).socket_records()


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
        _, _, (unknown,) = compare_records(UNIX, exact, seen)  # the core knows nothing of /proc/net's text
        assert unknown.field == "local" and unknown.explained is None
        procnet_says = lambda field, a, b: procnet.procsock_explain_difference(field, b, a)  # noqa: E731
        _, _, (diff,) = compare_records(UNIX, exact, seen, procnet_says)
        assert diff.field == "local" and "NUL" in diff.explained


class Explains(StubBackend):
    """A stub that knows one cause of its own: it reports uids shifted by one; or answers `answer`."""

    def __init__(self, name, priority, kinds, records, answer=None):
        super().__init__(name, priority, kinds, records)
        self.answer, self.asked = answer, []

    @procsock.hookimpl
    def procsock_explain_difference(self, field, mine, other):
        self.asked.append((field, mine, other))
        if self.answer is not None:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer
        if field == "uid" and mine.uid == other.uid + 1:
            return "explains reports uid + 1"
        if field is None and mine is not None and mine.inode == 0:
            return "explains invents inode-0 rows"
        return None


def shifted(records):
    return [attrs.evolve(r, uid=r.uid + 1, backend="explains") for r in records]


def test_each_backend_explains_the_differences_its_own_source_causes(zoo):
    query = Query(kinds=frozenset({"tcp"}))
    invented = attrs.evolve(procnet_records(TCP)[0], inode=0, local=UnixAddress(b"invented"), backend="explains")
    for a, b in (("explains", "procnet"), ("procnet", "explains")):
        explains = Explains("explains", 60, [TCP], shifted(procnet_records(TCP)) + [invented])
        result = compare_backends(with_procnet(explains), Source.live(), a, b, query)
        # other sockets of a busy host may change between the reads: look at the zoo's and the uids
        uids = {d.inode: d.explained for d in result.differences if d.field == "uid"}
        assert {i.inode for i in zoo.expected if i.kind == "tcp"} <= set(uids)
        assert set(uids.values()) == {"explains reports uid + 1"}
        assert dict(result.explained_only)[invented] == "explains invents inode-0 rows"
        # asked with its own record as `mine`, whichever side of the comparison it is on
        assert all(mine is None or mine.backend == "explains" for _, mine, _ in explains.asked)
        assert all(other is None or other.backend == "procnet" for _, _, other in explains.asked)


@pytest.mark.parametrize("answer", [ValueError("plugin bug"), 42, ""], ids=["raises", "not-str", "empty"])
def test_a_bad_explanation_leaves_the_difference_unexplained(zoo, answer):
    explains = Explains("explains", 60, [TCP], shifted(procnet_records(TCP)), answer)
    result = compare_backends(with_procnet(explains), Source.live(), query=Query(kinds=frozenset({"tcp"})))
    uids = [d for d in result.differences if d.field == "uid"]
    assert explains.asked and uids and not result.agree
    assert all(d.explained is None for d in uids)


def test_raw_dumps_come_from_the_first_backend_with_a_wire_form():
    failing = StubBackend("wire", 100, [TCP, UDP], error=procsock.BackendUnavailable("wire", "refused"))
    fine = StubBackend("other", 10, [TCP])
    dumps, notes = Resolver(registry_of(failing, fine), Source.live()).raw_dumps()
    # ours first; a busy host may have other namespaces whose processes hold sockets: each the same
    assert [(k.name, b, d) for k, _, b, d in dumps] == [("tcp", "other", b"other:tcp;")] * len(dumps)
    assert dumps[0][1].pid is None and notes[0] == "udp: no raw dump (wire: refused)"
    assert len(notes) == len(dumps) and all(note.startswith("udp") for note in notes)


class KeepsRaw(StubBackend):
    """A stub that keeps `form` as the wire form of its answer when asked (`raw`), and counts
    the dumps asked of it afterwards (it gives `form` there too, when bytes)."""

    def __init__(self, name, priority, kinds, form):
        super().__init__(name, priority, kinds)
        self.form, self.dumped = form, 0

    @hookimpl
    def procsock_collect(self, kind, source, inodes, netns, raw):
        return attrs.evolve(super().procsock_collect(kind, source, inodes, netns), raw=self.form if raw else None)

    @hookimpl
    def procsock_raw_dump(self, kind, source):
        self.dumped += 1
        return self.form if isinstance(self.form, bytes) else None


def test_a_capture_saves_the_wire_form_its_snapshot_was_read_from():
    """Resolver.capture reads each kind once: the wire form a backend kept with its answer is
    saved, procsock_raw_dump is asked only for an answer that kept none (a backend without
    `raw`), and a kept form that is not bytes is a plugin error: the next backend answers."""
    keeps = KeepsRaw("keeps", 100, [TCP], b"kept:tcp;")
    broken = KeepsRaw("broken", 200, [UDP], "not bytes")
    plain = StubBackend("plain", 10, [UDP])
    snap, dumps, notes = Resolver(registry_of(keeps, broken, plain), Source.live()).capture()
    ours = sorted((k.name, b, d) for k, netns, b, d in dumps if netns.pid is None)
    assert ours == [("tcp", "keeps", b"kept:tcp;"), ("udp", "plain", b"plain:udp;")] and not notes
    assert keeps.dumped == 0 and broken.dumped > 0
    assert any("broken: plugin error: its raw form is str, not bytes" in note.text for note in snap.notes)
    assert (snap.answered_by["tcp"], snap.answered_by["udp"]) == ("keeps", "plain")  # ours (other namespaces: theirs)


class FailsOn(StubBackend):
    """A stub whose collect crashes (a plugin's bug) on the kinds named."""

    def __init__(self, name, priority, kinds, records, crash, on):
        super().__init__(name, priority, kinds, records)
        self.crash, self.on = crash, on

    @procsock.hookimpl
    def procsock_collect(self, kind, source, inodes, netns):
        if kind.name in self.on:
            raise self.crash
        return super().procsock_collect(kind, source, inodes, netns)


@pytest.mark.parametrize("crash", [ValueError("bad line"), MemoryError()])
def test_a_crashing_backend_is_reported_as_not_compared(zoo, crash):
    both = procnet_records(TCP) + procnet_records(UDP)
    crashing = FailsOn("crashing", 60, [TCP, UDP], both, crash, {"udp"})
    result = compare_backends(with_procnet(crashing), Source.live(), query=Query(kinds=frozenset({"tcp", "udp"})))
    assert result.kinds == ("tcp",) and result.compared > 0
    (reason,) = result.not_compared
    assert reason.startswith("udp: ") and "plugin error: %s" % type(crash).__name__ in reason
    crashing.on = {"tcp", "udp"}
    with pytest.raises(NothingCompared, match="crashing vs procnet compared no kind: tcp: .*plugin error"):
        compare_backends(with_procnet(crashing), Source.live(), query=Query(kinds=frozenset({"tcp", "udp"})))


def test_comparing_nothing_is_an_error_saying_why():
    tcp = StubBackend("tcp-only", 60, [TCP])
    udp = StubBackend("udp-only", 70, [UDP])
    with pytest.raises(NothingCompared, match="tcp-only and udp-only serve no common kind"):
        compare_backends(registry_of(tcp, udp), Source.live(), "tcp-only", "udp-only")
    with pytest.raises(NothingCompared, match="no backend here to compare udp-only with on udp .*tcp-only: serves no"):
        compare_backends(registry_of(tcp, udp), Source.live())
    empty = StubBackend("empty", 50, [TCP])
    with pytest.raises(NothingCompared, match="tcp-only vs empty compared nothing: neither saw a socket of tcp"):
        compare_backends(registry_of(tcp, empty), Source.live())


@pytest.fixture
def no_sockets():
    """The pid of a process that holds no socket at all."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "procsock", "compare", *args], capture_output=True, text=True,
                          timeout=120)


CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")
DIAG = os.path.join(os.path.dirname(__file__), "fixtures", "diag", "tcp.bin")


@pytest.mark.parametrize("args, says", [
    (["--proc-root", CAPTURE], ["no backend here to compare procnet with", "netlink: a captured /proc tree"]),
    (["--diag-file", DIAG], ["no backend here to compare netlink with", "procnet: "]),
    (["--pid", "NO_SOCKETS"], ["netlink vs procnet compared nothing: neither saw a socket of ", "held by pid "]),
    (["--pid", "NO_SOCKETS", "--kind", "tcp", "procnet", "netlink"], ["procnet vs netlink compared nothing"]),
])
def test_a_comparison_of_nothing_exits_1_with_one_line(no_sockets, args, says):
    proc = cli(*[str(no_sockets) if a == "NO_SOCKETS" else a for a in args])
    lines = proc.stderr.splitlines()
    assert (proc.returncode, proc.stdout, len(lines)) == (1, "", 1), proc.stderr
    assert lines[0].startswith("procsock: ") and "second" not in lines[0]
    for text in says:
        assert text in lines[0]


def test_a_comparison_with_a_plugin_of_other_kinds_exits_1():
    pytest.importorskip("procsock_ping")
    proc = cli("ping", "procnet")
    assert proc.returncode == 1
    assert proc.stderr == "procsock: ping and procnet serve no common kind here (for this query)\n"


def test_assert_backends_agree_fails_when_it_compared_nothing(no_sockets):
    with pytest.raises(AssertionError, match="backends not compared: .*neither saw a socket of tcp held by pid %d"
                       % no_sockets):
        assert_backends_agree(pid=no_sockets, kind=["tcp"])
    if pidfd.procsock_unavailable(Source.live()) is None:
        with pytest.raises(AssertionError, match="pidfd vs netlink compared nothing"):
            assert_backends_agree("pidfd", "netlink", pid=no_sockets, kind=["tcp"])
    with pytest.raises(BadArgument, match="backend pidfd answers lookups only"):
        assert_backends_agree("pidfd", "netlink", kind=["tcp"])


needs_pidfd = pytest.mark.skipif(
    pidfd.procsock_unavailable(Source.live()) is not None, reason="pidfd_getfd is not available here"
)


@needs_pidfd
def test_a_lookup_only_backend_is_compared_on_a_process_sockets():
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        udp.bind(("::1", 0))
        with client, server:
            result = assert_backends_agree("pidfd", "netlink", pid=os.getpid(), kind=["tcp", "udp6"])
            assert (result.a, result.b, set(result.kinds)) == ("pidfd", "netlink", {"tcp", "udp6"})
            assert result.compared >= 4 and not result.only_a and not result.only_b
            proc = cli("pidfd", "netlink", "--pid", str(os.getpid()), "--kind", "tcp")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert proc.stdout.splitlines()[-1].startswith("pidfd vs netlink on tcp: agree (")


@needs_root
@needs_pidfd
def test_a_lookup_only_backend_is_compared_in_the_namespace_of_the_process(other_namespace):  # noqa: F811 (fixture)
    pid, report = other_namespace
    result = assert_backends_agree("pidfd", "netlink", pid=pid, kind=["tcp", "udp6"])
    assert result.compared == 4  # listener, client, server (tcp) and udp (udp6): each in its namespace
    assert set(result.kinds) == {"tcp", "udp6"} and not result.only_a and not result.only_b


def test_a_plugins_explanation_reaches_the_terminal_escaped(zoo):
    from procsock.render import comparison_lines

    explains = Explains("explains", 60, [TCP], shifted(procnet_records(TCP)), "known\x1b[2J\ncause")
    result = compare_backends(with_procnet(explains), Source.live(), query=Query(kinds=frozenset({"tcp"})))
    lines = [line for line in comparison_lines(result) if "(expected: known" in line]
    assert lines and not any(ch in line for line in lines for ch in "\x1b\n")


OWN = procsock.SocketKind("own", procsock.Family.INET, "own")


def test_a_plugin_of_its_own_kind_at_high_priority_leaves_the_other_kinds_their_best_pair(zoo):
    own = StubBackend("own", 160, [OWN])  # the workaround: a plugin ranked above every built-in
    mirror = StubBackend("mirror", 60, [TCP, UNIX], procnet_records(TCP) + procnet_records(UNIX))
    result = compare_backends(with_procnet(own, mirror), Source.live(), query=Query(kinds=frozenset({"own", "tcp"})))
    assert [(p.a, p.b, p.kinds) for p in result.pairs] == [("mirror", "procnet", ("tcp",))]
    assert (result.a, result.b, result.kinds) == ("mirror", "procnet", ("tcp",))  # one pair reads as before
    (reason,) = result.unpaired
    assert reason.startswith("no backend here to compare own with on own (") and "mirror: serves none" in reason
    assert result.not_compared == (reason,)
    with pytest.raises(NothingCompared, match="no backend here to compare own with on own"):
        compare_backends(with_procnet(own, mirror), Source.live(), query=Query(kinds=frozenset({"own"})))


def test_kinds_with_different_best_pairs_are_compared_by_each_pair(zoo):
    from procsock.render import comparison_lines, comparison_to_dict

    mirror = StubBackend("mirror", 60, [TCP], procnet_records(TCP))
    other = StubBackend("other", 70, [UDP], [attrs.evolve(r, uid=r.uid + 1) for r in procnet_records(UDP)])
    result = compare_backends(with_procnet(mirror, other), Source.live(), query=Query(kinds=frozenset({"tcp", "udp"})))
    by_pair = {(p.a, p.b): p for p in result.pairs}
    assert set(by_pair) == {("mirror", "procnet"), ("other", "procnet")} and (result.a, result.b) == (None, None)
    assert by_pair["mirror", "procnet"].kinds == ("tcp",) and by_pair["other", "procnet"].kinds == ("udp",)
    udp_zoo = {i.inode for i in zoo.expected if i.kind == "udp"}
    assert udp_zoo and udp_zoo <= {d.inode for d in by_pair["other", "procnet"].unexplained if d.field == "uid"}
    assert not by_pair["other", "procnet"].agree and not result.agree  # one pair disagreeing is enough
    assert result.compared == sum(p.compared for p in result.pairs) and set(result.kinds) == {"tcp", "udp"}
    lines = list(comparison_lines(result))
    assert lines[-1].startswith("2 pairs compared: DISAGREE (")
    assert any(line.startswith("other vs procnet on udp: DISAGREE (") for line in lines)
    shape = comparison_to_dict(result)
    assert (shape["a"], shape["b"], shape["agree"]) == (None, None, False)
    assert [(p["a"], p["b"], p["kinds"]) for p in shape["pairs"]] == [(p.a, p.b, list(p.kinds)) for p in result.pairs]
    assert len(shape["differences"]) == sum(len(p["differences"]) for p in shape["pairs"])


def test_one_named_backend_is_paired_per_kind_with_the_best_other(zoo):
    mirror = StubBackend("mirror", 60, [TCP], procnet_records(TCP))
    other = StubBackend("other", 70, [UDP], procnet_records(UDP))
    result = compare_backends(with_procnet(mirror, other), Source.live(), None, "procnet",
                              Query(kinds=frozenset({"tcp", "udp", "unix"})))
    assert {(p.a, p.b, p.kinds) for p in result.pairs} == {("mirror", "procnet", ("tcp",)),
                                                           ("other", "procnet", ("udp",))}
    assert [r.split(" (")[0] for r in result.unpaired] == ["no backend here to compare procnet with on unix"]


def test_the_cli_compares_each_kind_with_its_pair_and_says_which_were_not():
    pytest.importorskip("procsock_ping")  # a plugin of kinds no other backend serves
    with socket.create_server(("127.0.0.1", 0)) as listener:
        proc = cli("--kind", "icmp", "--kind", "tcp", "--pid", str(os.getpid()))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("not compared: no backend here to compare ping with on icmp (")
        assert lines[-1].startswith("netlink vs procnet on tcp: agree (")
        shape = json.loads(cli("--kind", "icmp", "--kind", "tcp", "--pid", str(os.getpid()), "--json").stdout)
        assert (shape["a"], shape["b"], shape["kinds"], shape["agree"]) == ("netlink", "procnet", ["tcp"], True)
        assert [p["kinds"] for p in shape["pairs"]] == [["tcp"]] and shape["not_compared"][0] == lines[0][14:]
        assert listener.fileno() >= 0
        proc = cli("--kind", "icmp")
        assert (proc.returncode, proc.stdout) == (1, "")
        assert proc.stderr.startswith("procsock: no backend here to compare ping with on icmp (")
