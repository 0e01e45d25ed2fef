"""`procsock capture OUT`: one compressed file (.tar.gz) holding a host's sockets for later.

A bundle holds:

* `snapshot.json`: the snapshot as `--json` writes it (record format, `procsock schema`), notes
  included: what `procsock --from BUNDLE`, `snapshot(bundle=...)` and `procsock diff` read back,
  exactly the records and owners of the run that took it, each owner with its context (always:
  a capture is kept for later, when the processes and cgroups it names may be gone);
* `facts.json`: kernel release, hostname, time (unix and UTC text), procsock and schema versions;
* `sock_diag`: the sock_diag replies of every kind that answers, of every network namespace (the
  `--save-diag` format: `--diag-file` reads it), details included: the very replies the snapshot
  was decoded from (each kind is read once: `Resolver.capture`);
* `proc/`: what procsock reads of /proc, as a captured tree (`--proc-root` reads it): the socket
  tables (`net/KIND`, and `PID/net/KIND` for one process of each other namespace), and for each
  process holding a socket its socket fd links (`PID/fd/N -> socket:[INODE]`, other fds are left
  out), `comm`, `status`, `cgroup` and `ns/net` (`net:[INODE]`); `self/ns/net` names our namespace.

A bundle is untrusted when read: `read_bundle` reads `snapshot.json` and `facts.json` straight out
of the archive and writes nothing; every member must be a plain relative name (no absolute path,
no `..`), a regular file, a directory or, under `proc/`, a link whose target is `socket:[N]` or
`net:[N]` (nothing a link could lead out through); the sizes are capped (max_input_bytes in all),
and so is the number of members. The archive is read as a stream, once, through a reader that
stops past the bound: its own bytes (headers, padding) count too, a long-name or pax header larger
than MAX_HEADER is refused before it is read, members are not kept, a name may appear only once.
`extract_bundle` (for --proc-root/--diag-file use) unpacks into
a new temporary directory with tarfile's `data` filter on top of the same checks.
"""

import contextlib
import gzip
import json
import os
import re
import socket
import stat
import tarfile
import tempfile
import time
import zlib
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional, Tuple

import attrs

from procsock.errors import InputError, ProcsockError
from procsock.inputs import read_tree, readlink_beneath
from procsock.model import (
    DEFAULT_MAX_INPUT_BYTES, OWNER_FD, Netns, Query, Row, Snapshot, SocketKind, Source, owner_task,
)
from procsock.outputs import replacing
from procsock.schema import SCHEMA_VERSION
from procsock.text import escape_text

__all__ = [
    "BUNDLE_MEMBERS", "bundle_namespaces", "capture", "extract_bundle", "hostname_of", "is_bundle", "read_bundle",
    "read_input", "unpacked",
]

SNAPSHOT, FACTS, DIAG, PROC = "snapshot.json", "facts.json", "sock_diag", "proc"
BUNDLE_MEMBERS = (SNAPSHOT, FACTS, DIAG, PROC)
# A capture holds a member per socket fd plus ~7 per process holding one and a table per kind per
# namespace (a host of 281 sockets: 59 members); 250,000 is a host of ~200,000 socket fds.
MAX_MEMBERS = 250_000
MAX_HEADER = 64 * 1024  # a long name or pax header: a capture writes names of at most ~60 bytes
_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
             tarfile.SOLARIS_XHDTYPE)
_SLACK = 1 << 20  # archive bytes beyond max_input_bytes: end blocks, tarfile's read-ahead
_LINK_TARGET = re.compile(r"(socket|net):\[[0-9]{1,20}\]\Z")
_NETNS_LINK = re.compile(r"net:\[([0-9]{1,20})\]\Z")
_PROCESS_FILES = ("comm", "status", "cgroup")
_CHUNK = 1 << 20  # uncompressed bytes of a bundle handed to gzip at once


@attrs.frozen
class Captured:
    """What `capture` wrote: the snapshot it holds, its facts, and the bundle's path and size."""

    snapshot: Snapshot
    facts: dict
    path: str
    size: int


