"""`procsock osquery --socket PATH`: serve procsock's tables to osquery as an extension (extra
`procsock[osquery]`); osqueryd starts it with `--socket` (its --extensions_socket) when autoloading."""

import argparse

from procsock.cli import options
from procsock.errors import ProcsockError

NAME = "osquery"
HELP = "serve the tables procsock_sockets, procsock_unresolved, procsock_backends to osquery (an extension)"
OPTIONS = {"source": None, "plugins": None}
MISSING = "procsock osquery needs the osquery package: pip install 'procsock[osquery]'"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", required=True, metavar="PATH",
                        help="osquery's extensions socket (osqueryd --extensions_socket)")
    # osqueryd passes these to every extension it autoloads: accepted, and --interval honoured
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS",
                        help="how long to wait for osquery's socket (default 3)")
    parser.add_argument("--interval", type=float, default=3.0, metavar="SECONDS",
                        help="seconds between pings of osquery; the extension exits when it is gone (default 3)")
    parser.add_argument("--verbose", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace, out) -> int:
    try:
        from procsock import osquery
    except ImportError:
        raise ProcsockError(MISSING) from None
    if args.timeout <= 0 or args.interval <= 0:
        raise options.UsageError("--timeout and --interval take a positive number of seconds")
    options.long_run()
    osquery.run(args.socket, options.registry(args), options.source(args), args.backend,
                timeout=args.timeout, interval=args.interval)
    return 0
