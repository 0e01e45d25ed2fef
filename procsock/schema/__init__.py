"""The record format: the JSON Schema (draft 2020-12) of `procsock --json` and `--jsonl`.

`document.json` (package data) describes the `--json` document and, in its `$defs`, each part:
a socket, an endpoint per family, an owner, a note, details, and `line` (one `--jsonl` line).
SCHEMA_VERSION is what every document and line carries as `"schema"`: MAJOR.MINOR, the minor
bumped when a field is added, the major when one changes or goes.
"""

from typing import Optional

SCHEMA_VERSION = "1.1"
SCHEMA_MAJOR = SCHEMA_VERSION.split(".")[0]

__all__ = ["SCHEMA_MAJOR", "SCHEMA_VERSION", "schema_document", "schema_text"]


def schema_document(jsonl: bool = False) -> dict:
    """The schema of the `--json` document; with `jsonl`, that of one `--jsonl` line (the same
    `$defs`, rooted at `line`)."""
    import json  # here: render imports this module for SCHEMA_VERSION alone, and the table needs no json
    from importlib import resources

    document = json.loads(resources.files(__name__).joinpath("document.json").read_text(encoding="utf-8"))
    if not jsonl:
        return document
    return {
        "$schema": document["$schema"],
        "$id": document["$id"].replace("document.json", "line.json"),
        "title": "procsock --jsonl line (schema %s)" % SCHEMA_VERSION,
        "$ref": "#/$defs/line",
        "$defs": document["$defs"],
    }


def schema_text(jsonl: bool = False, indent: Optional[int] = 1) -> str:
    """The schema as JSON text (what `procsock schema [--jsonl]` prints)."""
    import json

    return json.dumps(schema_document(jsonl), indent=indent) + "\n"