def _facts(now: float) -> dict:
    import procsock

    return {
        "kernel": os.uname().release, "hostname": socket.gethostname(), "time": now,
        "time_text": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "procsock": procsock.__version__, "schema": SCHEMA_VERSION,
    }


def _ustar(name: str, kind: bytes, size: int, mode: int, mtime: int, linkname: str = "") -> bytes:
    """One tar header block (ustar), built directly: tarfile's own costs ~0.3 ms a member, and a
    bundle has one member per socket fd. Names too long for ustar go through tarfile (GNU)."""
    path, target = name.encode(), linkname.encode()
    if len(path) > 100 or len(target) > 100:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.mtime, info.linkname = kind, size, mode, mtime, linkname
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    # mode, uid and gid 0, size, mtime; the checksum field (8 spaces while summed); the type, link
    # target, magic: summed apart (the name's and target's bytes add to the checksum, the NULs nothing)
    fields = b"%07o\0" % mode + b"0000000\x000000000\x00" + b"%011o\0%011o\0" % (size, mtime)
    checksum = sum(path) + sum(fields) + 8 * 32 + kind[0] + sum(target) + sum(b"ustar\x0000")
    return b"".join((path.ljust(100, b"\0"), fields, b"%06o\0 " % checksum, kind, target.ljust(100, b"\0"),
                     b"ustar\x0000")).ljust(512, b"\0")


class _Writer:
    """A bundle's tar stream, gzip-compressed into `out` as it is written (headers gathered in
    chunks of _CHUNK bytes, a file's data written as given: the archive is never whole in memory,
    compressed or not); files, links, and each directory once, before what it holds. `close`
    ends the archive and the gzip stream (`out` stays open)."""

    def __init__(self, out: BinaryIO, now: float) -> None:
        self.mtime, self.dirs, self.pending, self.size = int(now), set(), [], 0
        self.gzip = gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=out, mtime=self.mtime)

    def _add(self, block: bytes) -> None:
        self.pending.append(block)
        self.size += len(block)
        if self.size >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        self.gzip.write(b"".join(self.pending))
        self.pending, self.size = [], 0

    def _dir(self, name: str) -> None:
        parent = os.path.dirname(name)
        if parent and parent not in self.dirs:
            self._dir(parent)
            self._add(_ustar(parent + "/", tarfile.DIRTYPE, 0, 0o755, self.mtime))
            self.dirs.add(parent)

    def file(self, name: str, *parts: bytes) -> None:
        """A regular file whose data is `parts` joined."""
        size = sum(map(len, parts))
        self._dir(name)
        self._add(_ustar(name, tarfile.REGTYPE, size, 0o644, self.mtime))
        if size >= _CHUNK:
            self._flush()
            for part in parts:
                self.gzip.write(part)
        else:
            self.pending += parts
            self.size += size
        self._add(bytes(-size % 512))

    def link(self, name: str, target: str) -> None:
        self._dir(name)
        self._add(_ustar(name, tarfile.SYMTYPE, 0, 0o777, self.mtime, target))

    def close(self) -> None:
        self._add(bytes(1024))  # the end-of-archive blocks
        self._flush()
        self.gzip.close()


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not readable: the bundle goes without it
        return None


