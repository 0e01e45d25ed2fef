"""What the leak check (--procsock-leaks) costs a clean test: a suite of 50 tests, each opening and
closing a socket, run with and without the check, with and without a million live objects.

Prints, per test, the time of the whole test protocol (setup, call, teardown) and of the check
itself (baseline + confirmation), medians over --runs runs; and, for reference, what one full
gc.collect() costs with that many objects (the old check did two per test).

    python3 bench/leak_overhead.py --runs 5
"""

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

CONFTEST = """
import os, time
import pytest
from procsock.testing import leaks

LIVE = [[i] for i in range(int(os.environ["LIVE_OBJECTS"]))]  # tracked by the garbage collector
SPENT = {"check": 0.0, "protocol": 0.0, "tests": 0}
CHECKS = []


def timed(function):
    def run(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            CHECKS.append(time.perf_counter() - start)
            SPENT["check"] += CHECKS[-1]
    return run


leaks.baseline, leaks.find_leaks = timed(leaks.baseline), timed(leaks.find_leaks)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        SPENT["protocol"] += time.perf_counter() - start
        SPENT["tests"] += 1


def pytest_sessionfinish(session):
    count = SPENT["tests"]
    median = sorted(CHECKS)[len(CHECKS) // 2] * 2 if CHECKS else 0.0  # two calls per test
    print("\\nRESULT %d %.6f %.6f %.6f" % (count, SPENT["protocol"] / count, SPENT["check"] / count, median))
"""

TESTS = """
import socket
import pytest

@pytest.mark.parametrize("n", range(50))
def test_clean(n):
    socket.socket().close()
"""


def run(directory: str, live: int, leaks: bool):
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    out = subprocess.run(
        command + (["--procsock-leaks"] if leaks else []), cwd=directory, capture_output=True, text=True,
        env=dict(os.environ, LIVE_OBJECTS=str(live)), check=False,
    ).stdout
    line = [row for row in out.splitlines() if row.startswith("RESULT")]
    if not line:
        raise SystemExit("pytest failed:\n" + out)
    _, count, protocol, check, median = line[0].split()
    assert int(count) == 50, out
    return float(protocol), float(check), float(median)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "conftest.py"), "w") as f:
            f.write(textwrap.dedent(CONFTEST))
        with open(os.path.join(directory, "test_clean.py"), "w") as f:
            f.write(textwrap.dedent(TESTS))
        for live in (0, 1_000_000):
            for leaks in (False, True):
                got = [run(directory, live, leaks) for _ in range(args.runs)]
                protocol, check, median = (statistics.median(run[i] for run in got) * 1000 for i in range(3))
                print("%9d live objects, leak check %-3s: %.3f ms per test (protocol); the check: %.3f ms mean, "
                      "%.3f ms median" % (live, "on" if leaks else "off", protocol, check, median))
    live_objects = [[i] for i in range(1_000_000)]
    start = time.perf_counter()
    gc.collect()
    elapsed = (time.perf_counter() - start) * 1000
    print("one full gc.collect() with %d live objects: %.1f ms" % (len(live_objects), elapsed))


if __name__ == "__main__":
    main()
