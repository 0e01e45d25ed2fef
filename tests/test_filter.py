"""procsock.filter on its own: ss's filter language parsed into a tree and evaluated on rows.

Pure: rows are built from records, names come from a table (no system lookups)."""

import ipaddress
import socket

import pytest

from procsock.details import Extended
from procsock.filter import (
    And, Autobound, Compare, Filter, FilterError, Host, Lookups, Not, Or, STATE_GROUPS, parse, starts_filter,
)
from procsock.model import (
    TCP, TCP6, UDP, UNIX, InetAddress, SockType, SocketRecord, State, UnixAddress, row_from_record,
)

NAMES = Lookups(
    service={"https": 443, "ssh": 22}.get,
    interface={"lo": 1, "eth0": 2}.get,
    user={"root": 0, "nobody": 65534}.get,
    cgroup={"/system.slice": 77}.get,
    ephemeral=lambda: (32768, 60999),
)


def p(text):
    return parse(text, NAMES)


def inet(address, port):
    ip = ipaddress.ip_address(address)
    return InetAddress(ip.packed, port)


def row(local, remote=None, kind=TCP, state=State.ESTABLISHED, inode=1000, uid=0, interface=0, extended=None):
    return row_from_record(SocketRecord(
        kind=kind, inode=inode, type=SockType.STREAM if kind is not UDP else SockType.DGRAM, protocol=0,
        state=state, local=local, remote=remote, rx_queue=0, tx_queue=0, uid=uid, backend="test",
        interface=interface, extended=extended,
    ))


SRC22 = Compare("sport", "=", 22)
DST443 = Compare("dport", "=", 443)


@pytest.mark.parametrize("text, tree", [
    ("sport = 22", SRC22),
    ("sport 22", SRC22),
    ("sport eq :22", SRC22),
    ("sport == ssh", SRC22),
    ("sport != 22", Not(SRC22)),
    ("sport neq 22", Not(SRC22)),
    ("sport ne 22", Not(SRC22)),
    ("dport < 1024", Compare("dport", "<", 1024)),
    ("dport lt 1024", Compare("dport", "<", 1024)),
    ("dport > 0x10", Compare("dport", ">", 16)),
    ("dport gt 16", Compare("dport", ">", 16)),
    ("dport <= 5", Compare("dport", "<=", 5)),
    ("dport le 5", Compare("dport", "<=", 5)),
    ("dport leq 5", Compare("dport", "<=", 5)),
    ("dport >= 5", Compare("dport", ">=", 5)),
    ("dport ge 5", Compare("dport", ">=", 5)),
    ("dport geq 5", Compare("dport", ">=", 5)),
    ("( dport = :443 or sport = :22 )", Or(DST443, SRC22)),
    ("(dport = :443 or sport = :22)", Or(DST443, SRC22)),
    ("sport = 22 dport = https", And(SRC22, DST443)),
    ("sport = 22 && dport = https", And(SRC22, DST443)),
    ("sport = 22 & dport = https", And(SRC22, DST443)),
    ("sport = 22 || dport = https", Or(SRC22, DST443)),
    ("sport = 22 | dport = https", Or(SRC22, DST443)),
    # ss has no precedence: left to right
    ("sport = 22 or dport = 443 and sport = 22", And(Or(SRC22, DST443), SRC22)),
    ("sport = 22 or ( dport = 443 and sport = 22 )", Or(SRC22, And(DST443, SRC22))),
    ("not sport = 22", Not(SRC22)),
    ("! sport = 22 and dport = 443", And(Not(SRC22), DST443)),
    ("!(sport = 22)", Not(SRC22)),
    ("src 10.0.0.0/8", Host("src", network=ipaddress.ip_network("10.0.0.0/8"))),
    ("src = 10.0.0.1:22", Host("src", network=ipaddress.ip_network("10.0.0.1/32"), port=22)),
    ("dst [::1]", Host("dst", network=ipaddress.ip_network("::1/128"))),
    ("dst [::1]:ssh", Host("dst", network=ipaddress.ip_network("::1/128"), port=22)),
    ("dst [fe80::/10]", Host("dst", network=ipaddress.ip_network("fe80::/10"))),
    ("dst ::1", Host("dst", network=ipaddress.ip_network("::1/128"))),
    ("dst 10.0.0.0/8:443", Host("dst", network=ipaddress.ip_network("10.0.0.0/8"), port=443)),
    ("dst *", Host("dst")),
    ("dst *:443", Host("dst", port=443)),
    ("dst inet6:[::]:1", Host("dst", network=ipaddress.ip_network("::/128"), port=1)),
    ("src unix:/run/*.sock", Host("src", glob="/run/*.sock")),
    ("src /run/*", Host("src", glob="/run/*")),
    ("src @foo*", Host("src", glob="@foo*")),
    ("src != 10.0.0.1", Not(Host("src", network=ipaddress.ip_network("10.0.0.1/32")))),
    ("dev = lo", Compare("dev", "=", 1)),
    ("dev 7", Compare("dev", "=", 7)),
    ("dev != eth0", Not(Compare("dev", "=", 2))),
    ("fwmark = 0x10/0xf0", Compare("fwmark", "=", (16, 240))),
    ("fwmark 5", Compare("fwmark", "=", (5, 0xFFFFFFFF))),
    ("cgroup = /system.slice", Compare("cgroup", "=", 77)),
    ("inode = 12345", Compare("inode", "=", 12345)),
    ("uid = nobody", Compare("uid", "=", 65534)),
    ("uid >= 1000", Compare("uid", ">=", 1000)),
    ("pid = 1", Compare("pid", "=", 1)),
    ("comm = ssh*", Compare("comm", "=", "ssh*")),
    ("autobound", Autobound(32768, 60999)),
    ("sport\\ = 22", None),  # an escaped blank joins words: "sport =" is no key
])
def test_parses_into_the_tree(text, tree):
    if tree is None:
        with pytest.raises(FilterError, match="unknown word 'sport ='"):
            p(text)
        return
    assert p(text) == Filter(text, None, tree)


