"""bench/run.py and bench/phases.py run end to end at a tiny scale and print their tables; the
quiet check counts the CPU of processes that are not ours. No timing is asserted: speed is
measured by bench/ only.

The end-to-end runs happen in private pid and network namespaces (root), so that the host's own
processes and sockets, however many, neither slow them down nor show in their tables.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
TINY = ["--sockets", "50", "--procs", "2", "--runs", "1", "--no-wait"]
NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (private pid and network namespaces keep the host out of the run)"
)


def _bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(BENCH, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _isolated(script, *args):
    """`script` run in fresh pid, mount (/proc) and network namespaces with loopback up: every
    process it starts ends with it."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs unshare and ip")
    command = [sys.executable, os.path.join(BENCH, script)] + list(args)
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
        + command,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,  # a guard against a hang only
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@NEEDS_ROOT
def test_run_prints_whole_process_library_and_ratio_rows_with_a_load_line():
    out = _isolated("run.py", *TINY, "--baseline", sys.executable)
    lines = out.splitlines()
    ready = lines.index("=== READY 50 sockets in 2 processes ===")
    assert re.match(r"(quiet|NOT QUIET): other processes used \d+% of a core", lines[ready + 1])
    assert lines[ready + 2] == "whole processes (output to /dev/null):"
    for row in ("python -c pass", "procsock --help", "procsock", "procsock --json", "procsock --jsonl",
                "baseline procsock", "procsock.snapshot()", "procsock.snapshot() + list(.sockets)"):
        assert re.search(r"^  %s +median +\d+\.\d+ s" % re.escape(row), out, re.M), row
    for ratio in ("procsock --json / procsock", "procsock --jsonl / procsock", "procsock / baseline procsock",
                  "procsock --json / baseline procsock --json"):
        assert re.search(r"^  %s +\d+\.\d+x$" % re.escape(ratio), out, re.M), ratio
    for difference in ("procsock --help - python -c pass", "baseline procsock --help - python -c pass"):
        assert re.search(r"^  %s +[-+]\d+\.\d ms$" % re.escape(difference), out, re.M), difference
    assert re.search(r"^(quiet|NOT QUIET) while timing: other processes used \d+% of a core", out, re.M)


@NEEDS_ROOT
def test_phases_prints_every_phase_and_sees_the_workload():
    out = _isolated("phases.py", *TINY)
    for row in ("bare interpreter", "import procsock", "import procsock.cli", "procsock --help",
                "plugin loading", "netlink receive: tcp", "netlink receive: unix", "netlink receive: all kinds",
                "decode: tcp", "decode: all kinds", "fd walk", "join / resolve", "table rendering",
                "JSON rendering", "JSONL rendering", "write the table to /dev/null", "sum of the in-process phases"):
        assert re.search(r"^  %s.*? +\d+\.\d\d +\d+\.\d\d-\d+\.\d\d" % re.escape(row), out, re.M), row
    walked = re.search(r"^  fd walk.* (\d+) socket inodes$", out, re.M)
    assert walked and int(walked.group(1)) >= 50  # the workload's sockets, and only ours: a private pid ns


def test_others_load_is_the_machine_s_busy_time_less_ours():
    others_load = _bench_run().others_load
    ticks = _bench_run().CLOCK_TICKS
    # 2 s: the machine was busy 3 cores' worth of ticks, ours 1 core's worth: others used 2 cores
    assert others_load((10.0, 1000, 50), (12.0, 1000 + 6 * ticks, 50 + 2 * ticks)) == pytest.approx(2.0)
    assert others_load((10.0, 1000, 50), (12.0, 1000, 50 + ticks)) == 0.0  # never below nothing


def test_a_busy_process_that_is_not_ours_makes_the_machine_not_quiet():
    run = _bench_run()
    busy = subprocess.Popen(["sh", "-c", "while :; do :; done"])
    try:
        line = run.wait_quiet([os.getpid()], timeout=0, wait=False)
    finally:
        busy.kill()
        busy.wait()
    # the busy loop is a child of ours, but not reaped yet: only the machine's ticks have it
    assert line.startswith("NOT QUIET: other processes used "), line
    assert "do not trust these figures" in line
