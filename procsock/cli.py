"""The `procsock` command: every socket of the host with its owners, like `ss -tuaxnp`.

Exit codes: 0 ok, 1 error (one line on stderr; --debug adds the detail), 2 bad usage.
"""

import argparse
import gc
import logging
import os
import sys
import tempfile
from typing import List, Optional

from procsock.api import check_backend, check_netns, default_registry, make_query, make_source
from procsock.backends import Registry
from procsock.errors import BadArgument, ProcsockError
from procsock.model import DEFAULT_MAX_INPUT_BYTES
from procsock.render import (
    comparison_lines,
    comparison_to_dict,
    notes_lines,
    snapshot_to_dict,
    socket_to_dict,
    table_lines,
)
from procsock.resolver import Resolver
from procsock.text import escape_text

_PROTOCOL_FLAGS = (
    ("-t", "--tcp", "tcp"),
    ("-u", "--udp", "udp"),
    ("-x", "--unix", "unix"),
    ("-w", "--raw", "raw"),
    ("--udplite", "--udplite", "udplite"),
    ("--packet", "--packet", "packet"),
    ("--netlink", "--netlink", "netlink"),
)


class UsageError(Exception):
    """Bad usage found after argument parsing (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line `procsock: ...` (exit 2), like every other error, not usage + error."""

    def error(self, message: str):
        self.exit(2, "procsock: %s\n" % message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="procsock",
        description="List every socket with the processes and fds that hold it.",
    )
    select = parser.add_argument_group("which sockets (default: all)")
    for short, long, protocol in _PROTOCOL_FLAGS:
        flags = (short,) if short == long else (short, long)
        select.add_argument(
            *flags, dest="protocols", action="append_const", const=protocol,
            help="%s sockets" % protocol,
        )
    select.add_argument("-4", dest="families", action="append_const", const="inet", help="IPv4 only")
    select.add_argument("-6", dest="families", action="append_const", const="inet6", help="IPv6 only")
    select.add_argument("--kind", action="append", metavar="NAME", help="a socket kind by name (tcp6, unix, ...)")
    select.add_argument("-l", "--listening", action="store_true", help="listening sockets only")
    select.add_argument("-B", "--bound-inactive", action="store_true",
                        help="TCP sockets bound but neither listening nor connected only (as ss -B)")
    select.add_argument("-a", "--all", action="store_true", help="all sockets (the default; for ss habits)")
    select.add_argument("--state", action="append", metavar="STATE", help="only this state (LISTEN, ESTAB, ...)")
    select.add_argument("--pid", type=int, action="append",
                        help="only sockets held by this process (walks only its fds); several add up")
    select.add_argument("--port", type=int, action="append",
                        help="only sockets with this local or remote port; several add up")
    select.add_argument("--netns", type=int, action="append", metavar="INODE",
                        help="only sockets of this network namespace (inode of /proc/PID/ns/net)")

    src = parser.add_argument_group("where from")
    src.add_argument("--proc-root", metavar="DIR", help="read a captured /proc tree instead of this host")
    src.add_argument(
        "--diag-file", metavar="FILE",
        help="decode saved sock_diag replies (ss -D format) instead of asking the kernel; owners from --proc-root",
    )
    _add_max_input_bytes(src)
    src.add_argument("--backend", metavar="NAME", help="use only this backend (no fallback)")
    src.add_argument("--disable-plugin", action="append", default=[], metavar="NAME", help="do not load this plugin")

    out = parser.add_argument_group("output")
    form = out.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON document")
    form.add_argument("--jsonl", action="store_true", help="one JSON object per socket per line")
    form.add_argument("--list-backends", action="store_true", help="list backends and whether they can run here")
    form.add_argument("--save-diag", metavar="FILE", help="save raw sock_diag replies of every kind to FILE (ss -D format)")
    out.add_argument("-H", "--no-header", action="store_true", help="no table header")
    for flag, long, what in (("-i", "--info", "TCP internals (tcp_info)"), ("-e", "--extended", "socket cookie, "
                             "uid, mark, cgroup, shutdown"), ("-m", "--memory", "socket memory")):
        out.add_argument(flag, long, dest="details", action="store_true", help="details: " + what)
    out.add_argument("--debug", action="store_true", help="show details of failures")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _add_max_input_bytes(group) -> None:
    group.add_argument(
        "--max-input-bytes", type=_positive, metavar="N",
        help="refuse a captured or saved file larger than N bytes (default %d)" % DEFAULT_MAX_INPUT_BYTES,
    )


