"""The NETLINK_SOCK_DIAG backend: asks the kernel over netlink the way `ss` does.

Exact where /proc/net is not (unix names as bytes, unix peers, uids, socket cookies), so it ranks
first (priority 100). It also decodes saved replies (`--diag-file`, the format `ss -D` writes) and
gives its raw replies to `--save-diag`. Requests and decoding are in `codec`, socket I/O in
`transport`; this module only wires them to the hooks.
"""

import errno
import functools
import os
from typing import FrozenSet, Optional

import attrs

from procsock.plugin import (
    MPTCP,
    MPTCP6,
    NETLINK,
    PACKET,
    TCP,
    UNIX,
    BackendInfo,
    BackendUnavailable,
    Collected,
    InputError,
    Netns,
    Row,
    SCTP,
    SCTP6,
    SocketKind,
    SocketRecord,
    Source,
    State,
    hookimpl,
    kept,
    protocol_names,
    read_named_file,
    shared,
)

from procsock_plugins.netlink import codec, destroy, transport

NAME = transport.NAME
KINDS = codec.DIAG_INET_KINDS + (UNIX, PACKET, NETLINK)
# What no inet_diag dump holds (each checked with a real socket in tests/test_leaves_out.py).
_TCP_UNLISTED = "TCP sockets in state CLOSE that are unbound, or after a failed connect or both FINs (in no table; " \
    "before Linux 6.5 bound-only ones too)"
_UNBOUND_UDP = "unbound %s sockets (in no table until bound or connected)"
LEAVES_OUT = (
    ("tcp", _TCP_UNLISTED),
    ("tcp6", _TCP_UNLISTED),
    ("udp", _UNBOUND_UDP % "UDP"),
    ("udp6", _UNBOUND_UDP % "UDP"),
    ("udplite", _UNBOUND_UDP % "UDP-Lite"),
    ("udplite6", _UNBOUND_UDP % "UDP-Lite"),
    ("netlink", "unbound netlink sockets (in no table until bound, connected or used to send)"),
)
# Kinds of a protocol that may not be built into the kernel at all (a module not loaded): without
# its diag handler and its entry in /proc/net/protocols, there is nothing to read, not a failure.
MODULE_KINDS = (MPTCP, MPTCP6, SCTP, SCTP6)
# Up to this many inodes, unix sockets are looked up one by one instead of dumped.
EXACT_LOOKUP_LIMIT = 64


@hookimpl
def procsock_backend_info() -> BackendInfo:
    return BackendInfo(
        name=NAME,
        priority=100,
        kinds=KINDS,
        description="NETLINK_SOCK_DIAG (inet_diag incl. MPTCP and SCTP, unix_diag, packet_diag, netlink_diag), "
                    "or saved replies",
        leaves_out=LEAVES_OUT,
    )


@hookimpl
def procsock_unavailable(source: Source) -> Optional[str]:
    if source.diag_file is None and not source.kernel:
        return "a captured /proc tree: this host's kernel knows nothing of it"
    return None


@functools.lru_cache(maxsize=1)
def _decode_file(path: str, mtime_ns: int, size: int, details: bool, limit: int):
    """A saved file decoded once for all the kinds of a snapshot (keyed by its stat, so a
    rewritten file is read again): codec.decode_saved's runs. Read as untrusted input
    (`procsock.inputs`)."""
    try:
        data = read_named_file(path, limit)
    except InputError as exc:
        raise BackendUnavailable(NAME, "cannot read %s (%s)" % (path, exc.reason)) from exc
    return codec.decode_saved(data, source=path, backend=NAME, details=details)


def _read_file(kind: SocketKind, source: Source, details: bool, netns: Netns) -> Collected:
    """The saved records of `kind` (of every namespace the file holds, or only of `netns.inode`
    when given), and what the runs of that kind skipped (`ss -D` files hold TCP only)."""
    path = source.diag_file
    try:
        st = os.stat(path)
    except OSError as exc:
        raise BackendUnavailable(NAME, "cannot read %s (%s)" % (path, exc.strerror or exc)) from exc
    records, skipped = [], []
    for run_kind, decoded in _decode_file(path, st.st_mtime_ns, st.st_size, details, source.max_input_bytes):
        if run_kind == kind or (run_kind is None and kind == TCP):
            skipped.extend(decoded.skipped)
        records.extend(
            r for r in decoded.records
            if r[Row.KIND] == kind and (netns.inode is None or r[Row.NETNS] == netns.inode)
        )
    return Collected(tuple(records), tuple(skipped))


def _open(source: Source, netns: Netns):
    """A diag socket in our namespace, or inside `netns` through its process."""
    if netns.pid is None:
        return transport.open_diag_socket()
    return transport.open_diag_socket_in(source.proc_root, netns.pid)


def _asking(source: Source, netns: Netns, ask):
    """`ask(sock)` on the operation's one diag socket for `netns` (procsock.scope): a snapshot opens
    one per namespace, not one per kind. A complete answer carrying an errno (a family this kernel
    does not serve) is raised after the block, so the socket, with nothing left unread, serves
    the next kind; any other failure makes the scope close it."""
    with shared((NAME, source.proc_root, netns.inode, netns.pid), lambda: _open(source, netns)) as sock:
        try:
            return ask(sock)
        except transport.Answered as exc:
            answered = exc
    try:
        raise answered
    finally:  # this frame, in the traceback, would hold the exception again: a cycle, kept while gc is off
        del answered


