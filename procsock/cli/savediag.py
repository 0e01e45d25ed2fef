"""`procsock save-diag FILE` (also `--save-diag FILE`): the raw sock_diag replies of every kind and
every network namespace, for a bug report or a later --diag-file."""

from __future__ import annotations

import argparse
import os
import sys

from procsock.cli import options
from procsock.errors import ProcsockError
from procsock.text import escape_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see procsock.__main__)
if TYPE_CHECKING:
    from procsock.resolver import Resolver

NAME = "save-diag"
HELP = "save raw sock_diag replies of every kind to FILE (ss -D format; also --save-diag FILE)"
OPTIONS = {"selection": options.SELECTION_WITHOUT_CONTEXT, "source": None, "plugins": None}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="where to save (replaced whole, never an input)")


def _refuse_inputs(path: str, args: argparse.Namespace) -> None:
    """UsageError when saving to `path` would overwrite what this run reads (--diag-file, or a
    file inside --proc-root), however it is spelled (symlinks, hard links)."""
    real = os.path.realpath(path)
    if args.diag_file is not None:
        same = real == os.path.realpath(args.diag_file)
        if not same and os.path.exists(path) and os.path.exists(args.diag_file):
            same = os.path.samefile(path, args.diag_file)
        if same:
            raise options.UsageError("--save-diag %s would overwrite the --diag-file input" % path)
    if args.proc_root is not None:
        root = os.path.realpath(args.proc_root)
        if os.path.commonpath([real, root]) == root:
            raise options.UsageError("--save-diag %s is inside the --proc-root input %s" % (path, args.proc_root))


def _save_diag(resolver: "Resolver", query, path: str) -> int:
    """Write the raw replies to a temporary file beside `path`, then rename it over `path`: a
    failed save leaves `path` as it was."""
    from procsock.outputs import replacing  # only this command needs it

    with replacing(path) as f:  # a path that cannot be written fails before any dump
        dumps, notes = resolver.raw_dumps(query)
        for note in notes:
            print("procsock: " + escape_text(note), file=sys.stderr)
        if not dumps:
            raise ProcsockError("no backend here can save raw sock_diag replies")
        for _, _, _, data in dumps:
            f.write(data)
    namespaces = len({netns for _, netns, _, _ in dumps})
    kinds = ", ".join(dict.fromkeys(kind.name for kind, _, _, _ in dumps))
    where = " of %d network namespaces" % namespaces if namespaces > 1 else ""
    print("procsock: " + escape_text("saved %s%s to %s" % (kinds, where, path)), file=sys.stderr)
    return 0


def run(args: argparse.Namespace, out) -> int:
    from procsock.resolver import Resolver

    registry, source, query = options.resolving(args)
    _refuse_inputs(args.file, args)
    return _save_diag(Resolver(registry, source, args.backend), query, args.file)
