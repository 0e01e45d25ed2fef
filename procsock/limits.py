"""Bounds on what procsock reads from untrusted input, in a module of their own so that parsing
the command line (and --help) states them without importing the model."""

# The default bound on one captured or saved file: far above any real socket table.
DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024
