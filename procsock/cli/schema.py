"""`procsock schema [--jsonl]`: the JSON Schema of the record format (procsock.schema)."""

import argparse

NAME = "schema"
HELP = "print the JSON Schema of procsock's JSON document (with --jsonl: of one line)"
OPTIONS = {"output": ("jsonl",)}


def arguments(parser: argparse.ArgumentParser) -> None:
    """None of its own: --jsonl picks the line's schema."""


def run(args: argparse.Namespace, out) -> int:
    from procsock.schema import schema_text

    out.write(schema_text(jsonl=args.jsonl))
    return 0
