"""ss's filter language: `state`/`exclude` words, then an expression over a socket's row and owners.

    FILTER := (("state" | "exclude" | "excl") STATE)* [LIST]
    LIST   := EXPR (["and" | "&" | "&&" | "or" | "|" | "||"] EXPR)*    left to right, as ss: no precedence
    EXPR   := "(" LIST ")" | ("not" | "!") EXPR | "autobound" | KEY [OP] VALUE

Keys: src, dst (address, prefix, [v6], *, :port, unix:GLOB or /GLOB, @GLOB), sport, dport (a port or
service name), dev (name or ifindex), fwmark (MARK[/MASK]), cgroup (a cgroup v2 path), inode, uid
(number or user name), and procsock's own pid, comm (process name glob) and, from the owners'
context (computed when a filter names them), unit (a systemd unit glob; `nginx` matches
`nginx.service`), container (an id's first digits, or a glob) and pod (UID, name or NAMESPACE/NAME
glob). OP: = == eq, != ne neq,
< lt, > gt, <= le leq, >= ge geq; none means =. ss's semantics: `a or b and c` is `(a or b) and c`,
an IPv4 prefix also matches v4-mapped IPv6 addresses, glob matching ignores case, `state` words
combine (ss's groups: all, connected, synchronized, bucket, big).

`parse` is a pure function from text (or ss's argument words) to a `Filter`, a tree of frozen
values; names (services, interfaces, users, cgroups) are looked up through `Lookups`, the edge
to the system. A bad filter raises FilterError with the 1-based position of the word at fault.
"""

import fnmatch
import ipaddress
import operator
import os
import pwd
import socket
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import attrs

from procsock.model import (OWNER_NAME, OWNER_PID, Context, Contexts, Family, Row, State, endpoint_port,
                            owner_contexts, unit_and_manager)

__all__ = ["Filter", "FilterError", "Lookups", "parse", "starts_filter"]


class FilterError(ValueError):
    """A filter that does not parse: what is wrong and where (`position`, 1-based, in `text`)."""

    def __init__(self, text: str, position: int, problem: str) -> None:
        shown = text if len(text) <= 120 else text[:60] + " ... " + text[-50:]  # the message stays a line
        super().__init__("at %d in %r: %s" % (position, shown, problem))
        self.text, self.position, self.problem = text, position, problem


@attrs.frozen
class Lookups:
    """Names to numbers, the filter's only contact with the system (tests give their own)."""

    service: Callable[[str], Optional[int]]  # "https" -> 443
    interface: Callable[[str], Optional[int]]  # "lo" -> 1
    user: Callable[[str], Optional[int]]  # "root" -> 0
    cgroup: Callable[[str], Optional[int]]  # "/system.slice" -> its cgroup id
    ephemeral: Callable[[], Tuple[int, int]]  # the local port range autobound ports come from


def _service(name: str) -> Optional[int]:
    ports = set()
    for protocol in ("tcp", "udp"):
        try:
            ports.add(socket.getservbyname(name, protocol))
        except OSError:
            pass
    if len(ports) > 1:
        raise ValueError("ambiguous service %r (tcp and udp ports differ)" % name)
    return ports.pop() if ports else None


def _interface(name: str) -> Optional[int]:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _user(name: str) -> Optional[int]:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _cgroup(path: str) -> Optional[int]:
    """A cgroup v2 id: the inode of its directory under the first cgroup2 mount (as ss finds it)."""
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[2:3] == ["cgroup2"]]
        if not mounts or ".." in path.split("/"):
            return None
        return os.stat(os.path.join(mounts[0].replace("\\040", " "), path.lstrip("/"))).st_ino
    except (OSError, IndexError):
        return None


def _ephemeral() -> Tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = f.read().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default range


SYSTEM = Lookups(_service, _interface, _user, _cgroup, _ephemeral)

# --- The tree -------------------------------------------------------------------------------------


@attrs.frozen
class And:
    left: "Node"
    right: "Node"


@attrs.frozen
class Or:
    left: "Node"
    right: "Node"


@attrs.frozen
class Not:
    inner: "Node"


@attrs.frozen
class Host:
    """src/dst HOST: a unix name glob, or an inet prefix (None: any address) and a port (None: any)."""

    side: str  # "src" (local) or "dst" (remote)
    glob: Optional[str] = None
    network: Optional[Union[ipaddress.IPv4Network, ipaddress.IPv6Network]] = None
    port: Optional[int] = None