def _proc_tree(write: _Writer, snap: Snapshot, kinds: Iterable[SocketKind], proc: str = "/proc") -> None:
    """The /proc files procsock reads for `snap`'s sockets, under proc/ (see the module). The fd
    links are those of the snapshot's owners (`socket:[INODE]` as the kernel writes them), so
    the tree and the snapshot agree; the rest is read now."""
    from procsock.render import entries

    links: Dict[int, Dict[int, int]] = {}  # task -> fd -> socket inode
    for row, owners, _ in entries(snap.sockets):  # rows: no Socket objects built
        for owner in owners:
            links.setdefault(owner_task(owner), {})[owner[OWNER_FD]] = row[Row.INODE]
    for unresolved in snap.unresolved.values():
        for owner in unresolved.owners:
            links.setdefault(owner.task, {})[owner.fd] = unresolved.inode
    own = os.stat("%s/self/ns/net" % proc).st_ino
    write.link("proc/self/ns/net", "net:[%d]" % own)
    names = [kind.name for kind in kinds]
    for name in names:
        data = _read("%s/net/%s" % (proc, name))
        if data is not None:
            write.file("proc/net/" + name, data)
    reached = {own}
    for task, fds in sorted(links.items()):
        base = "%s/%d" % (proc, task)
        try:
            netns = os.stat(base + "/ns/net").st_ino
        except OSError:  # gone since the snapshot, or hidden: its fds as the snapshot saw them
            netns = None
        if netns is not None:
            write.link("proc/%d/ns/net" % task, "net:[%d]" % netns)
        for fd, inode in sorted(fds.items()):
            write.link("proc/%d/fd/%d" % (task, fd), "socket:[%d]" % inode)
        for name in _PROCESS_FILES:
            data = _read("%s/%s" % (base, name))
            if data is not None:
                write.file("proc/%d/%s" % (task, name), data)
        if netns is not None and netns not in reached:  # one process's view of each other namespace's tables
            reached.add(netns)
            for name in names:
                data = _read("%s/net/%s" % (base, name))
                if data is not None:
                    write.file("proc/%d/net/%s" % (task, name), data)


def capture(out: str, query: Query = Query(), registry=None) -> Captured:
    """Capture this host into the bundle `out` (.tar.gz; replaced whole, written beside it first),
    owners' context always included (`query` with context=True)."""
    from procsock.api import registry_or_default
    from procsock.render import json_document
    from procsock.resolver import Resolver

    registry = registry_or_default(registry)
    resolver = Resolver(registry, Source.live())
    with replacing(out) as f:  # a path that cannot be written fails before any reading
        now = time.time()
        snap, dumps, dump_notes = resolver.capture(attrs.evolve(query, context=True))  # sock_diag: what it read
        facts = dict(_facts(now), notes=dump_notes)
        write = _Writer(f, now)
        write.file(FACTS, json.dumps(facts, indent=1).encode() + b"\n")
        write.file(SNAPSHOT, *[part.encode() for part in json_document(snap)])
        write.file(DIAG, *[data for _, _, _, data in dumps])
        _proc_tree(write, snap, registry.kinds())
        write.close()
    return Captured(snap, facts, out, os.path.getsize(out))


# --- Reading a bundle: untrusted ------------------------------------------------------------------


class _Refused(Exception):
    """A bundle refused while tarfile reads it (raised through tarfile, made an InputError by `_open_tar`)."""


def _too_large(limit: int) -> str:
    return "larger than %d bytes or %d members, the bound on one input (see --max-input-bytes)" % (limit, MAX_MEMBERS)


class _Bounded:
    """The decompressed bytes of a bundle, at most `limit` of them: reading past raises _Refused,
    so whatever the headers claim, a bundle costs the reading of no more."""

    def __init__(self, source, limit: int) -> None:
        self.source, self.limit, self.left = source, limit, limit + _SLACK

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(self.left + 1 if size < 0 or size > self.left else size)
        self.left -= len(data)
        if self.left < 0:
            raise _Refused(_too_large(self.limit))
        return data


class _Header(tarfile.TarInfo):
    """A tar header whose long-name or pax payload (which tarfile reads whole, into memory, before
    returning the member) is refused unread when larger than MAX_HEADER."""

    def _proc_member(self, tarfile):  # tarfile's documented hook for subclasses
        if self.type in _EXTENDED and self.size > MAX_HEADER:
            raise _Refused("a long-name or pax header of %d bytes (at most %d)" % (self.size, MAX_HEADER))
        return super()._proc_member(tarfile)


def _shown(text: str) -> str:
    """A member's name or link in a message, quoted, unescaped: the CLI escapes the whole line, once."""
    return "'%s'" % text[:80]


