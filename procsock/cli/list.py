"""`procsock [list]`: every socket with the processes and fds that hold it (the default command)."""

import argparse
import sys

from procsock.cli import options
from procsock.errors import ProcsockError
from procsock.render import notes_lines, snapshot_to_dict, socket_to_dict, table_lines

NAME = "list"
HELP = "every socket with the processes and fds that hold it (the default command)"
OPTIONS = {"selection": None, "source": None, "output": None, "plugins": None}


def arguments(parser: argparse.ArgumentParser) -> None:
    """None of its own: the options say it all."""


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
    from procsock.resolver import Resolver  # not at import: parsing (and --help) needs no plugin machinery

    registry, source, query = options.resolving(args, details=args.details)
    snap = Resolver(registry, source, args.backend).snapshot(query)
    unread = [note.text for note in snap.notes if note.code == "unreadable-table"]
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