@attrs.frozen
class Compare:
    """KEY OP VALUE on a value of the socket (`KEYS`); an owner key holds when any owner's does."""

    key: str
    op: str  # "=", "<", "<=", ">", ">=" (!= is Not of =)
    value: object


@attrs.frozen
class Autobound:
    """ss's `autobound`: an unnamed or autobound unix socket, an inet socket on an ephemeral port."""

    low: int
    high: int


Node = Union[And, Or, Not, Host, Compare, Autobound]


@attrs.frozen
class Filter:
    """A parsed filter: the states it keeps (None: any) and its expression (None: everything)."""

    text: str
    states: Optional[FrozenSet[State]] = None
    expression: Optional[Node] = None

    @property
    def needs_details(self) -> bool:
        """Whether it reads what only details carry (fwmark, cgroup)."""
        return any(isinstance(n, Compare) and KEYS[n.key][1] for n in _nodes(self.expression))

    @property
    def needs_context(self) -> bool:
        """Whether it reads the owners' context (unit, container, pod)."""
        return any(isinstance(n, Compare) and n.key in CONTEXT_KEYS for n in _nodes(self.expression))

    def wants(self, row: tuple, owners: Sequence[tuple] = (), contexts: Optional[Contexts] = None) -> bool:
        """Whether the socket of `row`, held by `owners` (owner rows) whose processes have
        `contexts` (pid → Context, when computed), passes."""
        if self.states is not None and row[Row.STATE] not in self.states:
            return False
        return self.expression is None or matches(self.expression, row, owners, contexts)


def _nodes(node: Optional[Node]):
    if node is None:
        return
    yield node
    for child in (getattr(node, "left", None), getattr(node, "right", None), getattr(node, "inner", None)):
        yield from _nodes(child)


# --- Evaluation -----------------------------------------------------------------------------------

