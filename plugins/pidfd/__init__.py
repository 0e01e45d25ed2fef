"""The pidfd backend: reads one socket exactly through a copy of the fd that holds it.

`pidfd_open` + `pidfd_getfd` (Linux 5.6+, ptrace rights over the holder: root, or the same user
where ptrace is allowed) copy a process's socket fd into ours; getsockname, getpeername and
getsockopt then read it exactly, in whatever network namespace it lives, with no table dump. It
answers targeted lookups of inet sockets only (a few inodes, e.g. `describe_fd`,
`snapshot(pid=...)`), ahead of the table backends (priority 150). Unix sockets stay with
unix_diag's exact lookups, which know the peer; requests for details (tcp_info, memory) go to
netlink too. A socket its fd cannot tell completely (a connecting TCP socket has no peer
address yet; one neither listening nor connected may be bound-inactive, which only sock_diag
lists, or in no table at all; an unbound UDP socket) is deferred to the next backend with what it
is. Every copied fd is closed before the next is taken, on every path.
"""

import os
from typing import FrozenSet, Mapping, Optional, Sequence

from procsock.plugin import (
    INET_KINDS,
    BackendInfo,
    BackendUnavailable,
    Collected,
    Netns,
    NotApplicable,
    Owner,
    SocketKind,
    Source,
    hookimpl,
)

from procsock_plugins.pidfd import probe

NAME = "pidfd"
KINDS = INET_KINDS
LOOKUP_LIMIT = 64


@hookimpl
def procsock_backend_info() -> BackendInfo:
    return BackendInfo(
        name=NAME, priority=150, kinds=KINDS, lookup_only=True,
        description="pidfd_getfd + getsockopt on a copy of the holder's fd (targeted lookups only)",
    )


@hookimpl
def procsock_unavailable(source: Source) -> Optional[str]:
    if not source.kernel or source.proc_root is None:
        return "copies fds of live processes: not for captured trees or saved files"
    return probe.unsupported()


@hookimpl
def procsock_collect(
    kind: SocketKind,
    source: Source,
    inodes: Optional[FrozenSet[int]],
    details: bool,
    netns: Netns,
    holders: Mapping[int, Sequence[Owner]],
) -> Collected:
    """Each wanted inode read through its first holder; others (vanished, refused) are skipped,
    and those its fd cannot tell completely (connecting, or in no kernel table) are deferred."""
    if inodes is None or len(inodes) > LOOKUP_LIMIT or details:
        raise NotApplicable(NAME, "answers lookups of up to %d sockets, without details" % LOOKUP_LIMIT)
    records, skipped, deferred, settled = [], [], [], []
    for inode in sorted(inodes):
        owners = holders.get(inode)
        if not owners:
            raise NotApplicable(NAME, "socket:[%d] has no holder to copy it from" % inode)
        owner = owners[0]
        try:
            record = probe.read_socket(owner.task, owner.fd, inode, kind, netns.inode, NAME)
        except PermissionError as exc:
            raise BackendUnavailable(NAME, "pidfd_getfd refused for pid %d (%s)" % (owner.task, exc.strerror)) from None
        except probe.Incomplete as exc:
            (settled if exc.settled else deferred).append((inode, exc.reason))
            continue
        except OSError as exc:
            skipped.append("pid %d fd %d: %s" % (owner.task, owner.fd, os.strerror(exc.errno or 0)))
            continue
        if record is not None:
            records.append(record)
    return Collected(tuple(records), tuple(skipped), deferred=tuple(deferred), settled=tuple(settled))
