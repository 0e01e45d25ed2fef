"""Time procsock against ss, netstat, lsof and psutil on the same live workload, in one run.

    python bench/run.py --sockets 1000,10000,100000 --procs 50 --runs 5 [--netns 5] [--baseline PYTHON]

For each scale: starts bench/workload.py, then times whole processes (start-up included, output
to /dev/null) interleaved A B A B, and in-process library calls (procsock.snapshot() and
psutil.net_connections('all') when psutil is installed). Prints median, min-max spread, peak RSS
and the ratios procsock/ss and snapshot()/psutil, then how each grows from scale to scale. Tools
that are missing are skipped, and said so. procsock's bytecode is compiled first, as `pip install`
does: an editable install run with PYTHONDONTWRITEBYTECODE would compile its sources every run.
With --netns K, K of the processes hold their sockets in namespaces of their own: procsock reads
them, ss, netstat, lsof and psutil see only the bench's own namespace. With --baseline PYTHON, an
interpreter with another procsock installed (an older version's venv) is timed in the same
interleaving, for a before/after in one run.

Before timing each scale it waits for a quiet machine: the CPU time used by everything but the bench
and its workload (the machine's busy ticks in /proc/stat minus our processes' own, /proc/PID/stat)
must stay under 10% of one core for 3 windows of 0.5 s in a row. Past --quiet-timeout it times all
the same and heads that scale's results with a NOT QUIET line; the load others put on the machine
during the timing itself is printed after the results (NOT QUIET too when over the threshold).
"""

import argparse
import compileall
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def procsock_command(python):
    """How a user runs the procsock installed for `python`: the console script beside it, as pip
    installs it, else `python -m procsock` (which also imports runpy: about 9 ms more)."""
    script = os.path.join(os.path.dirname(python), "procsock")
    return [script] if os.access(script, os.X_OK) else [python, "-m", "procsock"]


def whole_process_commands(baseline=None):
    """The commands timed; with `baseline` (another interpreter with procsock installed: an older
    version), its `procsock` and `procsock --json` too, interleaved with the rest."""
    procsock = procsock_command(sys.executable)
    commands = {
        # what every Python command pays before its first import: the floor of the small scales
        "python -c pass": [sys.executable, "-c", "pass"],
        "procsock --help": procsock + ["--help"],
        "procsock": procsock,
        "procsock --json": procsock + ["--json"],
        "procsock --jsonl": procsock + ["--jsonl"],
        "procsock -C": procsock + ["-C"],  # owner context: cgroup, unit, container, pod, user
        # a capture bundle, replaced at each run (issue: at most 2x a snapshot)
        "procsock capture": procsock + ["capture", os.path.join(tempfile.gettempdir(), "procsock-bench.tar.gz")],
    }
    if baseline:
        before = procsock_command(baseline)
        commands["baseline procsock --help"] = before + ["--help"]
        commands["baseline procsock"] = before
        commands["baseline procsock --json"] = before + ["--json"]
    commands.update({
        "procsock --backend netlink": procsock + ["--backend", "netlink"],
        "procsock --backend procnet": procsock + ["--backend", "procnet"],
        "ss -tuaxnp": ["ss", "-tuaxnp"],
        "netstat -tuaxnp": ["netstat", "-tuaxnp"],
        "lsof -nP -i -U": ["lsof", "-nP", "-i", "-U"],
    })
    return {name: argv for name, argv in commands.items() if shutil.which(argv[0])}


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def time_process(argv):
    """Wall time and peak RSS (KiB, from GNU time; None without it) of one run of argv.

    The RSS comes from a small wrapper process, not from our own wait4(): a child forked from
    this Python would report this interpreter's memory as its peak.
    """
    wrapped = [GNU_TIME, "-f", "%M"] + argv if GNU_TIME else argv
    start = time.perf_counter()
    proc = subprocess.run(wrapped, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    lines = proc.stderr.strip().splitlines()
    peak = int(lines[-1]) if GNU_TIME and lines and lines[-1].isdigit() else None
    return elapsed, peak


def library_calls():
    import procsock

    calls = {
        "procsock.snapshot()": procsock.snapshot,
        "procsock.snapshot() + list(.sockets)": lambda: list(procsock.snapshot().sockets),
        "procsock.snapshot(context=True)": lambda: procsock.snapshot(context=True),
        "procsock.snapshot(backend='netlink')": lambda: procsock.snapshot(backend="netlink"),
        "procsock.snapshot(backend='procnet')": lambda: procsock.snapshot(backend="procnet"),
    }
    try:
        import psutil
    except ImportError:
        print("(psutil is not installed: no psutil.net_connections figures)")
    else:
        calls["psutil.net_connections('all')"] = lambda: psutil.net_connections("all")
    return calls


def lookup_calls():
    """One-process lookups (this runner holds a handful of sockets) against a full snapshot."""
    import socket

    import procsock

    listener = socket.create_server(("127.0.0.1", 0))
    held = [listener, socket.create_connection(listener.getsockname()), listener.accept()[0]]
    held += list(socket.socketpair()) + [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)]
    pid = os.getpid()
    calls = {"procsock.snapshot(pid=<%d sockets>)" % len(held): lambda: procsock.snapshot(pid=pid)}
    for backend in ("pidfd", "netlink", "procnet"):
        calls["procsock.snapshot(pid=<%d sockets>, backend=%r)" % (len(held), backend)] = (
            lambda backend=backend: procsock.snapshot(pid=pid, backend=backend)
        )
    calls["procsock.describe_fd(<tcp fd>)"] = lambda: procsock.describe_fd(pid, held[1].fileno())
    return calls, held