_INET = (Family.INET, Family.INET6)
_OPS = {"=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _extended(name: str):
    def value(row: tuple, owners: Sequence[tuple], contexts: Optional[Contexts]):
        extended = row[Row.EXTENDED]
        return None if extended is None else getattr(extended, name)
    return value


def _context_values(pick: Callable[[Context], tuple]):
    """An accessor of the values `pick` takes from each owner's Context (None left out)."""
    def values(row: tuple, owners: Sequence[tuple], contexts: Optional[Contexts]) -> tuple:
        return tuple(value for context in owner_contexts(owners, contexts) for value in pick(context)
                     if value is not None)
    return values


# key -> (the socket's value(s): one value, or a tuple of values any of which may match; whether it
# needs details). The context keys (CONTEXT_KEYS) read the owners' Context.
KEYS: Dict[str, Tuple[Callable[[tuple, Sequence[tuple], Optional[Contexts]], object], bool]] = {
    "sport": (lambda row, owners, contexts: endpoint_port(row[Row.KIND].family, row[Row.LOCAL]), False),
    "dport": (lambda row, owners, contexts: endpoint_port(row[Row.KIND].family, row[Row.REMOTE]), False),
    "dev": (lambda row, owners, contexts: row[Row.INTERFACE], False),
    "inode": (lambda row, owners, contexts: row[Row.INODE], False),
    "uid": (lambda row, owners, contexts: row[Row.UID], False),
    "pid": (lambda row, owners, contexts: tuple(owner[OWNER_PID] for owner in owners), False),
    "comm": (lambda row, owners, contexts: tuple(owner[OWNER_NAME] for owner in owners), False),
    "fwmark": (_extended("mark"), True),
    "cgroup": (_extended("cgroup_id"), True),
    "unit": (_context_values(lambda c: unit_and_manager(c.unit)), False),
    "container": (_context_values(lambda c: (c.container_id,)), False),
    "pod": (_context_values(lambda c: (c.pod_uid, c.pod_name, c.pod_name and "%s/%s" % (c.pod_namespace, c.pod_name))),
            False),
}
CONTEXT_KEYS = ("unit", "container", "pod")


def _compare(node: Compare, value) -> bool:
    if value is None:
        return False
    if node.key == "comm":
        return fnmatch.fnmatchcase(value.lower(), node.value.lower())
    if node.key == "unit":
        return fnmatch.fnmatchcase(value, node.value) or fnmatch.fnmatchcase(value.rsplit(".", 1)[0], node.value)
    if node.key == "container":
        return value.startswith(node.value) or fnmatch.fnmatchcase(value, node.value)
    if node.key == "pod":
        return fnmatch.fnmatchcase(value, node.value)
    if node.key == "fwmark":
        mark, mask = node.value
        return value & mask == mark
    return _OPS[node.op](value, node.value)


def _host(node: Host, row: tuple) -> bool:
    family = row[Row.KIND].family
    value = row[Row.LOCAL if node.side == "src" else Row.REMOTE]
    if node.glob is not None:
        if family is not Family.UNIX:
            return False
        name = value[0] if type(value) is tuple else b""
        text = (b"@" + name[1:] if name[:1] == b"\0" else name).decode("utf-8", "surrogateescape")
        return fnmatch.fnmatchcase(text.lower(), node.glob.lower())
    if family not in _INET or type(value) is not tuple:
        return False
    packed, port = value
    if node.port is not None and port != node.port:
        return False
    network = node.network
    if network is None:
        return True
    address = ipaddress.ip_address(packed)
    if network.version == 4 and address.version == 6:
        address = address.ipv4_mapped
        if address is None:
            return False
    return address.version == network.version and address in network


def matches(node: Node, row: tuple, owners: Sequence[tuple] = (), contexts: Optional[Contexts] = None) -> bool:
    """Whether the expression holds for a row (see procsock.model.Row) held by `owners`, whose
    processes have `contexts` (pid → Context, when computed)."""
    kind = type(node)
    if kind is And:
        return matches(node.left, row, owners, contexts) and matches(node.right, row, owners, contexts)
    if kind is Or:
        return matches(node.left, row, owners, contexts) or matches(node.right, row, owners, contexts)
    if kind is Not:
        return not matches(node.inner, row, owners, contexts)
    if kind is Host:
        return _host(node, row)
    if kind is Autobound:
        family = row[Row.KIND].family
        local = row[Row.LOCAL]
        if family is Family.UNIX:
            name = local[0] if type(local) is tuple else b""
            return not name or (len(name) == 6 and name[:1] == b"\0" and name[1:].strip(b"0123456789abcdef") == b"")
        port = endpoint_port(family, local)
        return port is not None and node.low <= port <= node.high
    value = KEYS[node.key][0](row, owners, contexts)
    if type(value) is tuple:
        return any(_compare(node, one) for one in value)
    return _compare(node, value)


# --- Parsing --------------------------------------------------------------------------------------

_AND, _OR, _NOT = ("and", "&", "&&"), ("or", "|", "||"), ("not", "!")
_OPERATORS = {
    "=": "=", "==": "=", "eq": "=", "!=": "!=", "ne": "!=", "neq": "!=", "<": "<", "lt": "<", ">": ">",
    "gt": ">", "<=": "<=", "le": "<=", "leq": "<=", ">=": ">=", "ge": ">=", "geq": ">=",
}
_ALL = frozenset(State) - {State.NEW_SYN_RECV}
STATE_GROUPS: Dict[str, FrozenSet[State]] = {
    "all": _ALL,
    "connected": _ALL - {State.CLOSE, State.LISTEN},
    "synchronized": _ALL - {State.CLOSE, State.LISTEN, State.SYN_SENT},
    "bucket": frozenset({State.SYN_RECV, State.TIME_WAIT}),
    "big": _ALL - {State.SYN_RECV, State.TIME_WAIT},
    "established": frozenset({State.ESTABLISHED}), "syn-sent": frozenset({State.SYN_SENT}),
    "syn-recv": frozenset({State.SYN_RECV}), "syn-rcv": frozenset({State.SYN_RECV}),
    "fin-wait-1": frozenset({State.FIN_WAIT1}), "fin-wait-2": frozenset({State.FIN_WAIT2}),
    "time-wait": frozenset({State.TIME_WAIT}), "unconnected": frozenset({State.CLOSE}),
    "close": frozenset({State.CLOSE}), "closed": frozenset({State.CLOSE}),
    "close-wait": frozenset({State.CLOSE_WAIT}), "last-ack": frozenset({State.LAST_ACK}),
    "listening": frozenset({State.LISTEN}), "listen": frozenset({State.LISTEN}),
    "closing": frozenset({State.CLOSING}), "bound-inactive": frozenset({State.BOUND_INACTIVE}),
    "estab": frozenset({State.ESTABLISHED}), "unconn": frozenset({State.CLOSE}),
}
_COMPARED = ("sport", "dport", "inode", "uid", "pid")  # keys that take every operator
_EQUAL_ONLY = ("dev", "fwmark", "cgroup", "comm") + CONTEXT_KEYS  # keys that take = and != only
_STARTS = frozenset(("state", "exclude", "excl", "src", "dst", "autobound") + _NOT + tuple(KEYS))
MAX_TEXT = 4096  # a longer filter is refused: no one types that, and nesting stays shallow
MAX_DEPTH = 100


def _words(text: str) -> List[Tuple[str, int]]:
    """The words of `text` and their 1-based positions: split at blanks (a backslash escapes the
    next character, as in ss), with leading `(`, `!(` and trailing `)` words of their own."""
    words, at, n = [], 0, len(text)
    while at < n:
        if text[at] in " \t\n":
            at += 1
            continue
        start, chars = at, []
        while at < n and text[at] not in " \t\n":
            if text[at] == "\\" and at + 1 < n:
                at += 1
            chars.append(text[at])
            at += 1
        word, where = "".join(chars), start
        while len(word) > 1 and text[where] == word[0] and (word[0] == "(" or word[:2] in ("!(", "!!")):
            words.append((word[0], where + 1))
            word, where = word[1:], where + 1
        closing = 0
        while len(word) > 1 and word[-1] == ")" and text[at - 1 - closing] == ")":
            word, closing = word[:-1], closing + 1
        words.append((word, where + 1))
        words.extend((")", at - c) for c in range(closing, 0, -1))
    return words


class _Parser:
    def __init__(self, text: str, lookups: Lookups) -> None:
        self.text, self.lookups = text, lookups
        self.words = _words(text)
        self.at = 0

    def fail(self, problem: str, index: Optional[int] = None) -> FilterError:
        index = self.at if index is None else index
        position = self.words[index][1] if index < len(self.words) else len(self.text) + 1
        return FilterError(self.text, position, problem)

    def peek(self) -> Optional[str]:
        return self.words[self.at][0] if self.at < len(self.words) else None

    def take(self, what: str) -> str:
        word = self.peek()
        if word is None:
            raise self.fail("%s expected, the filter ends" % what)
        self.at += 1
        return word

    def states(self) -> Optional[FrozenSet[State]]:
        chosen = None
        while self.peek() in ("state", "exclude", "excl"):
            excluding = self.take("state") != "state"
            name = self.take("a state name")
            states = STATE_GROUPS.get(name.lower())
            if states is None:
                raise self.fail("unknown state %r (known: %s)" % (name, ", ".join(STATE_GROUPS)), self.at - 1)
            if chosen is None:
                chosen = _ALL if excluding else frozenset()
            chosen = chosen - states if excluding else chosen | states
        return chosen

    def exprlist(self, depth: int) -> Node:
        node = self.expr(depth)
        while self.peek() not in (None, ")"):
            word = self.peek()
            joined = Or if word in _OR else And
            if word in _OR or word in _AND:
                self.at += 1
            node = joined(node, self.expr(depth))
        return node

    def expr(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.fail("too deeply nested")
        start = self.at
        word = self.take("an expression")
        if word == "(":
            node = self.exprlist(depth + 1)
            if self.peek() != ")":
                raise self.fail("`)` expected to close the `(` at %d" % self.words[start][1])
            self.at += 1
            return node
        if word in _NOT:
            return Not(self.expr(depth + 1))
        if word == "autobound":
            return Autobound(*self.lookups.ephemeral())
        key = word.lower()
        if key in ("src", "dst"):
            op = self.operator(("=", "!="))
            node = self.host(key, self.take("an address"), self.at - 1)
        elif key in _COMPARED or key in _EQUAL_ONLY:
            op = self.operator(("=", "!=") if key in _EQUAL_ONLY else tuple(_OPS) + ("!=",))
            value = self.value(key, self.take("a value for %s" % key), self.at - 1)
            node = Compare(key, "=" if op == "!=" else op, value)
        elif word in (")",) + _AND + _OR:
            raise self.fail("an expression expected before %r" % word, start)
        elif key in ("state", "exclude", "excl"):
            raise self.fail("state and exclude come first, before the expression", start)
        else:
            raise self.fail("unknown word %r (keys: src, dst, sport, dport, %s, autobound)" % (
                word, ", ".join(k for k in KEYS if k not in ("sport", "dport"))), start)
        return Not(node) if op == "!=" else node

    def operator(self, accepted: Tuple[str, ...]) -> str:
        op = _OPERATORS.get(self.peek() or "")
        if op is None:
            return "="
        if op not in accepted:
            raise self.fail("operator %s does not apply here (accepted: %s)" % (self.peek(), " ".join(accepted)))
        self.at += 1
        return op

    def number(self, text: str, index: int, what: str, high: int) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise self.fail("%s expected, not %r" % (what, text), index) from None
        if not 0 <= value <= high:
            raise self.fail("%s out of range (0 to %d): %r" % (what, high, text), index)
        return value

    def port(self, text: str, index: int) -> Optional[int]:
        text = text[1:] if text.startswith(":") else text
        if text in ("", "*"):
            return None
        if text[:1].isdigit():
            return self.number(text, index, "a port", 0xFFFF)
        try:
            port = self.lookups.service(text)
        except ValueError as exc:
            raise self.fail(str(exc), index) from None
        if port is None:
            raise self.fail("%r does not look like a port (a number or a service name)" % text, index)
        return port

    def value(self, key: str, text: str, index: int) -> object:
        if key in ("sport", "dport"):
            port = self.port(text, index)
            if port is None:
                raise self.fail("a port expected for %s, not %r" % (key, text), index)
            return port
        if key in ("inode", "pid"):
            return self.number(text, index, "a number", 2 ** 64 - 1)
        if key == "uid":
            found = self.number(text, index, "a uid", 2 ** 32 - 1) if text[:1].isdigit() else self.lookups.user(text)
            if found is None:
                raise self.fail("no such user %r" % text, index)
            return found
        if key == "dev":
            found = self.lookups.interface(text)
            if found is None:
                found = self.number(text, index, "an interface name or index", 2 ** 32 - 1)
            return found
        if key == "fwmark":
            mark, _, mask = text.partition("/")
            return (self.number(mark, index, "a mark", 2 ** 32 - 1),
                    self.number(mask, index, "a mask", 2 ** 32 - 1) if mask else 0xFFFFFFFF)
        if key == "cgroup":
            found = self.lookups.cgroup(text)
            if found is None:
                raise self.fail("no such cgroup %r" % text, index)
            return found
        return text  # comm, unit, container, pod: a glob (or an id's first digits)

    def host(self, side: str, text: str, index: int) -> Host:
        if text.startswith("unix:") or text[:1] in ("/", "@"):
            return Host(side, glob=text[5:] if text.startswith("unix:") else text)
        for prefix in ("inet6:", "inet:"):
            if text.startswith(prefix):
                text = text[len(prefix):]
        if text.startswith("["):
            address, closed, port = text[1:].partition("]")
            if not closed:
                raise self.fail("`]` expected in %r" % text, index)
        elif text.startswith("*"):
            address, port = "", text[1:]
        elif text.count(":") > 1:  # a bare IPv6 address (ss would take its last group for a port)
            address, port = text, ""
        else:
            head, slash, tail = text.partition("/")
            where = len(head) + len(slash) + tail.rfind(":") if slash else text.rfind(":")
            address, port = (text[:where], text[where:]) if where >= 0 and ":" in text else (text, "")
        if port and not port.startswith(":"):
            raise self.fail("%r does not look like a port" % port, index)
        network = None
        if address:
            try:
                network = ipaddress.ip_network(address, strict=False)
            except ValueError:
                raise self.fail("an inet prefix expected, not %r" % address, index) from None
        return Host(side, network=network, port=self.port(port, index))


def starts_filter(word: str) -> bool:
    """Whether a filter may begin with `word` (what tells a filter from a command word)."""
    first = word.split(None, 1)[0].lower() if word.strip() else ""
    return first in _STARTS or first.startswith(("(", "!"))


def parse(text: Union[str, Sequence[str]], lookups: Lookups = SYSTEM) -> Filter:
    """The Filter of `text` (or of ss's argument words, joined by blanks); FilterError if bad."""
    if not isinstance(text, str):
        text = " ".join(text)
    if len(text) > MAX_TEXT:
        raise FilterError(text[:40] + "...", MAX_TEXT, "a filter longer than %d characters" % MAX_TEXT)
    parser = _Parser(text, lookups)
    states = parser.states()
    expression = None if parser.peek() is None else parser.exprlist(0)
    if parser.peek() is not None:
        raise parser.fail("unexpected %r" % parser.peek())
    return Filter(text, states, expression)
