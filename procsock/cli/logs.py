"""Where the command's log records go: stderr, as `procsock: ...` lines escaped like all output.

procsock itself logs only debug detail (`procsock.log`), so `logging`, which costs start-up, is
configured for --debug alone, or when a plugin imported it: then a plugin's warnings still reach
stderr escaped, not raw through logging's last resort.
"""

import logging

from procsock.text import escape_text


class _EscapingFormatter(logging.Formatter):
    """Log lines (--debug tracebacks quote plugins' messages) escaped line by line like all output."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(escape_text(line) for line in super().format(record).split("\n"))


def to_stderr(debug: bool) -> None:
    """Log to stderr, debug detail too with `debug`, unless the process configured logging already."""
    handler = logging.StreamHandler()
    handler.setFormatter(_EscapingFormatter("procsock: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.DEBUG if debug else logging.WARNING)