def test_words_are_joined_as_ss_joins_its_arguments():
    assert p(["(", "dport", "=", ":443", ")"]).expression == DST443
    assert p(["( dport = :443 or", "sport = :22 )"]).expression == Or(DST443, SRC22)


@pytest.mark.parametrize("text, states", [
    ("state established", {State.ESTABLISHED}),
    ("state established state syn-sent", {State.ESTABLISHED, State.SYN_SENT}),
    ("state LISTENING", {State.LISTEN}),
    ("state unconnected", {State.CLOSE}),
    ("state closed", {State.CLOSE}),
    ("state syn-rcv", {State.SYN_RECV}),
    ("state bucket", {State.SYN_RECV, State.TIME_WAIT}),
    ("exclude listening", set(STATE_GROUPS["all"]) - {State.LISTEN}),
    ("excl established excl time-wait", set(STATE_GROUPS["all"]) - {State.ESTABLISHED, State.TIME_WAIT}),
    ("state connected", set(STATE_GROUPS["all"]) - {State.LISTEN, State.CLOSE}),
    ("state synchronized", set(STATE_GROUPS["all"]) - {State.LISTEN, State.CLOSE, State.SYN_SENT}),
    ("state big", set(STATE_GROUPS["all"]) - {State.SYN_RECV, State.TIME_WAIT}),
    ("state bound-inactive", {State.BOUND_INACTIVE}),
    ("state all", set(State) - {State.NEW_SYN_RECV}),
])
def test_states_and_groups(text, states):
    parsed = p(text)
    assert parsed.states == states and parsed.expression is None


def test_states_then_expression():
    parsed = p("state established ( dport = :443 )")
    assert parsed.states == {State.ESTABLISHED} and parsed.expression == DST443