def summary(name, times, rss=None):
    med = statistics.median(times)
    line = "%-40s median %8.4f s  spread %.4f-%.4f" % (name, med, min(times), max(times))
    if rss and None not in rss:
        line += "  peak RSS %6.1f MiB" % (max(rss) / 1024)
    return med, line


def measure(runs, baseline=None):
    commands = whole_process_commands(baseline)
    for name in ("netstat -tuaxnp", "lsof -nP -i -U", "ss -tuaxnp"):
        if name not in commands:
            print("(%s is not installed: skipped)" % name.split()[0])
    times = {name: [] for name in commands}
    rss = {name: [] for name in commands}
    for _ in range(runs):  # interleaved, so drift hits every tool alike
        for name, argv in commands.items():
            elapsed, peak = time_process(argv)
            times[name].append(elapsed)
            rss[name].append(peak)
    medians = {}
    print("whole processes (output to /dev/null):")
    for name in commands:
        medians[name], line = summary(name, times[name], rss[name])
        print("  " + line)
    calls = library_calls()
    lookups, held = lookup_calls()
    calls.update(lookups)
    for call in calls.values():  # warm up: plugin loading, imports
        call()
    lib_times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            lib_times[name].append(time.perf_counter() - start)
    print("in-process library calls:")
    for name in calls:
        medians[name], line = summary(name, lib_times[name])
        print("  " + line)
    for sock in held:
        sock.close()
    return medians


def ratio(medians, a, b):
    if a in medians and b in medians:
        print("  %-70s %.3fx" % ("%s / %s" % (a, b), medians[a] / medians[b]))


def over(medians, a, b):
    if a in medians and b in medians:
        print("  %-70s %+.1f ms" % ("%s - %s" % (a, b), (medians[a] - medians[b]) * 1000))


GROWTH = ("procsock", "procsock --json", "ss -tuaxnp", "procsock.snapshot()", "procsock.snapshot() + list(.sockets)",
          "psutil.net_connections('all')")


def growth(by_scale):
    """Each headline tool's median per scale, and how many times it grew from the previous scale."""
    scales = sorted(by_scale)
    print("\ngrowth (median per scale; xN: times the previous scale):")
    for name in GROWTH:
        cells, previous = [], None
        for count in scales:
            median = by_scale[count].get(name)
            if median is None:
                continue
            cells.append("%d: %.4f s%s" % (count, median, "" if previous is None else " (x%.1f)" % (median / previous)))
            previous = median
        if cells:
            print("  %-36s %s" % (name, "   ".join(cells)))


QUIET_LOAD = 0.10  # of one core: what the rest of the machine may use while we time
QUIET_WINDOW = 0.5  # seconds one sample spans
QUIET_WINDOWS = 3  # quiet samples in a row that make a quiet machine
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_ticks() -> int:
    """Clock ticks every CPU spent busy since boot (/proc/stat: user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat", "rb") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return user + nice + system + irq + softirq + steal


def process_ticks(pid: int) -> int:
    """Clock ticks `pid` and its reaped children used (utime+stime+cutime+cstime); 0 once it is gone.

    Children count once reaped: the tools we time (and their own children) end up in our cutime."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # the name may hold spaces and parentheses
    except OSError:
        return 0
    return sum(map(int, fields[11:15]))


def children_of(parent: int) -> list:
    """The pids whose parent is `parent` (from /proc/*/stat: /proc/PID/task/TID/children is optional)."""
    children = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as stat:
                    if int(stat.read().rsplit(b")", 1)[1].split()[1]) == parent:
                        children.append(int(name))
            except (OSError, IndexError, ValueError):
                continue
    return children


def load_sample(ours):
    """(time, the machine's busy ticks, the ticks of our processes `ours`) now."""
    return time.monotonic(), machine_busy_ticks(), sum(process_ticks(pid) for pid in ours)


def others_load(before, after) -> float:
    """The CPU that processes other than ours used between two samples, in cores (0.1 = 10% of one)."""
    seconds = after[0] - before[0]
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0, others) / CLOCK_TICKS / seconds if seconds > 0 else 0.0


def _percents(loads) -> str:
    return ", ".join("%.0f%%" % (100 * load) for load in loads)


