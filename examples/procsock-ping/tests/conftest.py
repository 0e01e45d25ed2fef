"""Ping sockets need net.ipv4.ping_group_range to cover the process's group; this fixture widens
it for this process's gid during a test (root only) and puts the old range back afterwards."""

import os

import pytest

RANGE = "/proc/sys/net/ipv4/ping_group_range"


def ping_allowed_here() -> bool:
    low, high = map(int, open(RANGE).read().split())
    return low <= os.getgid() <= high


@pytest.fixture
def ping_sockets():
    """Ping sockets may be opened during the test (skips when that cannot be arranged)."""
    if ping_allowed_here():
        yield
        return
    if os.geteuid() != 0:
        pytest.skip("needs root (to let this group open ping sockets via %s)" % RANGE)
    with open(RANGE) as f:
        old = f.read()
    with open(RANGE, "w") as f:
        f.write("%d %d" % (os.getgid(), os.getgid()))
    try:
        yield
    finally:
        with open(RANGE, "w") as f:
            f.write(old)
