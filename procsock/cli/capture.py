"""`procsock capture OUT`: this host's sockets, and what procsock read to find them, in one
compressed bundle (.tar.gz) for later: `procsock --from OUT`, `procsock diff`, or --proc-root and
--diag-file on its unpacked parts (procsock.capture says what it holds)."""

import argparse
import os
import sys

from procsock.cli import options
from procsock.text import escape_text

NAME = "capture"
HELP = "save this host's sockets, and what procsock read to find them, to a .tar.gz bundle"
OPTIONS = {"output": ("details",), "plugins": None}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="the bundle to write (.tar.gz; replaced whole)")


def run(args: argparse.Namespace, out) -> int:
    from procsock.capture import capture
    from procsock.model import Query

    if os.path.isdir(args.out):
        raise options.UsageError("capture writes one file: %s is a directory" % args.out)
    done = capture(args.out, Query(details=args.details), options.registry(args))
    namespaces = len({s.record.netns for s in done.snapshot.sockets})
    print("procsock: " + escape_text("captured %d sockets of %d network namespace%s to %s (%d bytes)" % (
        len(done.snapshot.sockets), namespaces, "" if namespaces == 1 else "s", args.out, done.size)), file=sys.stderr)
    return 0