def _build(kind: SocketKind, details: bool):
    return lambda seq: codec.request_for(kind, seq, details)


def _dump(sock, kind: SocketKind, details: bool, netns: Optional[int] = None, decode_details: Optional[bool] = None,
          source: Optional[Source] = None):
    """A dump of `kind` asking for details or not; decoded with them as asked, or as
    `decode_details` says (a raw dump keeps the details' bytes without decoding them). When the
    dump is repeated (procsock.scope.keeping: a watch's polls), the messages that are the same
    bytes as last time are not decoded again."""
    decode_details = details if decode_details is None else decode_details
    store = kept((NAME, source and source.proc_root, netns, kind, decode_details))
    memo = None if store is None else (store.get("rows", {}), {})
    decoded, raw, retries = transport.query(
        sock, _build(kind, details), kind=kind, backend=NAME, details=decode_details, netns=netns, memo=memo,
    )
    if memo is not None:
        store["rows"] = memo[1]
    skipped = decoded.skipped
    if decoded.interrupted:
        skipped += ("%s: dump still interrupted after %d retries (table changing fast)" % (kind.name, retries),)
    return Collected(decoded.records, skipped, retries), raw


def _lookup_unix(sock, inodes: FrozenSet[int], details: bool, netns: Optional[int]) -> Collected:
    records, skipped = [], []
    for inode in sorted(inodes):
        decoded, _, _ = transport.query(
            sock, lambda seq, inode=inode: codec.unix_request(seq, inode, details),
            lookup=True, backend=NAME, details=details, netns=netns,
        )
        records.extend(decoded.records)
        skipped.extend(decoded.skipped)
    return Collected(tuple(records), tuple(skipped))


@hookimpl
def procsock_collect(
    kind: SocketKind, source: Source, inodes: Optional[FrozenSet[int]], details: bool, netns: Netns, raw: bool
) -> Collected:
    """A dump of `kind` (or exact unix lookups for a few inodes), or the saved file's records.

    Another namespace is read through a diag socket created inside it (`transport`), one per
    namespace for the whole operation (`_asking`). A saved file gives the records of every
    namespace it holds, each with its own (or of `netns.inode` alone). With `raw`, a dump asks
    for details and keeps its replies as `procsock_raw_dump` gives them (one dump serves both).
    """
    if source.diag_file is not None:
        return _read_file(kind, source, details, netns)
    if kind == UNIX and inodes is not None and len(inodes) <= EXACT_LOOKUP_LIMIT:
        return _asking(source, netns, lambda sock: _lookup_unix(sock, inodes, details, netns.inode))
    if raw:
        collected, replies = _dumped(kind, source, True, netns, decode_details=details)
        return attrs.evolve(collected, raw=_saved(replies, kind, netns))
    return _dumped(kind, source, details, netns)[0]


def _dumped(kind: SocketKind, source: Source, details: bool, netns: Netns, decode_details: Optional[bool] = None):
    """(Collected, raw replies) of a dump of `kind` in `netns` (decode_details: see _dump); nothing,
    not a failure, for a protocol this kernel has neither a diag handler nor an entry in
    /proc/net/protocols for."""
    try:
        return _asking(source, netns, lambda sock: _dump(sock, kind, details, netns.inode, decode_details, source))
    except transport.Answered as exc:
        if exc.code == errno.ENOENT and kind in MODULE_KINDS and not _kernel_knows(source, kind):
            return Collected(()), b""  # none can exist
        raise


def _kernel_knows(source: Source, kind: SocketKind) -> bool:
    """Whether this kernel has `kind`'s protocol (in /proc/net/protocols); True when unsure."""
    names = protocol_names(source)
    return names is None or not names.isdisjoint(kind.kernel_names)


@hookimpl
def procsock_raw_dump(kind: SocketKind, source: Source, netns: Netns) -> Optional[bytes]:
    """The raw replies of a live dump of `kind` in `netns`, renumbered so a saved file names its
    kind and namespace (codec.saved_seq)."""
    if source.diag_file is not None or not source.kernel:
        return None
    return _saved(_dumped(kind, source, True, netns, decode_details=False)[1], kind, netns)


def _saved(replies: bytes, kind: SocketKind, netns: Netns) -> bytes:
    """Replies renumbered so a saved file names their kind and namespace (codec.saved_seq)."""
    inode = netns.inode if netns.inode is not None and 0 < netns.inode <= 0xFFFFFFFF else 0  # 0: unknown
    return codec.renumber(replies, codec.saved_seq(kind), inode)


@hookimpl
def procsock_explain_difference(
    field: Optional[str], mine: Optional[SocketRecord], other: Optional[SocketRecord]
) -> Optional[str]:
    """What sock_diag reports that other sources do not: a listener's backlog limit as its Send-Q,
    and TCP sockets that are bound but neither listening nor connected."""
    if field == "tx_queue" and mine.state is State.LISTEN:
        return "for listeners inet_diag reports the backlog limit as Send-Q, /proc/net reports 0"
    if field is None and mine is not None and mine.state is State.BOUND_INACTIVE:
        return "bound-inactive: only sock_diag (Linux >= 6.5) lists TCP sockets bound, not listening or connected"
    return None


@hookimpl
def procsock_destroy_listener(source: Source, netns: Netns):
    """The destroy multicast groups of `netns` (live kernel only): `destroy.DestroyListener`."""
    if source.diag_file is not None or not source.kernel or source.proc_root is None:
        return None
    return destroy.listen(source.proc_root, netns.pid, netns.inode)
