"""The options commands share, each defined once in a group (source, selection, output, plugins),
and what they mean (registry, source, query).

A command takes whole groups or the options of a group it honours (by `dest`), so that no command
accepts an option it would ignore. Every command takes `--debug`.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys

from procsock.limits import DEFAULT_MAX_INPUT_BYTES

# typing.TYPE_CHECKING, without importing typing (see procsock.__main__); parsing (and --help) needs
# neither the model nor the plugin machinery: the functions below import them
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Optional, Tuple

    from procsock import Query, Source  # the public face: wherever the model keeps them
    from procsock.backends import Registry


class UsageError(Exception):
    """Bad usage found after argument parsing (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """Usage errors as one line `procsock: ...` (exit 2), like every other error, not usage + error."""

    def error(self, message: str):
        self.exit(2, "procsock: %s\n" % message)

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's own asks shutil for the width, and importing shutil (with zlib, bz2, lzma)
        # costs a tenth of --help
        formatter = self.formatter_class(prog=self.prog, width=terminal_columns() - 2)
        if hasattr(formatter, "_set_color"):  # Python 3.14's argparse: colour, as its own sets it
            formatter._set_color(self.color)
        return formatter


def terminal_columns() -> int:
    """The help's width as argparse finds it from Python 3.11 (shutil.get_terminal_size().columns):
    $COLUMNS, else standard output's terminal, else 80; a terminal of 0 columns counts as 80 (on
    3.9 and 3.10, shutil gives argparse the 0)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


# Plain named tuples, not attrs classes: only this module sees them, and parsing (and --help) then
# imports neither attrs nor the model.
Option = collections.namedtuple("Option", "dest flags settings exclusive")
Option.__doc__ = """One option: where argparse stores it (`dest`, by which commands pick it), its flags and
argparse settings; `exclusive` options of one group exclude each other."""


def _option(dest: str, *flags: str, exclusive: bool = False, **settings) -> Option:
    return Option(dest, flags, tuple(sorted(settings.items())), exclusive)


Group = collections.namedtuple("Group", "name title options")
Group.__doc__ = """Options that go together, under one heading of --help."""


class _UseWatch(argparse.Action):
    """`-E` (ss's event stream) is `procsock watch`: a usage error that says so."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("%s: to follow sockets as they come and go, use `procsock watch`" % option_string)


def _version() -> str:
    from procsock import __version__

    return "procsock %s" % __version__


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_PROTOCOL_FLAGS = (
    ("-t", "--tcp", "tcp"),
    ("-u", "--udp", "udp"),
    ("-x", "--unix", "unix"),
    ("-w", "--raw", "raw"),
    ("--udplite", "--udplite", "udplite"),
    ("--packet", "--packet", "packet"),
    ("--netlink", "--netlink", "netlink"),
)

SELECTION = Group("selection", "which sockets (default: all)", (
    *(
        _option("protocols", *((short,) if short == long else (short, long)), action="append_const",
                const=protocol, help="%s sockets" % protocol)
        for short, long, protocol in _PROTOCOL_FLAGS
    ),
    _option("families", "-4", action="append_const", const="inet", help="IPv4 only"),
    _option("families", "-6", action="append_const", const="inet6", help="IPv6 only"),
    _option("kind", "--kind", action="append", metavar="NAME", help="a socket kind by name (tcp6, unix, ...)"),
    _option("listening", "-l", "--listening", action="store_true",
            help="listening sockets only, as ss -l: LISTEN, and unconnected (UNCONN) datagram and raw sockets"),
    _option("bound_inactive", "-B", "--bound-inactive", action="store_true",
            help="TCP sockets bound but neither listening nor connected only (as ss -B)"),
    _option("all", "-a", "--all", action="store_true", help="all sockets (the default; for ss habits)"),
    _option("state", "--state", action="append", metavar="STATE", help="only this state (LISTEN, ESTAB, ...)"),
    _option("pid", "--pid", type=int, action="append",
            help="only sockets held by this process (walks only its fds); several add up"),
    _option("port", "--port", type=int, action="append",
            help="only sockets with this local or remote port; several add up"),
    _option("netns", "--netns", type=int, action="append", metavar="INODE",
            help="only sockets of this network namespace (inode of /proc/PID/ns/net)"),
    _option("netns_name", "-N", "--net", action="append", metavar="NSNAME",
            help="only sockets of this named network namespace (ip netns; as ss -N)"),
    # context filters: a socket is kept when one of its owners' context matches every one given
    _option("unit", "--unit", action="append", metavar="UNIT",
            help="only sockets held in this systemd unit (nginx.service, or nginx); several add up"),
    _option("container", "--container", action="append", metavar="ID",
            help="only sockets held in this container (id, its first digits, or name)"),
    _option("pod", "--pod", action="append", metavar="POD", help="only sockets held in this pod (UID)"),
    _option("cgroup", "--cgroup", action="append", metavar="PREFIX",
            help="only sockets held by processes in this cgroup or below (path from /)"),
    _option("user", "--user", action="append", metavar="NAME|UID", help="only sockets held by this user"),
))
CONTEXT_FILTERS = ("unit", "container", "pod", "cgroup", "user")
# the selection options of a command that reads no owner context (save-diag)
SELECTION_WITHOUT_CONTEXT = tuple(dict.fromkeys(o.dest for o in SELECTION.options if o.dest not in CONTEXT_FILTERS))

SOURCE = Group("source", "where from", (
    _option("proc_root", "--proc-root", metavar="DIR", help="read a captured /proc tree instead of this host"),
    _option("diag_file", "--diag-file", metavar="FILE", help="decode saved sock_diag replies (ss -D format) "
            "instead of asking the kernel; owners from --proc-root"),
    _option("max_input_bytes", "--max-input-bytes", type=_positive, metavar="N",
            help="refuse a captured or saved file larger than N bytes (default %d)" % DEFAULT_MAX_INPUT_BYTES),
    _option("backend", "--backend", metavar="NAME", help="use only this backend (no fallback)"),
))

OUTPUT = Group("output", "output", (
    _option("json", "--json", exclusive=True, action="store_true", help="one JSON document"),
    _option("jsonl", "--jsonl", exclusive=True, action="store_true", help="one JSON object per socket per line"),
    _option("no_header", "-H", "--no-header", action="store_true", help="no table header"),
    _option("numeric", "-n", "--numeric", action="store_true",
            help="accepted for ss habits: procsock is always numeric (names only with -r)"),
    _option("processes", "-p", "--processes", action="store_true",
            help="accepted for ss habits: procsock always shows processes"),
    _option("resolve", "-r", "--resolve", action="store_true",
            help="host and service names instead of numbers (bounded lookups; numeric where none answers)"),
    _option("events", "-E", "--events", action=_UseWatch, nargs=0, help="use `procsock watch`"),
    _option("version", "-V", "--version", action="version", version=_version(), help="the version, and exit"),
    *(
        _option("details", flag, long, action="store_true", help="details: " + what)
        for flag, long, what in (
            ("-i", "--info", "TCP internals (tcp_info)"),
            ("-e", "--extended", "socket cookie, uid, mark, cgroup, shutdown"),
            ("-m", "--memory", "socket memory"),
            ("-o", "--options", "timers, as ss -o shows them"),
        )
    ),
    _option("context", "-C", "--context", action="store_true",
            help="who holds each socket: user, systemd unit, container, pod (User and Context columns; "
                 "per owner in JSON)"),
    _option("summary", "-s", "--summary", exclusive=True, action="store_true",
            help="counts by kind and state, and per unit, container and pod, listeners on any address first"),
))

PLUGINS = Group("plugins", "plugins", (
    _option("disable_plugin", "--disable-plugin", action="append", default=[], metavar="NAME",
            help="do not load this plugin"),
))

SAVED = Group("saved", "saved input", (
    _option("bundle", "--from", metavar="PATH", help="read a capture bundle (procsock capture) or a saved "
            "--json/--jsonl file instead of this host"),
))

GROUPS = {group.name: group for group in (SELECTION, SOURCE, SAVED, OUTPUT, PLUGINS)}  # in --help order


def add_options(parser: argparse.ArgumentParser, takes: Mapping[str, Optional[Tuple[str, ...]]]) -> None:
    """Add the groups a command takes (name -> the dests it takes of that group, None for all of
    them), in --help order, and --debug."""
    for name, group in GROUPS.items():
        if name not in takes:
            continue
        chosen = [o for o in group.options if takes[name] is None or o.dest in takes[name]]
        missing = set(takes[name] or ()) - {o.dest for o in chosen}
        if missing:
            raise ValueError("group %s has no option %s" % (name, ", ".join(sorted(missing))))
        section = parser.add_argument_group(group.title)
        exclusive = section.add_mutually_exclusive_group() if any(o.exclusive for o in chosen) else None
        for option in chosen:
            (exclusive if option.exclusive else section).add_argument(
                *option.flags, dest=option.dest, **dict(option.settings)
            )
    parser.add_argument("--debug", action="store_true", help="show details of failures")


def add_filter(parser: argparse.ArgumentParser) -> None:
    """The words after the options: ss's filter (procsock.filter), for the commands that select sockets."""
    parser.add_argument("filter", nargs="*", metavar="FILTER",
                        help="ss's filter: [state STATE | exclude STATE]... [EXPRESSION], e.g. "
                        "state established '( dport = :443 or sport = :443 )'")


def registry(args: argparse.Namespace) -> "Registry":
    """The plugins the options leave loaded."""
    from procsock.api import default_registry
    from procsock.backends import Registry

    loaded = Registry.from_entry_points(disabled=args.disable_plugin) if args.disable_plugin else default_registry()
    if "logging" in sys.modules:  # a plugin imported it: its records go to stderr escaped (procsock.cli.logs)
        from procsock.cli import logs

        logs.to_stderr(args.debug)
    return loaded


def source(args: argparse.Namespace) -> "Source":
    """The host, a captured tree or a saved file, as the source options say."""
    from procsock.api import make_source

    return make_source(args.proc_root, args.diag_file, args.max_input_bytes)


def query(args: argparse.Namespace, registry: "Registry", details: bool = False) -> "Query":
    """The query the selection options ask for (with `details`: tcp_info and the like); a value
    procsock does not know raises BadArgument (exit 2)."""
    from procsock.api import make_query

    states = list(args.state or [])
    if args.listening:  # as ss -l: a bound datagram socket listens too
        states += ["LISTEN", "CLOSE"]
    if args.bound_inactive:
        states.append("BOUND-INACTIVE")
    return make_query(
        kind=args.kind,
        family=args.families,
        protocol=args.protocols,
        state=states or None,
        pid=args.pid,
        port=args.port,
        netns=[*(args.netns or ()), *map(_named_netns, args.netns_name or ())] or None,
        details=details,
        context=getattr(args, "context", False) or getattr(args, "summary", False),
        **{name: getattr(args, name, None) for name in CONTEXT_FILTERS},
        registry=registry,
        filter=getattr(args, "filter", None) or None,
    )


def _named_netns(name: str) -> int:
    """The inode of the network namespace `ip netns` named `name` (/run/netns/NAME)."""
    import os

    from procsock.errors import BadArgument

    try:
        if "/" in name or name in ("", ".", ".."):
            raise FileNotFoundError
        return os.stat(os.path.join("/run/netns", name)).st_ino
    except OSError:
        raise BadArgument("netns", "no network namespace named %r in /run/netns (see ip netns)" % name) from None


def resolving(args: argparse.Namespace, details: bool = False) -> Tuple["Registry", "Source", "Query"]:
    """The registry, source and query the options ask for, checked at the door: a lookup-only
    --backend needs a pid, a --netns on this host must exist."""
    from procsock.api import check_backend, check_netns

    chosen = registry(args)
    where = source(args)
    asked = query(args, chosen, details)
    check_backend(chosen, args.backend, asked)
    check_netns(where, asked)
    return chosen, where, asked


def long_run() -> None:
    """For a command that runs until it is stopped (a watch, a server): the cyclic collector back
    on. `procsock` turns it off for its short runs (procsock.cli.command), where its passes over
    every row free nothing; a long run would keep any cycle (a plugin's) to its end."""
    gc.enable()


def saved_snapshot(args: argparse.Namespace):
    """What `--from PATH` holds, narrowed by the selection options (a bundle or a saved file
    replaces the host: the source options would say something else)."""
    from procsock.capture import read_input
    from procsock.saved import selected

    given = [flag for flag, dest in (("--proc-root", "proc_root"), ("--diag-file", "diag_file"),
                                     ("--backend", "backend")) if getattr(args, dest, None) is not None]
    if given:
        raise UsageError("--from reads what a run saved: it takes no %s" % given[0])
    chosen = registry(args)
    limit = args.max_input_bytes or DEFAULT_MAX_INPUT_BYTES
    asked = query(args, chosen, getattr(args, "details", False))
    return selected(read_input(args.bundle, limit, chosen.kinds()), asked)
