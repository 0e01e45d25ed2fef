"""`procsock compare [A B] [--from BUNDLE]`: two backends' views of the same moment, this host's or
a capture bundle's (procsock.compare)."""

import argparse

from procsock.cli import options

NAME = "compare"
HELP = ("compare two backends' views of the same moment: exit 0 when they agree (every difference "
        "explained), 1 when they do not or when there was nothing to compare")
OPTIONS = {
    "selection": ("kind", "pid"),  # what compare_backends honours
    "source": ("proc_root", "diag_file", "max_input_bytes"),
    "saved": ("bundle",),  # a capture bundle's raw parts: its sock_diag against its proc/ tree
    "output": ("json",),
    "plugins": None,
}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "backends", nargs="*", metavar="BACKEND", help="two backend names (default: per kind, the two best here)"
    )
    # the shared --from reads saved output too; compare reads a bundle's raw parts only
    parser._option_string_actions["--from"].help = (
        "compare a capture bundle's raw parts (procsock capture) instead of this host: its sock_diag, read by "
        "netlink, against its proc/ tree, read by procnet"
    )


def run(args: argparse.Namespace, out) -> int:
    if len(args.backends) > 2:
        raise options.UsageError("compare takes at most two backend names")
    import json

    from procsock.api import make_query
    from procsock.compare import compare_backends  # only this command needs it
    from procsock.limits import DEFAULT_MAX_INPUT_BYTES
    from procsock.render import comparison_lines, comparison_to_dict

    names = list(args.backends) + [None] * (2 - len(args.backends))
    registry = options.registry(args)
    query = make_query(kind=args.kind, pid=args.pid, registry=registry)
    if args.bundle is None:
        result = compare_backends(registry, options.source(args), names[0], names[1], query)
    else:
        given = [flag for flag, dest in (("--proc-root", "proc_root"), ("--diag-file", "diag_file"))
                 if getattr(args, dest) is not None]
        if given:
            raise options.UsageError("--from reads a capture bundle: it takes no %s" % given[0])
        limit = args.max_input_bytes or DEFAULT_MAX_INPUT_BYTES
        result = compare_backends(registry, None, names[0], names[1], query, bundle=args.bundle, max_input_bytes=limit)
    if args.json:
        json.dump(comparison_to_dict(result), out, indent=1)
        out.write("\n")
    else:
        for line in comparison_lines(result):
            out.write(line + "\n")
    return 0 if result.agree else 1
