"""The `procsock` command: every socket of the host with its owners, like `ss -tuaxnp`.

`procsock [COMMAND] [OPTIONS]`: one module per command (list, the default; backends; compare;
save-diag; schema; diff; capture; watch; metrics; osquery), each declaring its NAME, HELP, the
shared OPTIONS it takes (procsock.cli.options), its own arguments() and run(args, out) -> exit
code. COMMANDS is the one dispatch table. The command is the first word that is neither an
option nor an option's value; shared options may come before or after it. `--list-backends` and
`--save-diag FILE` are the backends and save-diag commands spelled as options.

Exit codes: 0 ok, 1 error (one line on stderr; --debug adds the detail), 2 bad usage.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from procsock import log

# importing procsock.cli.list binds `list` here to that module: the builtin is not usable in this file
from procsock.cli import (
    backends, capture, compare, diff, list as list_, metrics, options, osquery, savediag, schema, watch,
)
from procsock.cli.options import Parser, UsageError
from procsock.errors import BadArgument, ProcsockError
from procsock.text import escape_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see procsock.__main__)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

__all__ = ["COMMANDS", "DEFAULT", "UsageError", "command", "main"]

COMMANDS = {
    module.NAME: module
    for module in (list_, backends, compare, savediag, schema, diff, capture, watch, metrics, osquery)
}
DEFAULT = "list"
ALIASES = {"--list-backends": "backends", "--save-diag": "save-diag"}


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of one command: the shared options it takes, then its own arguments."""
    module = COMMANDS[name]
    parser = Parser(prog="procsock %s" % name, description=module.HELP)
    options.add_options(parser, module.OPTIONS)
    module.arguments(parser)
    return parser


def _main_parser() -> argparse.ArgumentParser:
    """The default command's options followed by an optional command word; whatever follows the
    command word is left for that command's parser. Its --help lists every command."""
    listed = "\n".join("  %-10s %s" % (name, module.HELP) for name, module in COMMANDS.items())
    parser = Parser(
        prog="procsock",
        usage="procsock [COMMAND] [OPTIONS] [FILTER]",
        description="List every socket with the processes and fds that hold it.\n\ncommands:\n%s\n\n"
        "The command is the first word that is not an option or an option's value (default: %s);\n"
        "options may come before or after it. `procsock COMMAND --help` shows a command's options;\n"
        "those below are the default command's. FILTER is ss's filter, after the options:\n"
        "procsock -tn state established '( dport = :443 or sport = :443 )'" % (listed, DEFAULT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_options(parser, COMMANDS[DEFAULT].OPTIONS)
    parser.add_argument("command", nargs="?", metavar="COMMAND", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _unalias(argv: List[str]) -> Tuple[List[str], Dict[int, str]]:
    """`argv` with `--list-backends` and `--save-diag [=]FILE` (before any `--`) replaced by their
    command words, and which alias stands where."""
    words, aliased = [], {}
    for at, word in enumerate(argv):
        if word == "--":
            return words + argv[at:], aliased
        name, equals, value = word.partition("=")
        if name in ALIASES and (not equals or name == "--save-diag"):
            aliased[len(words)] = name
            words.append(ALIASES[name])
            if equals:
                words.append(value)
        else:
            words.append(word)
    return words, aliased


def parse(argv: List[str]) -> Tuple[str, argparse.Namespace]:
    """The command `argv` names and its arguments; bad usage exits 2 with one line."""
    words, aliased = _unalias(argv)
    scanned = _main_parser().parse_args(words)
    if scanned.command is not None and scanned.command not in COMMANDS:  # the default command's filter
        from procsock.filter import starts_filter  # only here: a bare run or --help parses no filter

        if not starts_filter(scanned.command):
            raise UsageError("%r is neither a command (%s) nor the start of a filter (state, src, dport, ...)"
                             % (scanned.command, ", ".join(COMMANDS)))
        scanned.command = None
    name = scanned.command or DEFAULT
    at = None
    if scanned.command is not None:
        end = len(words) - len(scanned.rest)  # the command word, and any `--` beside it, end here
        at = max(i for i in range(end) if words[i] == name)
        words = words[:at] + words[at + 1:]
    for where, alias in aliased.items():
        if where != at or len(aliased) > 1:
            raise UsageError("%s is the %s command: give no other command" % (alias, ALIASES[alias]))
    parser = command_parser(name)
    # options may follow the default command's filter words (as ss's do); argparse's intermixed
    # parsing mishandles `--`, which only commands taking a file need
    return name, parser.parse_args(words) if "--" in words else parser.parse_intermixed_args(words)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else [*argv]
    try:
        name, args = parse(argv)
    except UsageError as exc:
        print("procsock: %s" % escape_text(str(exc)), file=sys.stderr)
        return 2
    if args.debug:
        from procsock.cli import logs

        logs.to_stderr(debug=True)
    try:
        return COMMANDS[name].run(args, sys.stdout)
    except (UsageError, BadArgument) as exc:
        print("procsock: %s" % escape_text(str(exc)), file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `procsock | head`: stop quietly, and let exit not flush again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ProcsockError, OSError) as exc:
        log.debug("detail", exc_info=True)
        print("procsock: %s" % escape_text(_one_line(exc)), file=sys.stderr)
        return 1


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
