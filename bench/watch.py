"""What `procsock watch` costs while sockets are held: CPU (% of one core, its fd walks' children
included) and resident memory of the watch process, sampled over a run, with bench/workload.py
holding the sockets.

    python3 bench/watch.py --sockets 10000 --procs 50 --seconds 600 [--interval 1] [--churn 0]

The workload is started (and ended) by this script; `--churn N` adds a churner opening and closing
N sockets a second (tests/churner.py). Prints one line per sample (elapsed, CPU% since the last
sample, RSS) and a summary: mean CPU% over the run after the first sample (the baseline snapshot
is a one-off), RSS at the first and last sample and its maximum.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import run  # bench/run.py: how the installed procsock is run

HERE = os.path.dirname(os.path.abspath(__file__))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and of its children it has waited for (fields 14 to 17 of
    /proc/PID/stat, after the command name): the watch's own CPU and its forked fd walks'."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return sum(int(field) for field in fields[11:15]) / TICKS


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid, "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--procs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--interval", type=float, default=1.0, help="the watch's --interval")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--churn", type=float, default=0.0, help="sockets a second a churner opens and closes")
    args = parser.parse_args()

    workload = subprocess.Popen([sys.executable, os.path.join(HERE, "workload.py"), "--sockets", str(args.sockets),
                                 "--procs", str(args.procs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
    churner = watch = None
    try:
        print(workload.stdout.readline().strip(), flush=True)
        if args.churn:
            log = tempfile.NamedTemporaryFile(prefix="procsock-bench-churn-", suffix=".log")
            churner = subprocess.Popen([sys.executable, os.path.join(HERE, "..", "tests", "churner.py"), log.name,
                                        str(args.churn)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            churner.stdout.readline()
            churner.stdin.write("W 1e300\n")
            churner.stdin.flush()
        watch = subprocess.Popen(run.procsock_command(sys.executable) + ["watch", "--jsonl", "--interval",
                                  str(args.interval)], stdout=subprocess.DEVNULL)
        start = time.monotonic()
        samples = []
        last_cpu, last_time = cpu_seconds(watch.pid), start
        while time.monotonic() - start < args.seconds:
            time.sleep(args.sample)
            now, cpu = time.monotonic(), cpu_seconds(watch.pid)
            samples.append((now - start, 100.0 * (cpu - last_cpu) / (now - last_time), rss_kib(watch.pid)))
            last_cpu, last_time = cpu, now
            print("  %6.0f s  cpu %5.1f%%  rss %7d KiB" % samples[-1], flush=True)
        steady = samples[1:] or samples
        print("watch --interval %g at %d sockets%s over %.0f s: cpu mean %.1f%% of one core (max %.1f%%), "
              "rss first %d KiB, last %d KiB, max %d KiB" % (
                  args.interval, args.sockets, ", churn %g/s" % args.churn if args.churn else "",
                  samples[-1][0], sum(s[1] for s in steady) / len(steady), max(s[1] for s in steady),
                  samples[0][2], samples[-1][2], max(s[2] for s in samples)))
    finally:
        for proc in (watch, churner, workload):
            if proc is None:
                continue
            if proc is watch:
                proc.terminate()
            else:
                proc.stdin.close()
            proc.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
