"""`procsock diff OLD NEW`: sockets added, removed and changed between two moments (procsock.changes).

OLD and NEW are each a saved --json/--jsonl file, a capture bundle (procsock capture), or `-` for
this host now. The selection options apply to both sides. Exit 0 when nothing differs, 1 when
something does, 2 on bad usage or an input that cannot be read (like diff(1)).
"""

import argparse
import sys

from procsock.cli import options
from procsock.errors import ProcsockError
from procsock.limits import DEFAULT_MAX_INPUT_BYTES
from procsock.text import escape_text

NAME = "diff"
HELP = "sockets added, removed and changed between two saved outputs or bundles (- for now): exit 1 when any"
OPTIONS = {"selection": None, "source": ("max_input_bytes",), "output": ("json", "no_header"), "plugins": None}
FORMATS = ("table", "json", "osquery")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD",
                        help="saved JSON output (a document or lines), a capture bundle, or - for now")
    parser.add_argument("new", metavar="NEW", help="the same, of the later moment")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="table (default), json (as --json), or osquery: differential results log lines")
    parser.add_argument("--queues", type=int, metavar="N", default=None,
                        help="also report a queue that moved by more than N (default: queues are not compared)")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="the osquery query name of each line (default procsock_sockets)")
    parser.add_argument("--host-identifier", default=None, metavar="HOST",
                        help="osquery's hostIdentifier (default: the hostname of a NEW bundle, else of this host)")


def _snapshot(path: str, args: argparse.Namespace, registry):
    """The snapshot `path` names: this host now for `-`, a bundle, or a saved file."""
    from procsock import capture

    if path == "-":
        from procsock.model import Source
        from procsock.resolver import Resolver

        return Resolver(registry, Source.live()).snapshot(options.query(args, registry))
    return capture.read_input(path, args.max_input_bytes or DEFAULT_MAX_INPUT_BYTES, registry.kinds())


def run(args: argparse.Namespace, out) -> int:
    from procsock import capture
    from procsock.changes import diff
    from procsock.diffout import OSQUERY_NAME, diff_lines, diff_to_dict, osquery_lines
    from procsock.saved import selected

    chosen = args.format or ("json" if args.json else "table")
    if args.json and chosen != "json":
        raise options.UsageError("--json and --format %s say two different things" % chosen)
    if args.queues is not None and args.queues < 0:
        raise options.UsageError("--queues takes a number of 0 or more")
    registry = options.registry(args)
    query = options.query(args, registry)
    try:
        old, new = (selected(_snapshot(path, args, registry), query) for path in (args.old, args.new))
    except (ProcsockError, OSError) as exc:  # trouble is exit 2, as diff(1) says it
        print("procsock: %s" % escape_text(str(exc)), file=sys.stderr)
        return 2
    result = diff(old, new, args.queues)
    if chosen == "json":
        import json

        json.dump(diff_to_dict(result), out, indent=1)
        out.write("\n")
    elif chosen == "osquery":
        host = args.host_identifier or capture.hostname_of(args.new)
        for line in osquery_lines(result, host, args.name or OSQUERY_NAME):
            out.write(line + "\n")
    else:
        for line in diff_lines(result, header=not args.no_header):
            out.write(line + "\n")
    return 0 if result.same else 1
