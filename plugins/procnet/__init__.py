"""The /proc/net text backend: reads the kernel's socket tables as text files.

Works for the live host and for a captured /proc tree alike (it only reads files), without root
and without netlink; it is less exact than sock_diag (see `parse` for what the text cannot say),
hence priority 50, below the netlink backend's 100. All I/O is here; parsing is pure, in `parse`.
"""

from typing import FrozenSet, Optional

from procsock.plugin import (
    BUILTIN_KINDS,
    BackendInfo,
    BackendUnavailable,
    Collected,
    InputError,
    NETLINK,
    SCTP,
    SCTP6,
    Netns,
    SocketKind,
    SocketRecord,
    Source,
    UnixAddress,
    hookimpl,
    protocol_names,
    read_file,
)

from procsock_plugins.procnet import parse

NAME = "procnet"
SCTP_KINDS = (SCTP, SCTP6)
# What the kernel puts in no /proc/net table (each checked with a real socket in tests/test_leaves_out.py).
_CLOSED_TCP = "TCP sockets in state CLOSE: bound-only, unbound, or after a failed connect or both FINs (in no " \
    "/proc/net table)"
_UNBOUND_UDP = "unbound %s sockets (in no table until bound or connected)"
LEAVES_OUT = (
    ("tcp", _CLOSED_TCP),
    ("tcp6", _CLOSED_TCP),
    ("udp", _UNBOUND_UDP % "UDP"),
    ("udp6", _UNBOUND_UDP % "UDP"),
    ("udplite", _UNBOUND_UDP % "UDP-Lite"),
    ("udplite6", _UNBOUND_UDP % "UDP-Lite"),
    ("netlink", "unbound netlink sockets (in no table until bound, connected or used to send)"),
)


# What /proc/net/netlink does not print (parse.parse_netlink: type RAW, state CLOSE, no destination).
_NETLINK_UNSAID = {
    "type": "/proc/net/netlink does not say a netlink socket's type (procnet reports RAW)",
    "state": "/proc/net/netlink does not say whether a netlink socket is connected (procnet reports CLOSE)",
    "remote": "/proc/net/netlink does not say where a netlink socket is connected",
    "local": "/proc/net/netlink shows only the first 32 multicast groups",
}


@hookimpl
def procsock_backend_info() -> BackendInfo:
    """procnet serves every built-in kind, each from the /proc/net file named after it, and SCTP
    from net/sctp/ (when the module is loaded)."""
    return BackendInfo(
        name=NAME,
        priority=50,
        kinds=BUILTIN_KINDS + SCTP_KINDS,
        description="/proc/net text tables (live host or captured /proc tree)",
        leaves_out=LEAVES_OUT,
    )


@hookimpl
def procsock_unavailable(source: Source) -> Optional[str]:
    """Why `source` has no /proc/net tables to read, or None when it has."""
    if source.diag_file is not None:
        return "a saved sock_diag file replaces the /proc/net socket tables"
    if source.proc_root is None:
        return "no /proc tree to read"
    return None


@hookimpl
def procsock_collect(
    kind: SocketKind, source: Source, inodes: Optional[FrozenSet[int]], netns: Netns
) -> Collected:
    """Read `proc_root/net/<kind.name>` (or `proc_root/PID/net/...` for another namespace) in
    one read and parse it.

    Raises BackendUnavailable when the source has no tables or the file cannot be read (missing:
    protocol not built into this kernel, or not part of a capture).
    """
    reason = procsock_unavailable(source)
    if reason is not None:
        raise BackendUnavailable(NAME, reason)
    if kind in SCTP_KINDS:
        return _collect_sctp(kind, source, inodes, netns)
    parts = ("net", kind.name) if netns.pid is None else (str(netns.pid), "net", kind.name)
    try:
        data = read_file(source, *parts)
    except InputError as exc:
        raise BackendUnavailable(NAME, "no net/%s under %s (%s)" % (kind.name, source.proc_root, exc.reason)) from exc
    path = "/".join((source.proc_root,) + parts)
    return parse.parse(kind, data, source=path, backend=NAME, inodes=inodes, netns=netns.inode)


def _collect_sctp(kind: SocketKind, source: Source, inodes: Optional[FrozenSet[int]], netns: Netns) -> Collected:
    """SCTP from net/sctp/{eps,assocs}; nothing when the kernel has no SCTP (module not loaded)."""
    parts = ("net", "sctp") if netns.pid is None else (str(netns.pid), "net", "sctp")
    try:
        eps, assocs = (read_file(source, *parts, name) for name in ("eps", "assocs"))
    except InputError as exc:
        names = protocol_names(source)
        if names is not None and names.isdisjoint(kind.kernel_names):
            return Collected(())  # no SCTP in this kernel: none can exist
        raise BackendUnavailable(NAME, "no net/sctp under %s (%s)" % (source.proc_root, exc.reason)) from exc
    path = "/".join((source.proc_root,) + parts)
    return parse.parse_sctp(kind, eps, assocs, source=path, backend=NAME, inodes=inodes, netns=netns.inode)


@hookimpl
def procsock_explain_difference(
    field: Optional[str], mine: Optional[SocketRecord], other: Optional[SocketRecord]
) -> Optional[str]:
    """What the text cannot say exactly: a unix socket's name; a netlink socket's type, connection
    and groups past the 32nd."""
    if mine is not None and mine.kind == NETLINK and field in _NETLINK_UNSAID:
        if field != "local":
            return _NETLINK_UNSAID[field]
        first_32 = [(a.protocol, a.portid, a.groups & 0xFFFFFFFF) for a in (mine.local, other.local)]
        return _NETLINK_UNSAID[field] if first_32[0] == first_32[1] else None
    if field != "local" or not isinstance(mine.local, UnixAddress) or not isinstance(other.local, UnixAddress):
        return None
    names = (mine.local.name, other.local.name)
    if any(b"\0" in name[1:] for name in names):
        return "/proc/net/unix prints the NUL bytes of an abstract name as '@'"
    if any(name[:1] == b"@" for name in names):
        return "/proc/net/unix shows abstract names with '@', the same as a path starting with '@'"
    return None
