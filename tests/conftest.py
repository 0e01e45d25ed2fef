"""Fixtures shared by the test modules."""

import tempfile

import pytest

from sockzoo import open_zoo

pytest_plugins = ["pytester"]


@pytest.fixture
def zoo():
    """Real sockets of every everyday kind, held by this process for the test."""
    with tempfile.TemporaryDirectory() as tmpdir:
        opened = open_zoo(tmpdir)
        try:
            yield opened
        finally:
            opened.close()