@pytest.mark.parametrize("text, position, problem", [
    ("dport = = 3", 9, "'=' does not look like a port"),
    ("dport", 6, "a value for dport expected, the filter ends"),
    ("( dport = 3", 12, "`)` expected to close the `(` at 1"),
    ("dport = 3 )", 11, "unexpected ')'"),
    ("dport = 3 and", 14, "an expression expected, the filter ends"),
    ("and dport = 3", 1, "an expression expected before 'and'"),
    ("dport = 3 or or", 14, "an expression expected before 'or'"),
    ("sprot = 22", 1, "unknown word 'sprot'"),
    ("state establised", 7, "unknown state 'establised'"),
    ("state new-syn-recv", 7, "unknown state 'new-syn-recv'"),
    ("dport = 3 state listening", 11, "state and exclude come first"),
    ("dport = 70000", 9, "a port out of range"),
    ("dport = nosuchservice", 9, "'nosuchservice' does not look like a port"),
    ("dport = *", 9, "a port expected for dport"),
    ("src 10.0.0.300", 5, "an inet prefix expected, not '10.0.0.300'"),
    ("src [::1", 5, "`]` expected"),
    ("src [::1]/64", 5, "'/64' does not look like a port"),
    ("src host.example", 5, "an inet prefix expected"),
    ("dev = nosuchdev", 7, "an interface name or index expected"),
    ("dev < 3", 5, "operator < does not apply here"),
    ("uid = nosuchuser", 7, "no such user 'nosuchuser'"),
    ("cgroup = /nosuch", 10, "no such cgroup '/nosuch'"),
    ("fwmark = 1/x", 10, "a mask expected"),
    ("pid = -1", 7, "a number out of range"),
    ("(" * 150 + "dport = 1" + ")" * 150, 102, "too deeply nested"),
])
def test_a_bad_filter_says_what_and_where(text, position, problem):
    with pytest.raises(FilterError) as caught:
        p(text)
    assert caught.value.position == position and problem in caught.value.problem
    assert "\n" not in str(caught.value) and str(caught.value).startswith("at %d in " % position)


def test_a_huge_filter_is_refused_before_it_is_read():
    with pytest.raises(FilterError, match="longer than"):
        p("dport = 1 or " * 1000)


def test_a_long_filter_is_quoted_in_part():
    with pytest.raises(FilterError) as caught:
        p("inode 1 " * 400 + "inode")
    assert caught.value.position == 3206 and len(str(caught.value)) < 250 and " ... " in str(caught.value)


def test_an_ambiguous_service_is_refused():
    def service(name):
        raise ValueError("ambiguous service %r (tcp and udp ports differ)" % name)

    with pytest.raises(FilterError, match="ambiguous service 'x'"):
        parse("dport = x", Lookups(service, NAMES.interface, NAMES.user, NAMES.cgroup, NAMES.ephemeral))


def test_the_system_lookups_find_real_names():
    assert parse("dport = :%s" % socket.getservbyport(22, "tcp")).expression == Compare("dport", "=", 22)
    assert parse("dev lo").expression == Compare("dev", "=", socket.if_nametoindex("lo"))
    assert parse("uid root").expression == Compare("uid", "=", 0)
    assert isinstance(parse("cgroup /").expression.value, int)


@pytest.mark.parametrize("word, starts", [
    ("state", True), ("exclude", True), ("src", True), ("DPORT", True), ("(", True), ("( dport = 1 )", True),
    ("!", True), ("not", True), ("pid", True), ("comm", True), ("backends", False), ("nosuch", False), ("", False),
])
def test_what_starts_a_filter(word, starts):
    assert starts_filter(word) is starts


V4 = row(inet("10.0.0.1", 22), inet("10.0.0.2", 50312))
V6 = row(inet("fec0:42::24", 40520), inet("fec0:42::1", 22), kind=TCP6)
MAPPED = row(inet("::ffff:10.0.0.1", 8080), inet("::ffff:192.168.1.1", 1234), kind=TCP6)
LISTENER = row(inet("0.0.0.0", 22), inet("0.0.0.0", 0), state=State.LISTEN)
UDP_EPHEMERAL = row(inet("127.0.0.1", 40000), None, kind=UDP, state=State.CLOSE)
UNIX_NAMED = row(UnixAddress(b"/run/Foo.sock"), None, kind=UNIX, state=State.LISTEN)
UNIX_ABSTRACT = row(UnixAddress(b"\0bar"), None, kind=UNIX, state=State.LISTEN)
UNIX_AUTOBOUND = row(UnixAddress(b"\x0000a1f"), None, kind=UNIX)
UNIX_UNNAMED = row(UnixAddress(b""), None, kind=UNIX)
MARKED = row(inet("10.0.0.1", 5), inet("10.0.0.2", 6), interface=2, uid=1000, inode=4242,
             extended=Extended(mark=0x1234, cgroup_id=77))
