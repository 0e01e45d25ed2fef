"""`procsock` as a process: the console script and `python -m procsock`.

A plain listing of this host walks every process's fds; that walk (a forked child, see
procsock.fdscan) starts here, before the imports of the command, which then overlap it. Whether a
run will walk every process is guessed from its words alone (`walks_every_process`); a wrong
guess costs a walk nobody reads, never a wrong answer: the walk is used only by a snapshot of
every process of /proc, moments later.
"""

from __future__ import annotations

import sys

# typing.TYPE_CHECKING without importing typing: `typing` costs about as much as the rest of parsing
# the command line, and neither --help nor the modules it reads need it (annotations are strings).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

# Words after which a run does not walk every process of /proc: other commands, one process's
# fds, another source, help. A long option counts when it is a prefix of one (argparse accepts those).
# (capture walks every process too)
OTHER_COMMANDS = ("backends", "compare", "save-diag", "schema", "diff", "watch", "metrics", "osquery")
OTHER_WALKS = ("--pid", "--proc-root", "--diag-file", "--from", "--help", "--list-backends", "--save-diag")


def walks_every_process(argv: Sequence[str]) -> bool:
    """Whether `procsock ARGV` will most likely walk every process of /proc."""
    for word in argv:
        if word == "--":
            break
        if word in OTHER_COMMANDS:
            return False
        if word.startswith("--"):
            name = word.partition("=")[0]
            if len(name) > 2 and any(option.startswith(name) for option in OTHER_WALKS):
                return False
        elif word.startswith("-") and "h" in word:
            return False
    return True


def main() -> None:
    if walks_every_process(sys.argv[1:]):
        from procsock.fdscan import start_early_walk

        try:
            start_early_walk("/proc")
        except OSError:  # no /proc, no fds or processes left: the command walks, or says why, itself
            pass
    from procsock.cli import command

    command()


if __name__ == "__main__":
    main()
