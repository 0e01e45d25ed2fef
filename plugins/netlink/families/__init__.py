"""Small sock_diag backends for the families `ss` also reads: AF_VSOCK, AF_XDP, AF_TIPC and AF_SMC.

Each family is its own plugin (an entry point in the `procsock` group, like a third party's),
built from one `DiagFamily`: its kinds, the request it sends and the pure function that decodes
one reply message into a row. Each asks this kernel only (never a captured tree or a saved file),
and says it is unavailable, with the reason, where the kernel has no diag handler for the family
(sock_diag answers ENOENT: the module is not built or cannot load). The netlink backend's
transport and message walk are reused, so only the kernel is believed here too.
"""

import functools
from typing import Callable, FrozenSet, Optional, Tuple

import attrs

from procsock.plugin import (
    BackendInfo,
    BackendUnavailable,
    Collected,
    Netns,
    SocketKind,
    Source,
    hookimpl,
    shared,
)

from procsock_plugins.netlink import transport

Message = Callable[..., Optional[tuple]]  # codec.decode's `message`: one reply message -> row or None


@attrs.frozen
class DiagFamily:
    """One family's backend: `name` (the plugin's and backend's), `kinds`, a `request(kind, seq,
    details)` and `message` decoder (codec.decode's), and `module`, the kernel module whose
    absence the ENOENT answer means (for the reason shown)."""

    name: str
    kinds: Tuple[SocketKind, ...]
    request: Callable[[SocketKind, int, bool], bytes]
    message: Message
    module: str
    description: str

    @hookimpl
    def procsock_backend_info(self) -> BackendInfo:
        return BackendInfo(name=self.name, priority=100, kinds=self.kinds, description=self.description)

    @hookimpl
    def procsock_unavailable(self, source: Source) -> Optional[str]:
        """Why not: a captured tree or saved file (this reads the kernel only), or no diag handler
        in this kernel (asked once per process: an empty dump)."""
        if not source.kernel or source.diag_file is not None:
            return "reads this host's kernel only (%s)" % self.module
        return _probe(self)

    @hookimpl
    def procsock_collect(self, kind: SocketKind, source: Source, inodes: Optional[FrozenSet[int]], details: bool,
                         netns: Netns) -> Collected:
        """A dump of `kind` in `netns` (the family answers dumps only); the resolver keeps `inodes`."""
        reason = self.procsock_unavailable(source)
        if reason is not None:
            raise BackendUnavailable(self.name, reason)
        return Collected(*self.dump(kind, source, details, netns))

    def dump(self, kind: SocketKind, source: Source, details: bool, netns: Netns):
        """(rows, skipped, retries) of a dump; BackendUnavailable under this backend's name."""
        def opener():
            if netns.pid is None:
                return transport.open_diag_socket()
            return transport.open_diag_socket_in(source.proc_root, netns.pid)

        try:
            with shared((self.name, source.proc_root, netns.inode, netns.pid), opener) as sock:
                decoded, _, retries = transport.query(
                    sock, lambda seq: self.request(kind, seq, details), backend=self.name, details=details,
                    netns=netns.inode, message=self.message,
                )
        except BackendUnavailable as exc:
            raise BackendUnavailable(self.name, _reason(self, exc.reason)) from None
        return decoded.records, decoded.skipped, retries


def _reason(family: DiagFamily, reason: str) -> str:
    if "ENOENT" in reason:
        return "no %s in this kernel: sock_diag has no handler for it (ENOENT)" % family.module
    return reason


@functools.lru_cache(maxsize=None)
def _probe(family: DiagFamily) -> Optional[str]:
    """None when this kernel answers a dump of the family's first kind, else why not."""
    try:
        family.dump(family.kinds[0], Source.live(), False, Netns())
    except BackendUnavailable as exc:
        return exc.reason
    return None


def row(kind: SocketKind, inode: int, sock_type, protocol: int, state, local, remote, uid: Optional[int],
        backend: str, netns: Optional[int], cookie: Optional[int], rx_queue: Optional[int] = None,
        tx_queue: Optional[int] = None, interface: Optional[int] = None, extended=None) -> tuple:
    """A row (procsock.plugin.Row) by field name: these families' endpoints are objects of their
    own classes, which rows carry as they are."""
    return (kind, inode, sock_type, protocol, state, local, remote, rx_queue, tx_queue, uid, backend, None, netns,
            interface, cookie, extended)


def known(enum, value: int, what: str, inode: int, where, skipped) -> Optional[object]:
    """enum(value), or None with a note in `skipped` when the kernel says a value procsock does not know."""
    try:
        return enum(value)
    except ValueError:
        skipped.append("%s@%d: inode %d of unknown %s %d" % (where[0], where[1], inode, what, value))
        return None


def short(data: bytes, start: int, end: int, size: int, family: str, where, skipped) -> bool:
    """Whether the message is shorter than its family's fixed struct (noted in `skipped`)."""
    if end - start < size:
        skipped.append("%s@%d: %s diag message of %d bytes, below %d" % (where[0], where[1], family, end - start, size))
        return True
    return False
