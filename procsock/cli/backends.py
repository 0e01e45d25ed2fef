"""`procsock backends` (also `--list-backends`): every backend and whether it can read the source."""

from __future__ import annotations

import argparse

from procsock.cli import options
from procsock.text import escape_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see procsock.__main__)
if TYPE_CHECKING:
    from typing import List

    from procsock.backends import Registry
    from procsock.model import Source

NAME = "backends"
HELP = "every backend, its priority, kinds, origin and whether it can run here (also --list-backends)"
OPTIONS = {"source": ("proc_root", "diag_file", "max_input_bytes"), "plugins": None}


def arguments(parser: argparse.ArgumentParser) -> None:
    """None of its own: the source options say where backends would read."""


def backend_lines(registry: "Registry", source: "Source") -> List[str]:
    """One line per backend (name, priority, whether it can read `source`, kinds, families, origin)."""
    lines = []
    for backend in registry.backends:
        reason = backend.unavailable(source)
        status = "ready" if reason is None else "unavailable: " + reason
        dist = "%s %s" % (backend.distribution, backend.version) if backend.distribution else "-"
        kinds = ",".join(k.name for k in backend.info.kinds)
        families = ",".join(dict.fromkeys(k.family.name.lower() for k in backend.info.kinds))
        lines.append(
            "%-10s priority=%-4d %s [%s] (%s) plugin %s from %s"
            % (backend.name, backend.info.priority, status, kinds, families, backend.plugin_name, dist)
        )
    for failure in registry.failures:
        lines.append("%-10s broken: %s (from %s)" % (failure.name, failure.reason, failure.distribution or "-"))
    return [escape_text(line) for line in lines]  # every word of it is a plugin's


def run(args: argparse.Namespace, out) -> int:
    for line in backend_lines(options.registry(args), options.source(args)):
        out.write(line + "\n")
    return 0