def _check_member(member: tarfile.TarInfo, bundle: str) -> None:
    name = member.name
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\0" in name or len(name) > 4096:
        raise InputError(bundle, "member %s is not a plain relative name" % _shown(name))
    if member.isdir():
        return
    if member.issym():
        if parts[0] != PROC or not _LINK_TARGET.match(member.linkname):
            raise InputError(bundle, "member %s: a link to %s (only proc/ links to socket:[N] or net:[N])"
                             % (_shown(name), _shown(member.linkname)))
        return
    if not member.isreg():
        raise InputError(bundle, "member %s is neither a file, a directory nor a link" % _shown(name))


def _members(tar: tarfile.TarFile, bundle: str, limit: int) -> Iterable[tarfile.TarInfo]:
    """The members of `tar` (read as a stream), each checked and none kept, until their sizes add
    up past `limit` or their number past MAX_MEMBERS (refused); a name seen twice is refused."""
    total = 0
    seen = set()
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, EOFError, OSError, ValueError, RecursionError) as exc:
            raise InputError(bundle, "not a readable bundle (%s)" % escape_text(str(exc)[:120])) from None
        if member is None:
            return
        tar.members.clear()  # tarfile keeps every member read: a stream needs none of them
        total += member.size
        if len(seen) >= MAX_MEMBERS or total > limit:
            raise InputError(bundle, _too_large(limit))
        _check_member(member, bundle)
        if member.name in seen:
            raise InputError(bundle, "member %s is there more than once" % _shown(member.name))
        seen.add(member.name)
        yield member


@contextlib.contextmanager
def _open_tar(path: str, limit: int) -> Iterator[tarfile.TarFile]:
    """The archive at `path` (tar, or tar.gz), if a regular file (a FIFO or a device is refused
    before any read), as a stream of at most `limit` bytes (see `_Bounded`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(path, exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(path, "not a regular file or a bundle directory")
        compressed = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        source = _Bounded(gzip.GzipFile(fileobj=f, mode="rb") if compressed else f, limit)
        try:
            try:
                tar = tarfile.open(fileobj=source, mode="r|", tarinfo=_Header)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise InputError(path, "not a bundle (%s)" % escape_text(str(exc)[:120])) from None
            try:
                yield tar
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise InputError(path, "not a readable bundle (%s)" % escape_text(str(exc)[:120])) from None
            finally:
                tar.close()
        except _Refused as exc:
            raise InputError(path, str(exc)) from None


def _bundle_files(path: str, wanted: Tuple[str, ...], limit: int) -> Dict[str, bytes]:
    """The bytes of the `wanted` top-level files of the bundle `path` (a directory or an archive)."""
    if os.path.isdir(path):
        found = {}
        for name in wanted:
            try:
                found[name] = read_tree(path, (name,), True, limit)
            except InputError:
                if os.path.lexists(os.path.join(path, name)):
                    raise
        return found
    found = {}
    with _open_tar(path, limit) as tar:
        for member in _members(tar, path, limit):
            if member.name in wanted and member.isreg():
                data = tar.extractfile(member).read(member.size + 1)
                if len(data) != member.size:
                    raise InputError(path, "member %s is not the size its header says" % _shown(member.name))
                found[member.name] = data
                if len(found) == len(wanted):  # the rest is not needed: not read
                    break
    return found


def is_bundle(path: str) -> bool:
    """Whether `path` is given as a bundle (a directory, or an archive by its name or first bytes)
    rather than a saved --json/--jsonl file."""
    if os.path.isdir(path) or path.endswith((".tar.gz", ".tgz", ".tar")):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def read_bundle(path: str, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
                kinds: Optional[Iterable[SocketKind]] = None) -> Tuple[Snapshot, dict]:
    """The snapshot and facts of a bundle (read, never extracted); InputError on a bad one."""
    from procsock.saved import load_text

    path = os.fspath(path)
    files = _bundle_files(path, (SNAPSHOT, FACTS), max_input_bytes)
    if SNAPSHOT not in files:
        raise InputError(path, "no %s in it: not a procsock capture bundle" % SNAPSHOT)
    try:
        text = files[SNAPSHOT].decode("utf-8")
        facts = json.loads(files.get(FACTS, b"{}").decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError(path, "%s or %s is not UTF-8 JSON" % (SNAPSHOT, FACTS)) from None
    if kinds is None:
        from procsock.api import default_registry

        kinds = default_registry().kinds()
    return load_text(text, "%s:%s" % (path, SNAPSHOT), kinds), facts if isinstance(facts, dict) else {}


def read_input(path: str, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
               kinds: Optional[Iterable[SocketKind]] = None) -> Snapshot:
    """The snapshot a bundle or a saved --json/--jsonl file holds."""
    from procsock.saved import load

    if is_bundle(path):
        return read_bundle(path, max_input_bytes, kinds)[0]
    return load(path, max_input_bytes, kinds)


def hostname_of(path: str) -> str:
    """The hostname a bundle's facts name (escaped), else this host's name: osquery's hostIdentifier."""
    if path != "-" and is_bundle(path):
        try:
            name = read_bundle(path)[1].get("hostname")
        except ProcsockError:
            name = None
        if isinstance(name, str) and name:
            return escape_text(name)
    return socket.gethostname()


