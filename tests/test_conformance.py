"""The conformance suite (procsock.testing.conformance) on every built-in backend that runs here."""

from procsock.testing.conformance import BackendConformance


class TestBuiltinBackends(BackendConformance):
    """Each check once per backend that can run here and per kind it serves."""
