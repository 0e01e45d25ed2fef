"""The library's front door: snapshot(), describe_fd(), describe_inode().

Plugins load on first use (not at import of procsock) and stay loaded for the process.
"""

import functools
from typing import Any, FrozenSet, Iterable, Optional, Union

from procsock.backends import Registry
from procsock.errors import ProcsockError
from procsock.model import Family, Socket, Source, State
from procsock.resolver import Query, Resolver, Snapshot


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """Every backend plugin of the `procsock` entry-point group, loaded once."""
    return Registry.from_entry_points()


def make_source(proc_root: Optional[str] = None, diag_file: Optional[str] = None) -> Source:
    """The live host by default; a captured /proc tree; or a saved sock_diag file (+ owners' tree)."""
    if diag_file is not None:
        return Source.saved_diag(diag_file, proc_root)
    if proc_root is not None:
        return Source.capture(proc_root)
    return Source.live()


def _as_set(value: Any, convert) -> Optional[FrozenSet]:
    if value is None:
        return None
    if isinstance(value, (str, int)):
        value = (value,)
    return frozenset(convert(v) for v in value)


def _family(value: Union[Family, int, str]) -> Family:
    try:
        if isinstance(value, str):
            return Family[value.upper()]
        return Family(value)
    except (KeyError, ValueError):
        raise ProcsockError("unknown address family %r" % (value,)) from None


_STATE_BY_TEXT = {s.name: s for s in State}
_STATE_BY_TEXT.update({s.label.replace("-", "_"): s for s in State})


def _state(value: Union[State, int, str]) -> State:
    try:
        if isinstance(value, str):
            return _STATE_BY_TEXT[value.upper().replace("-", "_")]
        return State(value)
    except (KeyError, ValueError):
        raise ProcsockError("unknown socket state %r" % (value,)) from None


def make_query(
    *,
    kind: Union[str, Iterable[str], None] = None,
    family: Union[Family, int, str, Iterable, None] = None,
    protocol: Union[str, Iterable[str], None] = None,
    state: Union[State, str, Iterable, None] = None,
    pid: Optional[int] = None,
    port: Optional[int] = None,
    netns: Union[int, Iterable[int], None] = None,
    details: bool = False,
) -> Query:
    """A Query from user-friendly values: each filter takes one value or several.

    family: Family, its number or name ("inet6"); protocol: "tcp", "udp", "udplite", "raw",
    "unix", ...; state: State, or its name or ss label ("LISTEN", "estab", "time-wait",
    "bound-inactive").
    """
    return Query(
        kinds=_as_set(kind, str),
        families=_as_set(family, _family),
        protocols=_as_set(protocol, str.lower),
        states=_as_set(state, _state),
        pid=pid,
        port=port,
        netns=_as_set(netns, int),
        details=details,
    )


def _resolver(proc_root, diag_file, backend, registry) -> Resolver:
    return Resolver(registry or default_registry(), make_source(proc_root, diag_file), backend)


def snapshot(
    *,
    kind=None,
    family=None,
    protocol=None,
    state=None,
    pid: Optional[int] = None,
    port: Optional[int] = None,
    netns=None,
    details: bool = False,
    proc_root: Optional[str] = None,
    diag_file: Optional[str] = None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Snapshot:
    """Every socket matching the filters, joined with the fds that hold it.

    Sockets of every network namespace whose processes hold sockets are included (on the live
    host); `netns` keeps those of the given namespace inodes. With `pid`, only that process's
    fds are walked and only its sockets resolved. With
    `details`, records carry ``extended`` (tcp_info, memory, ...) where the backend can give it.
    """
    query = make_query(
        kind=kind, family=family, protocol=protocol, state=state, pid=pid, port=port, netns=netns,
        details=details,
    )
    return _resolver(proc_root, diag_file, backend, registry).snapshot(query)


def describe_fd(
    pid: int,
    fd: int,
    *,
    details: bool = False,
    proc_root: Optional[str] = None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Socket:
    """What is /proc/PID/fd/FD? Its socket, with the fds of PID that hold it.

    Raises NoSuchProcess, AccessDenied, NotASocket or SocketNotFound.
    """
    return _resolver(proc_root, None, backend, registry).describe_fd(pid, fd, details)


def describe_inode(
    inode: int,
    *,
    details: bool = False,
    proc_root: Optional[str] = None,
    diag_file: Optional[str] = None,
    backend: Optional[str] = None,
    registry: Optional[Registry] = None,
) -> Socket:
    """What is socket:[INODE]? Its socket, with every fd on the host that holds it."""
    return _resolver(proc_root, diag_file, backend, registry).describe_inode(inode, details)
