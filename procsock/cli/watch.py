"""`procsock watch`: sockets as they open, change and close, one event per line (procsock.watcher)."""

import argparse

from procsock.cli import options

# Only argparse and options at import: `procsock` imports every command's module to parse, and the
# bare command must stay cheap (tests/test_startup.py); the rest is imported when watch runs.

NAME = "watch"
HELP = "sockets as they open, change and close, with their owners, one event per line"
OPTIONS = {"selection": None, "source": ("backend",), "output": ("jsonl",), "plugins": None}
# What a table line adds to a socket's owners when they are not those of this moment.
_OWNERS_NOTE = {"last-seen": " (owners last seen)", "unknown": " (owners unknown: no poll saw it)"}


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def arguments(parser: argparse.ArgumentParser) -> None:
    options.add_filter(parser)
    parser.add_argument("--interval", type=_seconds, default=1.0, metavar="SECONDS",
                        help="seconds between polls (default 1)")
    parser.add_argument("--initial", action="store_true", help="first an open event for each socket that exists")
    parser.add_argument("--count", type=options._positive, metavar="N", help="stop after N events")
    parser.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after SECONDS")


def event_dict(event) -> dict:
    """The JSON object of one event: its fields, the socket as `procsock --jsonl` gives it, and
    what it was before a change."""
    from procsock.render import owner_to_dict, socket_to_dict

    found = {
        "event": event.kind, "time": round(event.time, 6), "source": event.source,
        "owners_known": None if event.socket is None else event.owners,
        "changed": list(event.changed), "text": event.text,
        "identity": None if event.socket is None else event.identity.text,
        "socket": None if event.socket is None else socket_to_dict(event.socket),
    }
    if event.previous is not None:
        found["previous"] = {"state": event.previous.record.state.name,
                             "owners": [owner_to_dict(o) for o in event.previous.owners]}
    return found


def event_line(event) -> str:
    """One event for people: time, event, source, then the socket as the table shows it."""
    import time

    from procsock.render import table_rows
    from procsock.text import escape_text

    stamp = time.strftime("%H:%M:%S", time.localtime(event.time)) + ".%03d" % (event.time % 1 * 1000)
    head = "%s %-6s %-8s" % (stamp, event.kind, event.source)
    if event.socket is None:
        return "%s %s" % (head, escape_text(event.text))
    netid, state, _, _, local, peer, inode, owners = table_rows((event.socket,))[0]
    line = "%s %-5s %-10s %-24s %-24s %8s %s%s" % (
        head, netid, state, local, peer, inode, owners or "-", _OWNERS_NOTE.get(event.owners, ""))
    if event.previous is not None:
        line += " [%s; was %s]" % (",".join(event.changed), table_rows((event.previous,))[0][1])
    return line.rstrip()


class _Stop(BaseException):
    """A signal asked the watch to end (a BaseException, like KeyboardInterrupt: no `except
    Exception` on the way may take it for a failure and go on)."""


def _stop(signum, frame):
    raise _Stop()


def run(args: argparse.Namespace, out) -> int:
    import itertools
    import json
    import signal

    from procsock.watcher import watch_query

    options.long_run()
    registry = options.registry(args)
    query = options.query(args, registry)
    events = watch_query(query, registry, args.backend, args.interval, args.initial, args.duration)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    write = (lambda e: json.dumps(event_dict(e))) if args.jsonl else event_line
    try:
        for event in itertools.islice(events, args.count):
            out.write(write(event) + "\n")
            out.flush()
    except (KeyboardInterrupt, _Stop):  # Ctrl-C or a signal: the end of a watch, not an error
        pass
    finally:
        events.close()
    return 0