ROWS = {
    "v4": V4, "v6": V6, "mapped": MAPPED, "listener": LISTENER, "udp": UDP_EPHEMERAL, "named": UNIX_NAMED,
    "abstract": UNIX_ABSTRACT, "autobound": UNIX_AUTOBOUND, "unnamed": UNIX_UNNAMED, "marked": MARKED,
}
OWNERS = {"v4": ((100, 3, "sshd", 0, None),), "listener": ((1, 7, "systemd", 0, None), (100, 4, "sshd", 0, None))}


@pytest.mark.parametrize("text, chosen", [
    ("dport = 22", {"v6"}),
    ("sport = :22", {"v4", "listener"}),
    ("sport != 22", set(ROWS) - {"v4", "listener"}),
    ("sport < 1024", {"v4", "listener", "marked"}),
    ("sport > 22", {"v6", "mapped", "udp"}),
    ("sport <= 22", {"v4", "listener", "marked"}),
    ("sport >= 40000", {"v6", "udp"}),
    ("dport >= 50312", {"v4"}),
    ("src 10.0.0.1", {"v4", "mapped", "marked"}),  # an IPv4 prefix matches v4-mapped IPv6
    ("src [::ffff:10.0.0.1]", {"mapped"}),
    ("src 10.0.0.0/8", {"v4", "mapped", "marked"}),
    ("src 0.0.0.0", {"listener"}),
    ("src 0.0.0.0/0", {"v4", "mapped", "listener", "udp", "marked"}),
    ("src [::/0]", {"v6", "mapped"}),
    ("src fec0:42::/32", {"v6"}),
    ("dst [fec0:42::1]:22", {"v6"}),
    ("dst 10.0.0.2:50312", {"v4"}),
    ("src *:22", {"v4", "listener"}),
    ("src *", {"v4", "v6", "mapped", "listener", "udp", "marked"}),
    ("src unix:/run/*", {"named"}),
    ("src /RUN/foo*", {"named"}),  # ss's globs ignore case
    ("src @b?r", {"abstract"}),
    ("src unix:*", {"named", "abstract", "autobound", "unnamed"}),
    ("autobound", {"autobound", "unnamed", "v6", "udp"}),
    ("dev = eth0", {"marked"}),
    ("dev != 2", set(ROWS) - {"marked"}),
    ("fwmark = 0x34/0xff", {"marked"}),
    ("fwmark 0x1234", {"marked"}),
    ("fwmark 0x1235", set()),
    ("cgroup /system.slice", {"marked"}),
    ("inode = 4242", {"marked"}),
    ("inode != 4242", set(ROWS) - {"marked"}),
    ("uid >= 1000", {"marked"}),
    ("pid = 100", {"v4", "listener"}),
    ("pid < 50", {"listener"}),
    ("comm = sshd", {"v4", "listener"}),
    ("comm = SYST*", {"listener"}),
    ("comm != sshd", set(ROWS) - {"v4", "listener"}),
    ("sport = 22 or dport = 22 and src 10.0.0.0/8", {"v4"}),  # left to right: (a or b) and c
    ("sport = 22 or ( dport = 22 and src 10.0.0.0/8 )", {"v4", "listener"}),
    ("not ( sport = 22 or src unix:* )", {"v6", "mapped", "udp", "marked"}),
    ("state listening", {"listener", "named", "abstract"}),
    ("exclude listening exclude established", {"udp"}),
    ("state listening sport = 22", {"listener"}),
])
def test_evaluates_as_ss_does(text, chosen):
    parsed = p(text)
    assert {name for name, r in ROWS.items() if parsed.wants(r, OWNERS.get(name, ()))} == chosen


def test_only_fwmark_and_cgroup_need_details():
    assert p("fwmark 1").needs_details and p("sport = 1 or not cgroup /system.slice").needs_details
    assert not p("sport = 1 or comm x or src 10.0.0.0/8 or autobound").needs_details


def test_the_longest_chain_a_filter_can_hold_is_evaluated():
    text = " ".join(["inode 1"] * 510)
    assert len(text) < 4096 and not p(text).wants(V4)
    assert p(text.replace("inode 1 ", "", 1) + " or inode 1000").wants(V4)
    assert not p(" or ".join(["inode 1"] * 370)).wants(V4)
