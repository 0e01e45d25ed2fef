"""Reading the files of a Source, and numbers out of them: the one way for core and plugins alike.

The live host (`Source.kernel`) is the kernel: its /proc is read as is. A captured tree or a saved
file may be hostile, so it is read defensively:

* inside a captured tree no symbolic link is followed (each path component is opened relative to
  its parent with O_NOFOLLOW), so `net -> /proc/net` or `net/tcp -> /etc/shadow` are refused
  instead of passing this host's files off as the capture's;
* only regular files are read (opened O_NONBLOCK, checked with fstat before any read), so a FIFO
  or a device cannot hang or flood a read;
* at most `Source.max_input_bytes` bytes (default `DEFAULT_MAX_INPUT_BYTES`); larger is refused;
* errors name the file and the reason, never its content (`InputError`).

`decimal` and `hexadecimal` read numbers from untrusted text: ASCII digits only, bounded length.
"""

import errno
import os
import stat
from typing import FrozenSet, List, Optional, Sequence, Union

from procsock.errors import InputError
from procsock.model import DEFAULT_MAX_INPUT_BYTES, Source

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES", "INT_MAX", "ULONG_MAX", "decimal", "hexadecimal", "open_beneath",
    "read_file", "read_named_file", "read_tree", "readlink_beneath",
]

ULONG_MAX = 2**64 - 1
INT_MAX = 2**31 - 1
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20
_HEX = frozenset(b"0123456789abcdefABCDEF")

Text = Union[str, bytes]


def _shown(text: Text) -> str:
    """A short, quoted, escaped prefix of `text` for an error message."""
    return repr(text[:24]) + ("..." if len(text) > 24 else "")


def decimal(text: Text, maximum: int = ULONG_MAX) -> int:
    """The number `text` (str or bytes) writes in ASCII digits, if at most `maximum`; else ValueError.

    int() alone also takes signs, '_', whitespace and any script's digits, and refuses (or
    spends quadratic time on) thousands of digits; an inode is an unsigned long, a pid or fd an int.
    """
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ValueError("%s is not a decimal number" % _shown(text))
    value = int(text)
    if value > maximum:
        raise ValueError("%s is above %d" % (_shown(text), maximum))
    return value


def hexadecimal(text: Text, maximum: int = ULONG_MAX) -> int:
    """The number `text` writes in ASCII hex digits (no 0x, sign or '_'), if at most `maximum`."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    if not (data and len(data) <= 32 and _HEX.issuperset(data)):
        raise ValueError("%s is not a hex number" % _shown(text))
    value = int(data, 16)
    if value > maximum:
        raise ValueError("%s is above 0x%x" % (_shown(text), maximum))
    return value


def _check_name(root: str, parts: Sequence[str]) -> None:
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\0" in part:
            raise InputError(os.path.join(root, *parts), "not a plain path inside the tree")


def open_beneath(root: str, parts: Sequence[str], flags: int = FILE) -> int:
    """An fd of root/parts... opened with `flags` (O_NOFOLLOW is added), every directory on the
    way opened relative to the one before without following a link: nothing outside `root` is
    reached. `root` itself was named by the user and is opened as given; no parts: `root`.

    Raises OSError as open() does (ELOOP for a link in the way), InputError for a part that is
    not a plain name.
    """
    _check_name(root, parts)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                child = os.open(part, (flags | os.O_NOFOLLOW | os.O_CLOEXEC) if last else DIRECTORY, dir_fd=fd)
            except NotADirectoryError:  # O_DIRECTORY met a link first: say it was a link
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.path.join(root, *parts)) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def readlink_beneath(root: str, parts: Sequence[str]) -> str:
    """The target of the link root/parts... (read, never followed), reached as `open_beneath` does."""
    _check_name(root, parts)
    fd = open_beneath(root, parts[:-1], DIRECTORY)
    try:
        return os.readlink(parts[-1], dir_fd=fd)
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link (links in a captured tree are not followed)"
    return exc.strerror or str(exc)


def _read_regular(fd: int, path: str, limit: int) -> bytes:
    """All of the open file `fd`, if it is a regular file of at most `limit` bytes; closes `fd`."""
    try:
        return _read_open(fd, path, limit)
    finally:
        os.close(fd)


def _read_open(fd: int, path: str, limit: int) -> bytes:
    """_read_regular's work, on an fd its caller closes."""
    mode = os.fstat(fd)
    if stat.S_ISDIR(mode.st_mode):
        raise InputError(path, os.strerror(errno.EISDIR))
    if not stat.S_ISREG(mode.st_mode):
        raise InputError(path, "not a regular file")
    too_large = "larger than %d bytes, the bound on one input file (see --max-input-bytes)" % limit
    if mode.st_size > limit:
        raise InputError(path, too_large)
    chunks: List[bytes] = []
    total = 0
    want = mode.st_size + 1  # one more than it says: its end is seen in the first read
    while True:
        chunk = os.read(fd, min(max(want, _CHUNK), limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:  # it grew while read
            raise InputError(path, too_large)


def read_tree(root: str, parts: Sequence[str], captured: bool, limit: int = DEFAULT_MAX_INPUT_BYTES) -> bytes:
    """The bytes of root/parts...: as is on the live host, defensively (see the module) in a
    captured tree. Raises InputError with a one-line reason."""
    path = os.path.join(root, *parts)
    try:
        if not captured:
            with open(path, "rb") as f:
                return f.read()
        return _read_regular(open_beneath(root, parts, FILE), path, limit)
    except OSError as exc:
        raise InputError(path, _reason(exc)) from exc


def read_file(source: Source, *parts: str) -> bytes:
    """The bytes of the file `parts` of `source`'s /proc tree (e.g. "net", "tcp"), the way every
    reader of a Source should read it; raises InputError with a one-line reason."""
    if source.proc_root is None:
        raise InputError(os.path.join(*parts), "no /proc tree to read")
    return read_tree(source.proc_root, parts, not source.kernel, source.max_input_bytes)


def protocol_names(source: Source) -> Optional[FrozenSet[str]]:
    """The protocols `source`'s kernel has (the first column of PROC/net/protocols: TCP, SCTP,
    MPTCPv6...), or None when the file cannot be read. A protocol not listed has no sockets."""
    try:
        data = read_file(source, "net", "protocols")
    except InputError:
        return None
    return frozenset(line.split(None, 1)[0].decode("ascii", "replace") for line in data.split(b"\n")[1:]
                     if line.strip())


def read_named_file(path: str, limit: int = DEFAULT_MAX_INPUT_BYTES) -> bytes:
    """The bytes of a file the user named (a saved sock_diag file): if a regular file (a FIFO or
    a device is refused before any read) of at most `limit` bytes; InputError otherwise."""
    try:
        return _read_regular(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), path, limit)
    except OSError as exc:
        raise InputError(path, _reason(exc)) from exc