def _query(args: argparse.Namespace, registry: Registry):
    """The query the options ask for; a value procsock does not know raises BadArgument (exit 2)."""
    states = list(args.state or [])
    if args.listening:
        states.append("LISTEN")
    if args.bound_inactive:
        states.append("BOUND-INACTIVE")
    return make_query(
        kind=args.kind,
        family=args.families,
        protocol=args.protocols,
        state=states or None,
        pid=args.pid,
        port=args.port,
        netns=args.netns,
        details=args.details,
        registry=registry,
    )


def _list_backends(registry: Registry, source) -> List[str]:
    """One line per backend (name, priority, whether it can read `source`, kinds, families, origin)."""
    lines = []
    for backend in registry.backends:
        reason = backend.unavailable(source)
        status = "ready" if reason is None else "unavailable: " + reason
        dist = "%s %s" % (backend.distribution, backend.version) if backend.distribution else "-"
        kinds = ",".join(k.name for k in backend.info.kinds)
        families = ",".join(dict.fromkeys(k.family.name.lower() for k in backend.info.kinds))
        lines.append(
            "%-10s priority=%-4d %s [%s] (%s) plugin %s from %s"
            % (backend.name, backend.info.priority, status, kinds, families, backend.plugin_name, dist)
        )
    for failure in registry.failures:
        lines.append("%-10s broken: %s (from %s)" % (failure.name, failure.reason, failure.distribution or "-"))
    return [escape_text(line) for line in lines]  # every word of it is a plugin's


def _refuse_inputs(path: str, args: argparse.Namespace) -> None:
    """UsageError when saving to `path` would overwrite what this run reads (--diag-file, or a
    file inside --proc-root), however it is spelled (symlinks, hard links)."""
    real = os.path.realpath(path)
    if args.diag_file is not None:
        same = real == os.path.realpath(args.diag_file)
        if not same and os.path.exists(path) and os.path.exists(args.diag_file):
            same = os.path.samefile(path, args.diag_file)
        if same:
            raise UsageError("--save-diag %s would overwrite the --diag-file input" % path)
    if args.proc_root is not None:
        root = os.path.realpath(args.proc_root)
        if os.path.commonpath([real, root]) == root:
            raise UsageError("--save-diag %s is inside the --proc-root input %s" % (path, args.proc_root))


def _save_diag(resolver: Resolver, query, path: str) -> int:
    """Write the raw replies to a temporary file beside `path`, then rename it over `path`: a
    failed save leaves `path` as it was."""
    directory, name = os.path.split(os.path.abspath(path))
    try:  # a path that cannot be written fails before any dump
        fd, temporary = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # what open() would have made, not mkstemp's 0600
            dumps, notes = resolver.raw_dumps(query)
            for note in notes:
                print("procsock: " + escape_text(note), file=sys.stderr)
            if not dumps:
                raise ProcsockError("no backend here can save raw sock_diag replies")
            for _, _, _, data in dumps:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    namespaces = len({netns for _, netns, _, _ in dumps})
    kinds = ", ".join(dict.fromkeys(kind.name for kind, _, _, _ in dumps))
    where = " of %d network namespaces" % namespaces if namespaces > 1 else ""
    print("procsock: " + escape_text("saved %s%s to %s" % (kinds, where, path)), file=sys.stderr)
    return 0


def _write_json(snap, per_socket: bool, out) -> None:
    """One JSON document, or (`per_socket`) one socket per line."""
    import json  # only here: the table, the common case, needs none of it

    if per_socket:
        for sock in snap.sockets:
            out.write(json.dumps(socket_to_dict(sock)) + "\n")
    else:
        json.dump(snapshot_to_dict(snap), out, indent=1)
        out.write("\n")


