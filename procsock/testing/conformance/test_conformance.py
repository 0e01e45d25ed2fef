"""Entry for ``pytest --pyargs procsock.testing.conformance [--procsock-backend NAME]``."""

from procsock.testing.conformance import BackendConformance


class TestBackendConformance(BackendConformance):
    """Every check, on the backend named with --procsock-backend (else each backend here)."""
