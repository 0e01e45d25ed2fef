"""`procsock [list]`: every socket with the processes and fds that hold it (the default command)."""

import argparse
import itertools
import sys

from procsock.cli import options
from procsock.errors import ProcsockError

NAME = "list"
HELP = "every socket with the processes and fds that hold it (the default command)"
OPTIONS = {"selection": None, "source": None, "saved": None, "output": None, "plugins": None}


def arguments(parser: argparse.ArgumentParser) -> None:
    """The words after the options: ss's filter (procsock.filter)."""
    options.add_filter(parser)


def run(args: argparse.Namespace, out) -> int:
    # not at import: parsing (and --help) needs neither the model nor the plugin machinery
    from procsock.model import Row
    from procsock.render import entries, json_document, json_lines, notes_lines, table_lines
    from procsock.resolver import Resolver

    if args.bundle is not None:  # a bundle or saved output: read back, not resolved again
        snap = options.saved_snapshot(args)
    else:
        registry, source, query = options.resolving(args, details=args.details)
        snap = Resolver(registry, source, args.backend).snapshot(query)
    unread = [note.text for note in snap.notes if note.code == "unreadable-table"]
    if unread and not snap.answered_by:  # nothing at all could be read: an error, not a table
        more = " (and %d more kinds)" % (len(unread) - 1) if len(unread) > 1 else ""
        raise ProcsockError("no socket table could be read: %s%s" % (unread[0], more))
    if args.summary:
        from procsock.summary import summarize, summary_lines

        out.writelines(line + "\n" for line in summary_lines(summarize(snap)))
    elif args.json or args.jsonl:
        out.writelines(json_lines(snap) if args.jsonl else json_document(snap))
    else:
        several = bool(args.netns) or len({row[Row.NETNS] for row, _, _ in entries(snap.sockets)}) > 1
        lines = table_lines(
            snap.sockets, header=not args.no_header, details=args.details,
            netns=several, netns_names=snap.netns_names, context=args.context,
            resolved=_names(snap) if args.resolve else None,
        )
        while True:  # in chunks: the whole text of a large table is never held at once
            chunk = list(itertools.islice(lines, 1024))
            if not chunk:
                break
            out.write("\n".join(chunk) + "\n")
    for line in notes_lines(snap, " (see --json)"):
        print(line, file=sys.stderr)
    return 0


def _names(snap):
    """-r: the host names of the snapshot's inet addresses (a bounded wait: procsock.names)."""
    from procsock.model import Family, Row
    from procsock.names import Names, host_names
    from procsock.render import entries

    inet = (Family.INET, Family.INET6)
    addresses = [
        endpoint[0] for row, _, _ in entries(snap.sockets) if row[Row.KIND].family in inet
        for endpoint in (row[Row.LOCAL], row[Row.REMOTE]) if type(endpoint) is tuple and type(endpoint[0]) is bytes
    ]
    return Names(host_names(addresses))