def wait_quiet(ours, timeout: float, wait: bool = True) -> str:
    """Wait until others use less than QUIET_LOAD for QUIET_WINDOWS windows in a row, at most
    `timeout` seconds; returns the line that says how it went (NOT QUIET: ... when it never did).
    Without `wait`, one window is measured and said."""
    needed = QUIET_WINDOWS if wait else 1
    start = time.monotonic()
    loads = []
    before = load_sample(ours)
    while True:
        time.sleep(QUIET_WINDOW)
        after = load_sample(ours)
        loads.append(others_load(before, after))
        before = after
        last = loads[-needed:]
        waited = time.monotonic() - start
        if len(last) == needed and max(last) < QUIET_LOAD:
            how = "waited %.1f s" % waited if wait else "not waited for: --no-wait"
            return "quiet: other processes used %s of a core in the last %d window%s of %g s (%s)" % (
                _percents(last), needed, "s" * (needed > 1), QUIET_WINDOW, how)
        if not wait or waited >= timeout:
            how = "gave up after %.0f s" % waited if wait else "not waited for: --no-wait"
            return ("NOT QUIET: other processes used %s of a core in the last windows of %g s (quiet is under %.0f%%;"
                    " %s): do not trust these figures" % (_percents(loads[-QUIET_WINDOWS:]), QUIET_WINDOW,
                                                         100 * QUIET_LOAD, how))


def timing_load_line(before, after) -> str:
    """The line saying what others used while we timed (NOT QUIET when over QUIET_LOAD)."""
    load = others_load(before, after)
    if load < QUIET_LOAD:
        return "quiet while timing: other processes used %.0f%% of a core" % (100 * load)
    return ("NOT QUIET while timing: other processes used %.0f%% of a core (quiet is under %.0f%%): do not trust"
            " these figures" % (100 * load, 100 * QUIET_LOAD))


def add_quiet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet-timeout", type=float, default=120, metavar="SECONDS",
                        help="wait at most this long for a quiet machine before each scale (default 120)")
    parser.add_argument("--no-wait", action="store_true", help="time at once; only say how busy the machine is")


@contextlib.contextmanager
def workload(count: int, procs: int, netns: int = 0):
    """bench/workload.py holding `count` sockets over `procs` processes for the with block: yields
    its READY line and the pids of its processes; stops it (closes its stdin) on the way out."""
    started = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "workload.py"), "--sockets", str(count), "--procs", str(procs),
         "--netns", str(netns)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        ready = started.stdout.readline().strip()
        if not ready.startswith("READY"):
            raise SystemExit("workload did not start: %r" % ready)
        yield ready, [started.pid] + children_of(started.pid)
    finally:
        started.stdin.close()
        started.wait()


def compile_bytecode():
    import procsock
    import procsock_plugins

    for package in (procsock, procsock_plugins):
        compileall.compile_dir(os.path.dirname(package.__file__), quiet=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", default="10000", help="comma-separated scale series (e.g. 1000,10000,100000)")
    parser.add_argument("--procs", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--netns", type=int, default=0, help="processes with a network namespace of their own (root)")
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also time PYTHON's procsock (and --json), interleaved: an older version's venv")
    add_quiet_options(parser)
    args = parser.parse_args()
    print("machine: %d cores, %s, Python %s" % (os.cpu_count(), os.uname().release, sys.version.split()[0]))
    compile_bytecode()
    by_scale = {}
    for count in (int(n) for n in args.sockets.split(",")):
        with workload(count, args.procs, args.netns) as (ready, pids):
            ours = [os.getpid()] + pids
            print("\n=== %s ===" % ready)
            print(wait_quiet(ours, args.quiet_timeout, not args.no_wait))
            before = load_sample(ours)
            medians = measure(args.runs, args.baseline)
            timing_load = timing_load_line(before, load_sample(ours))
        print("ratios (lower is better for procsock):")
        for tool in ("ss -tuaxnp", "netstat -tuaxnp", "lsof -nP -i -U"):
            ratio(medians, "procsock", tool)
        ratio(medians, "python -c pass", "ss -tuaxnp")
        over(medians, "procsock --help", "python -c pass")
        over(medians, "baseline procsock --help", "python -c pass")
        ratio(medians, "procsock --json", "procsock")
        ratio(medians, "procsock --jsonl", "procsock")
        ratio(medians, "procsock -C", "procsock")
        ratio(medians, "procsock capture", "procsock --json")
        ratio(medians, "procsock.snapshot(context=True)", "procsock.snapshot()")
        ratio(medians, "procsock", "baseline procsock")
        ratio(medians, "procsock --json", "baseline procsock --json")
        ratio(medians, "baseline procsock", "ss -tuaxnp")
        ratio(medians, "procsock.snapshot()", "psutil.net_connections('all')")
        ratio(medians, "procsock.snapshot() + list(.sockets)", "psutil.net_connections('all')")
        for name in [n for n in medians if "pid=<" in n or "describe_fd" in n]:
            ratio(medians, name, "procsock.snapshot()")
        print(timing_load)
        by_scale[count] = medians
    if len(by_scale) > 1:
        growth(by_scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
