"""The library's front door: snapshot(), describe_fd(), describe_inode().

Plugins load on first use (not at import of procsock) and stay loaded for the process.
"""

import functools
from typing import TYPE_CHECKING, Any, Callable, FrozenSet, Iterable, Optional, Sequence, Union

import attrs

from procsock.backends import Registry
from procsock.errors import BadArgument
from procsock.fdscan import known_netns, netns_inode
from procsock.model import Family, Query, Snapshot, Socket, Source, State
from procsock.resolver import Resolver
from procsock.text import escape_text

if TYPE_CHECKING:  # _filter imports it: a run without a filter needs none of it
    from procsock.filter import Filter


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """Every backend plugin of the `procsock` entry-point group, loaded once."""
    return Registry.from_entry_points()


def make_source(
    proc_root: Optional[str] = None, diag_file: Optional[str] = None, max_input_bytes: Optional[int] = None
) -> Source:
    """The live host by default; a captured /proc tree; or a saved sock_diag file (+ owners' tree).
    `max_input_bytes` replaces the bound on one captured or saved file (`Source.max_input_bytes`)."""
    if diag_file is not None:
        source = Source.saved_diag(diag_file, proc_root)
    elif proc_root is not None:
        source = Source.capture(proc_root)
    else:
        source = Source.live()
    return source if max_input_bytes is None else attrs.evolve(source, max_input_bytes=max_input_bytes)


def registry_or_default(registry: Optional[Registry]) -> Registry:
    """`registry`, or the default one when None; anything else is a TypeError."""
    if registry is None:
        return default_registry()
    if not isinstance(registry, Registry):
        raise TypeError("registry takes a procsock.backends.Registry, not %s" % type(registry).__name__)
    return registry


def _values(argument: str, value: Any, types: tuple, what: str) -> Optional[tuple]:
    """None, or the value(s) of `argument` as a tuple: one value or an iterable of several.

    Text and bytes count as one value (never their characters); a value of another type than
    `types` (bool is not an int here), or no value at all, is refused naming the argument.
    """
    if value is None:
        return None
    values = (value,) if isinstance(value, (str, bytes, bytearray, int)) else value
    try:
        values = tuple(values)
    except TypeError:
        values = (value,)
    for one in values:
        if isinstance(one, bool) or not isinstance(one, types):
            raise TypeError("%s takes %s, or several; not %s %r" % (argument, what, type(one).__name__, one))
    if not values:
        raise BadArgument(argument, "%s: no value given (None means any)" % argument)
    return values


def _bad(argument: str, value: Any, accepted: Iterable, hint: str = "") -> BadArgument:
    return BadArgument(argument, "bad %s %r (accepted: %s)%s" % (argument, value, ", ".join(map(str, accepted)), hint))


def _named(argument: str, value: Any, known: Sequence[str], what: str, fold=str,
           hint: str = "") -> Optional[FrozenSet[str]]:
    """Names (as `fold` makes them) checked against the `known` ones: a kind, a protocol; `hint`
    ends the error (where else an unknown name may come from)."""
    names = _values(argument, value, (str,), what)
    if names is None:
        return None
    for name in names:
        if fold(name) not in known:
            raise _bad(argument, name, known, hint)
    return frozenset(fold(name) for name in names)


