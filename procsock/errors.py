"""The errors procsock raises: one small hierarchy under ProcsockError, each with a one-line message."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see procsock.__main__)
if TYPE_CHECKING:
    from typing import Optional


class ProcsockError(Exception):
    """Base of every error procsock raises on purpose.

    Errors survive pickling (audit daemons send them between processes): each is rebuilt from the
    arguments it was made with, whatever its own ``__init__`` takes.
    """

    def __new__(cls, *args, **kwargs):
        error = super().__new__(cls, *args)
        error._made_with = (args, kwargs)
        return error

    def __reduce__(self):
        args, kwargs = self._made_with
        return _rebuild, (type(self), args, kwargs), self.__dict__


def _rebuild(cls, args, kwargs):
    return cls(*args, **kwargs)


class ParseError(ProcsockError):
    """Input that is not in the format it claims to be (a /proc/net file, a sock_diag message)."""

    def __init__(self, source: str, line: Optional[int], reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = source if line is None else "%s:%d" % (source, line)
        super().__init__("%s: %s" % (where, reason))


class InputError(ProcsockError):
    """A file of a captured tree or a saved file that is refused or cannot be read; never quotes it."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__("%s: %s" % (path, reason))


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


class BadArgument(ProcsockError, ValueError):
    """An argument whose value procsock does not accept; the message names the argument and the
    values it takes. (A value of the wrong type is a TypeError saying the same.)"""

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(message)


class NothingCompared(ProcsockError):
    """A backend comparison that would compare nothing (no second backend, no kind both serve, no
    socket either saw): a check that cannot fail is refused, with the reason."""
