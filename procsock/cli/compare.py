"""`procsock compare [A B]`: two backends' views of the same moment (procsock.compare)."""

import argparse

from procsock.cli import options
from procsock.render import comparison_lines, comparison_to_dict

NAME = "compare"
HELP = ("compare two backends' views of the same moment: exit 0 when they agree (every difference "
        "explained), 1 when they do not or when there was nothing to compare")
OPTIONS = {
    "selection": ("kind", "pid"),  # what compare_backends honours
    "source": ("proc_root", "diag_file", "max_input_bytes"),
    "output": ("json",),
    "plugins": None,
}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "backends", nargs="*", metavar="BACKEND", help="two backend names (default: per kind, the two best here)"
    )


def run(args: argparse.Namespace, out) -> int:
    if len(args.backends) > 2:
        raise options.UsageError("compare takes at most two backend names")
    import json

    from procsock.api import make_query
    from procsock.compare import compare_backends  # only this command needs it

    names = list(args.backends) + [None] * (2 - len(args.backends))
    registry = options.registry(args)
    query = make_query(kind=args.kind, pid=args.pid, registry=registry)
    result = compare_backends(registry, options.source(args), names[0], names[1], query)
    if args.json:
        json.dump(comparison_to_dict(result), out, indent=1)
        out.write("\n")
    else:
        for line in comparison_lines(result):
            out.write(line + "\n")
    return 0 if result.agree else 1
