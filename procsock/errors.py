"""The errors procsock raises: one small hierarchy under ProcsockError, each with a one-line message."""

from typing import Optional


class ProcsockError(Exception):
    """Base of every error procsock raises on purpose."""


class ParseError(ProcsockError):
    """Input that is not in the format it claims to be (a /proc/net file, a sock_diag message)."""

    def __init__(self, source: str, line: Optional[int], reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = source if line is None else "%s:%d" % (source, line)
        super().__init__("%s: %s" % (where, reason))


class BackendUnavailable(ProcsockError):
    """A backend cannot answer here (refused, not built into this kernel, wrong source); says why."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__("backend %s unavailable: %s" % (backend, reason))


class NotApplicable(ProcsockError):
    """A backend does not answer this shape of request (e.g. a lookup-only backend asked for a
    whole table): the resolver asks the next backend without reporting a failure."""

    def __init__(self, backend: str, reason: str) -> None:
        self.backend = backend
        self.reason = reason
        super().__init__("backend %s does not apply: %s" % (backend, reason))


class NoSuchProcess(ProcsockError):
    """The process (or its fd) does not exist, or vanished while we looked."""

    def __init__(self, pid: int, fd: Optional[int] = None) -> None:
        self.pid = pid
        self.fd = fd
        what = "process %d" % pid if fd is None else "fd %d of process %d" % (fd, pid)
        super().__init__("no such %s" % what)


class AccessDenied(ProcsockError):
    """We may not look at that process's fds (another user's process, without root)."""

    def __init__(self, pid: int, reason: str = "permission denied") -> None:
        self.pid = pid
        super().__init__("cannot read the fds of process %d: %s" % (pid, reason))


class NotASocket(ProcsockError):
    """The fd exists but is not a socket."""

    def __init__(self, pid: int, fd: int, target: str) -> None:
        self.pid = pid
        self.fd = fd
        self.target = target
        super().__init__("fd %d of process %d is not a socket (%s)" % (fd, pid, target))


class SocketNotFound(ProcsockError):
    """No backend that can run here knows a socket with that inode."""

    def __init__(self, inode: int, reason: str = "") -> None:
        self.inode = inode
        self.reason = reason
        super().__init__("socket:[%d] not found%s" % (inode, ": " + reason if reason else ""))