def extract_bundle(path: str, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> str:
    """Unpack the bundle archive `path` into a new temporary directory (returned; the caller
    removes it), every member checked (see the module) and written through tarfile's `data`
    filter where Python has it: nothing lands outside that directory, no link leads out."""
    target = tempfile.mkdtemp(prefix="procsock-bundle-")
    try:
        with _open_tar(path, max_input_bytes) as tar:
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            for member in _members(tar, path, max_input_bytes):  # a stream: each as it comes
                tar.extract(member, target, **extra)
    except BaseException:
        import shutil

        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


@contextlib.contextmanager
def unpacked(path: str, max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Iterator[str]:
    """The bundle `path` as a directory holding `sock_diag` and `proc/`: a bundle directory as it
    is, an archive extracted (`extract_bundle`) into a temporary directory removed afterwards,
    even on error. InputError for a saved file or a bundle without both raw parts."""
    path = os.fspath(path)
    if not is_bundle(path):
        raise InputError(path, "not a capture bundle (a saved --json/--jsonl file has no %s or %s/)" % (DIAG, PROC))
    directory = path if os.path.isdir(path) else extract_bundle(path, max_input_bytes)
    try:
        for name, present in ((DIAG, os.path.isfile), (PROC, os.path.isdir)):
            if os.path.islink(os.path.join(directory, name)) or not present(os.path.join(directory, name)):
                raise InputError(path, "no %s in it: not a procsock capture bundle" % name)
        yield directory
    finally:
        if directory != path:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)


def _netns_link(proc_root: str, task: str) -> Optional[int]:
    """The namespace inode `task/ns/net` links to in a captured tree (never followed), or None."""
    try:
        found = _NETNS_LINK.match(readlink_beneath(proc_root, (task, "ns", "net")))
    except (OSError, ProcsockError):
        return None
    return int(found.group(1)) if found else None


def bundle_namespaces(proc_root: str) -> List[Netns]:
    """The network namespaces a bundle's `proc/` tree has socket tables of: ours (`self/ns/net`,
    tables in `net/`), then each other one through the process whose `PID/net/` holds its tables
    (as `_proc_tree` wrote them). Read as untrusted: only `net:[N]` links count, each namespace
    once; without `self/ns/net` the tree is one namespace of unknown inode."""
    own = _netns_link(proc_root, "self")
    if own is None:
        return [Netns()]
    found = {own: Netns(own)}
    for name in sorted(os.listdir(proc_root), key=lambda n: (len(n), n)):
        base = os.path.join(proc_root, name)
        tables = os.path.join(base, "net")
        if not (name.isascii() and name.isdigit()) or os.path.islink(base) or os.path.islink(tables) \
                or not os.path.isdir(tables):
            continue
        inode = _netns_link(proc_root, name)
        if inode is not None and inode not in found:
            found[inode] = Netns(inode, int(name))
    return list(found.values())