def run(args: argparse.Namespace, out) -> int:
    if args.disable_plugin:
        registry = Registry.from_entry_points(disabled=args.disable_plugin)
    else:
        registry = default_registry()
    source = make_source(args.proc_root, args.diag_file, args.max_input_bytes)
    if args.list_backends:
        for line in _list_backends(registry, source):
            out.write(line + "\n")
        return 0
    query = _query(args, registry)
    check_backend(registry, args.backend, query)
    check_netns(source, query)
    if args.save_diag:
        _refuse_inputs(args.save_diag, args)
    resolver = Resolver(registry, source, args.backend)
    if args.save_diag:
        return _save_diag(resolver, query, args.save_diag)
    snap = resolver.snapshot(query)
    unread = [note for note in snap.notes if note.code == "unreadable-table"]
    if unread and not snap.answered_by:  # nothing at all could be read: an error, not a table
        more = " (and %d more kinds)" % (len(unread) - 1) if len(unread) > 1 else ""
        raise ProcsockError("no socket table could be read: %s%s" % (unread[0], more))
    if args.json or args.jsonl:
        _write_json(snap, args.jsonl, out)
    else:
        several = bool(args.netns) or len({s.record.netns for s in snap.sockets}) > 1
        lines = list(table_lines(
            snap.sockets, header=not args.no_header, details=args.details,
            netns=several, netns_names=snap.netns_names,
        ))
        if lines:
            out.write("\n".join(lines) + "\n")
    for line in notes_lines(snap, " (see --json)"):
        print(line, file=sys.stderr)
    return 0


def build_compare_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="procsock compare",
        description="Compare two backends' views of the same moment. Exit 0 when they agree "
        "(every difference explained), 1 when they do not or when there was nothing to compare.",
    )
    parser.add_argument("backends", nargs="*", metavar="BACKEND", help="two backend names (default: the two best here)")
    parser.add_argument("--kind", action="append", metavar="NAME", help="only this kind (tcp6, unix, ...)")
    parser.add_argument("--pid", type=int, action="append",
                        help="only the sockets this process holds (lookup-only backends such as pidfd need it)")
    parser.add_argument("--proc-root", metavar="DIR", help="compare on a captured /proc tree")
    parser.add_argument("--diag-file", metavar="FILE", help="compare on saved sock_diag replies")
    _add_max_input_bytes(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument("--debug", action="store_true", help="show details of failures")
    return parser


def run_compare(args: argparse.Namespace, out) -> int:
    if len(args.backends) > 2:
        raise UsageError("compare takes at most two backend names")
    import json

    from procsock.compare import compare_backends  # only this subcommand needs it

    names = list(args.backends) + [None] * (2 - len(args.backends))
    registry = default_registry()
    query = make_query(kind=args.kind, pid=args.pid, registry=registry)
    result = compare_backends(registry, make_source(args.proc_root, args.diag_file, args.max_input_bytes), names[0], names[1], query)
    if args.json:
        json.dump(comparison_to_dict(result), out, indent=1)
        out.write("\n")
    else:
        for line in comparison_lines(result):
            out.write(line + "\n")
    return 0 if result.agree else 1


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        args, command = build_compare_parser().parse_args(argv[1:]), run_compare
    else:
        args, command = build_parser().parse_args(argv), run
    handler = logging.StreamHandler()
    handler.setFormatter(_EscapingFormatter("procsock: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.DEBUG if args.debug else logging.WARNING)
    try:
        return command(args, sys.stdout)
    except (UsageError, BadArgument) as exc:
        print("procsock: %s" % escape_text(str(exc)), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `procsock | head`: stop quietly, and let exit not flush again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ProcsockError, OSError) as exc:
        logging.getLogger("procsock").debug("detail", exc_info=True)
        print("procsock: %s" % escape_text(_one_line(exc)), file=sys.stderr)
        return 1


class _EscapingFormatter(logging.Formatter):
    """Log lines (--debug tracebacks quote plugins' messages) escaped line by line like all output."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(escape_text(line) for line in super().format(record).split("\n"))


def _one_line(exc: Exception) -> str:
    """What failed and why: an OSError as "FILE: reason", anything else as its message."""
    if isinstance(exc, OSError) and exc.strerror:
        return "%s: %s" % (exc.filename, exc.strerror) if exc.filename else exc.strerror
    return str(exc)


def command() -> None:
    """The `procsock` command as a process: main(), then exit.

    A short-lived process builds tens of thousands of acyclic objects: the cyclic collector is
    off while it runs, and its objects are frozen before exit so the interpreter's final
    collections do not walk them all once more.
    """
    gc.disable()
    code = main()
    gc.freeze()
    sys.exit(code)