def _number(argument: str, value: Any, low: int, high: Optional[int], what: str) -> int:
    """One whole number from `low` to `high` (None: no limit)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s takes %s, not %s %r" % (argument, what, type(value).__name__, value))
    if value < low or (high is not None and value > high):
        accepted = "%d to %d" % (low, high) if high is not None else "%d or more" % low
        raise BadArgument(argument, "bad %s %d (accepted: %s)" % (argument, value, accepted))
    return int(value)


def _numbers(argument: str, value: Any, low: int, high: Optional[int], what: str) -> Optional[FrozenSet[int]]:
    numbers = _values(argument, value, (int,), what)
    return None if numbers is None else frozenset(_number(argument, n, low, high, what) for n in numbers)


def _members(
    argument: str, value: Any, what: str, member: Callable[[Any], Any], accepted: Iterable
) -> Optional[FrozenSet]:
    """The enum members `value` names (`member` maps one int or str to one, KeyError/ValueError if none)."""
    given = _values(argument, value, (int, str), what)
    if given is None:
        return None
    chosen = set()
    for one in given:
        try:
            chosen.add(member(one))
        except (KeyError, ValueError):
            raise _bad(argument, one, accepted) from None
    return frozenset(chosen)


def _families(value: Any) -> Optional[FrozenSet[Family]]:
    return _members(
        "family", value, "a Family, its number or name",
        lambda one: Family[one.upper()] if isinstance(one, str) else Family(one), [f.name.lower() for f in Family],
    )


_STATE_BY_TEXT = {s.name: s for s in State}
_STATE_BY_TEXT.update({s.label.replace("-", "_"): s for s in State})


def _states(value: Any) -> Optional[FrozenSet[State]]:
    return _members(
        "state", value, "a State, its name or its ss label",
        lambda one: _STATE_BY_TEXT[one.upper().replace("-", "_")] if isinstance(one, str) else State(one),
        [s.label for s in State],
    )


_CONTEXT_SHAPES = {  # argument: (a value's exact shape, what it is)
    "unit": (r"[^/\x00-\x1f\x7f]{1,255}", "a systemd unit name (nginx.service, or nginx)"),
    "container": (r"[A-Za-z0-9][A-Za-z0-9_.:\\-]{0,63}", "a container id (or its first digits) or name"),
    "pod": (r"[a-z0-9][a-z0-9.-]{0,252}(/[a-z0-9][a-z0-9.-]{0,252})?", "a pod UID, name or NAMESPACE/NAME"),
    "cgroup": (r"/[^\x00\n]{0,4095}", "a cgroup path prefix starting with /"),
    "user": (r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,31}\$?", "a user name or uid"),
}


def _context_values(argument: str, value: Any) -> Optional[FrozenSet[str]]:
    """Context filter values (`unit`, `container`, `pod`, `cgroup`, `user`), each of its shape;
    a uid may be given as an int."""
    import re

    values = _values(argument, value, (str, int) if argument == "user" else (str,), _CONTEXT_SHAPES[argument][1])
    if values is None:
        return None
    shape, what = _CONTEXT_SHAPES[argument]
    for one in values:
        if isinstance(one, int) and one < 0 or isinstance(one, str) and not re.fullmatch(shape, one):
            raise BadArgument(argument, "bad %s %s (accepted: %s)" % (argument, escape_text(repr(one)[:80]), what))
    return frozenset(str(one) for one in values)


def make_query(
    *,
    kind: Union[str, Iterable[str], None] = None,
    family: Union[Family, int, str, Iterable, None] = None,
    protocol: Union[str, Iterable[str], None] = None,
    state: Union[State, str, Iterable, None] = None,
    pid: Union[int, Iterable[int], None] = None,
    port: Union[int, Iterable[int], None] = None,
    netns: Union[int, Iterable[int], None] = None,
    details: bool = False,
    context: bool = False,
    unit: Union[str, Iterable[str], None] = None,
    container: Union[str, Iterable[str], None] = None,
    pod: Union[str, Iterable[str], None] = None,
    cgroup: Union[str, Iterable[str], None] = None,
    user: Union[str, int, Iterable, None] = None,
    registry: Optional[Registry] = None,
    filter: Union[str, "Filter", None] = None,
) -> Query:
    """A Query from user-friendly values: each filter takes one value or several.

    kind: a kind name of `registry`'s backends ("tcp6", "unix"); family: Family, its number or
    name ("inet6"); protocol: "tcp", "udp", "udplite", "raw", "unix", ...; state: State, or its
    name or ss label ("LISTEN", "estab", "time-wait", "bound-inactive"); pid, port, netns: numbers;
    filter: ss's filter language ("state established dport = :443", see procsock.filter; its
    states narrow `state`, fwmark and cgroup ask for details). A value procsock
    does not know raises BadArgument, one of the wrong type TypeError, naming the argument and
    what it accepts: the door is where a typo is caught, not an empty answer later.
    `context` asks for each owner's Context; unit, container (id, or its first digits, or name),
    pod (UID, name or NAMESPACE/NAME), cgroup (path prefix) and user (name or uid) keep the
    sockets one of whose owners' context matches every one given (and imply `context`).
    """
    kinds = protocols = None
    if kind is not None or protocol is not None:
        registry = registry_or_default(registry)
        known = registry.kinds()
        # A disabled plugin is never imported, so its kinds are unknown: name it as a maybe.
        hint = "; maybe served by a disabled plugin: %s" % ", ".join(registry.disabled) if registry.disabled else ""
        kinds = _named("kind", kind, [k.name for k in known], "a kind name", hint=hint)
        protocol_names = list(dict.fromkeys(k.protocol for k in known))
        protocols = _named("protocol", protocol, protocol_names, "a protocol name", str.lower, hint)  # "TCP" too
    chosen = _filter(filter)
    states = _states(state)
    if chosen is not None and chosen.states is not None:
        states = chosen.states if states is None else states & chosen.states
    return Query(
        kinds=kinds,
        families=_families(family),
        protocols=protocols,
        states=states,
        pid=_numbers("pid", pid, 1, None, "a process id"),
        port=_numbers("port", port, 0, 0xFFFF, "a port number"),
        netns=_numbers("netns", netns, 1, None, "a network namespace inode"),
        details=details or (chosen is not None and chosen.needs_details),
        context=bool(context) or (chosen is not None and chosen.needs_context),
        units=_context_values("unit", unit),
        containers=_context_values("container", container),
        pods=_context_values("pod", pod),
        cgroups=_context_values("cgroup", cgroup),
        users=_context_values("user", user),
        filter=chosen,
    )


def _filter(value: Union[str, "Filter", None]) -> Optional["Filter"]:
    """The Filter of ss filter text (or words), or the Filter given; a bad one raises BadArgument."""
    if value is None:
        return None
    from procsock.filter import Filter, FilterError, parse as parse_filter

    if isinstance(value, Filter):
        return value
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(word, str) for word in value):
        raise TypeError("filter takes ss filter text or a procsock.filter.Filter, not %s" % type(value).__name__)
    try:
        return parse_filter(value)
    except FilterError as exc:
        raise BadArgument("filter", "bad filter %s" % exc) from None


def check_backend(registry: Registry, backend: Optional[str], query: Query) -> None:
    """A lookup-only backend answers for given sockets only: it needs the pid(s) to take them from."""
    if backend is None:
        return
    if not isinstance(backend, str):
        raise TypeError("backend takes a backend name, not %s" % type(backend).__name__)
    chosen = registry.by_name().get(backend)
    if chosen is not None and chosen.info.lookup_only and query.pid is None:
        raise BadArgument("backend", "backend %s answers lookups only: give a pid with it" % backend)


def check_netns(source: Source, query: Query) -> None:
    """On the live host a netns filter must name a namespace that exists here (else it is likely
    a typo); a captured or saved source cannot tell, and the snapshot says so in a note."""
    if query.netns is None or not source.kernel or source.proc_root is None:
        return
    known = known_netns(source.proc_root)
    missing = sorted(query.netns - set(known))
    if missing:
        own = netns_inode(source.proc_root, "self")
        known[own] = known.get(own) or "ours"
        ordered = sorted(known.items(), key=lambda item: (item[0] != own, item[0]))
        shown = ["%d%s" % (inode, " (%s)" % name if name else "") for inode, name in ordered]
        more = " and %d more" % (len(shown) - 20) if len(shown) > 20 else ""
        raise BadArgument(
            "netns", "bad netns %d: no such network namespace here (known: %s%s)"
            % (missing[0], ", ".join(shown[:20]), more),
        )


def snapshot(
    *,
    kind=None,
    family=None,
    protocol=None,
    state=None,
    pid=None,
    port=None,
    netns=None,
    details: bool = False,
    context: bool = False,
    unit=None,
    container=None,
    pod=None,
    cgroup=None,
    user=None,
    proc_root: Optional[str] = None,
    diag_file: Optional[str] = None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
    filter=None,
    bundle: Optional[str] = None,
) -> Snapshot:
    """Every socket matching the filters, joined with the fds that hold it.

    Sockets of every network namespace whose processes hold sockets are included (on the live
    host); `netns` keeps those of the given namespace inodes. With `pid` (one or several), only
    those processes' fds are walked and only their sockets resolved. With
    `details`, records carry ``extended`` (tcp_info, memory, ...) where the backend can give it.
    With `context` (or any of the context filters unit, container, pod, cgroup, user) each owner
    carries its process's Context (``Owner.context``: user, cgroup, unit, container, pod).
    `filter` is ss's filter language: snapshot(filter="state established dport = :443").
    A filter value procsock does not know raises BadArgument (or TypeError): see make_query.
    `bundle` reads a capture bundle (procsock.capture) or a saved --json/--jsonl file instead of
    this host: the sockets it holds that the filters keep.
    """
    registry = registry_or_default(registry)
    query = make_query(
        kind=kind, family=family, protocol=protocol, state=state, pid=pid, port=port, netns=netns,
        details=details, context=context, unit=unit, container=container, pod=pod, cgroup=cgroup, user=user,
        registry=registry, filter=filter,
    )
    if bundle is not None:
        if proc_root is not None or diag_file is not None or backend is not None:
            raise BadArgument("bundle", "bundle replaces the host: give no proc_root, diag_file or backend with it")
        from procsock.capture import read_input  # the saved-input readers: only when asked for
        from procsock.saved import selected

        return selected(read_input(bundle, kinds=registry.kinds()), query)
    source = make_source(proc_root, diag_file)
    check_backend(registry, backend, query)
    check_netns(source, query)
    return Resolver(registry, source, backend).snapshot(query)


def describe_fd(
    pid: int,
    fd: int,
    *,
    details: bool = False,
    context: bool = False,
    proc_root: Optional[str] = None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Socket:
    """What is /proc/PID/fd/FD? Its socket, with the fds of PID that hold it (with `context`,
    each owner's Context).

    Raises NoSuchProcess, AccessDenied, NotASocket or SocketNotFound.
    """
    pid, fd = _number("pid", pid, 1, None, "a process id"), _number("fd", fd, 0, None, "an fd number")
    return Resolver(registry_or_default(registry), make_source(proc_root), backend).describe_fd(
        pid, fd, details, bool(context))


def describe_inode(
    inode: int,
    *,
    details: bool = False,
    context: bool = False,
    proc_root: Optional[str] = None,
    diag_file: Optional[str] = None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Socket:
    """What is socket:[INODE]? Its socket, with every fd on the host that holds it (with
    `context`, each owner's Context)."""
    inode = _number("inode", inode, 1, None, "a socket inode")
    return Resolver(registry_or_default(registry), make_source(proc_root, diag_file), backend).describe_inode(
        inode, details, bool(context)
    )
