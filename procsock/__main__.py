"""`python -m procsock` runs the command."""

from procsock.cli import command

command()
