"""procsock-ping: a procsock backend plugin for ICMP "ping" sockets.

``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`` (what ``ping`` opens when
net.ipv4.ping_group_range lets it, instead of a raw socket) is listed by the kernel in
/proc/net/icmp and /proc/net/icmp6, which neither ss nor procsock's built-in backends read.
This plugin adds the kinds ``icmp`` and ``icmp6``. It knows only procsock's public API: the
hook markers and the model.
"""

from typing import FrozenSet, Optional

from procsock.plugin import (
    BackendInfo, BackendUnavailable, Collected, Family, InputError, Netns, SocketKind, Source, hookimpl, read_file,
)

from procsock_ping import parse

NAME = "ping"
# The kernel names these protocols PING and PINGv6 (the socket fd's sockprotoname xattr).
ICMP = SocketKind("icmp", Family.INET, "icmp", ("PING",))
ICMP6 = SocketKind("icmp6", Family.INET6, "icmp", ("PINGv6",))


@hookimpl
def procsock_backend_info() -> BackendInfo:
    return BackendInfo(NAME, 50, (ICMP, ICMP6), "ICMP ping sockets from /proc/net/icmp, icmp6")


@hookimpl
def procsock_unavailable(source: Source) -> Optional[str]:
    if source.proc_root is None:
        return "needs a /proc tree (net/icmp), not a saved sock_diag file"
    return None


@hookimpl
def procsock_collect(kind: SocketKind, source: Source, inodes: Optional[FrozenSet[int]], netns: Netns) -> Collected:
    """Read net/icmp or net/icmp6 of the namespace asked for (through /proc/PID/net for another)."""
    reason = procsock_unavailable(source)
    if reason is not None:
        raise BackendUnavailable(NAME, reason)
    parts = ["net", kind.name] if netns.pid is None else [str(netns.pid), "net", kind.name]
    try:
        data = read_file(source, *parts)  # the captured-tree-safe read every plugin should use
    except InputError as exc:
        raise BackendUnavailable(NAME, "cannot read %s" % exc) from exc
    path = "/".join([source.proc_root] + parts)
    return parse.parse(kind, data, source=path, backend=NAME, inodes=inodes, netns=netns.inode)
