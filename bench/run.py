"""Time procsock against ss, netstat, lsof and psutil on the same live workload, in one run.

    python bench/run.py --sockets 1000,10000,100000 --procs 50 --runs 5 [--netns 5]

For each scale: starts bench/workload.py, then times whole processes (start-up included, output
to /dev/null) interleaved A B A B, and in-process library calls (procsock.snapshot() and
psutil.net_connections('all') when psutil is installed). Prints median, min-max spread, peak RSS
and the ratios procsock/ss and snapshot()/psutil, then how each grows from scale to scale. Tools
that are missing are skipped, and said so. procsock's bytecode is compiled first, as `pip install`
does: an editable install run with PYTHONDONTWRITEBYTECODE would compile its sources every run.
With --netns K, K of the processes hold their sockets in namespaces of their own: procsock reads
them, ss, netstat, lsof and psutil see only the bench's own namespace.
"""

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def whole_process_commands():
    procsock = [sys.executable, "-m", "procsock"]
    commands = {
        "procsock": procsock,
        "procsock --backend netlink": procsock + ["--backend", "netlink"],
        "procsock --backend procnet": procsock + ["--backend", "procnet"],
        "ss -tuaxnp": ["ss", "-tuaxnp"],
        "netstat -tuaxnp": ["netstat", "-tuaxnp"],
        "lsof -nP -i -U": ["lsof", "-nP", "-i", "-U"],
    }
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


def measure(runs):
    commands = whole_process_commands()
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


GROWTH = ("procsock", "ss -tuaxnp", "procsock.snapshot()", "psutil.net_connections('all')")


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
        print("  %-32s %s" % (name, "   ".join(cells)))


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
    args = parser.parse_args()
    print("machine: %d cores, %s, Python %s" % (os.cpu_count(), os.uname().release, sys.version.split()[0]))
    compile_bytecode()
    by_scale = {}
    for count in (int(n) for n in args.sockets.split(",")):
        workload = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "workload.py"), "--sockets", str(count), "--procs", str(args.procs),
             "--netns", str(args.netns)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        ready = workload.stdout.readline().strip()
        if not ready.startswith("READY"):
            print("workload did not start: %r" % ready)
            return 1
        print("\n=== %s ===" % ready)
        try:
            medians = measure(args.runs)
        finally:
            workload.stdin.close()
            workload.wait()
        print("ratios (lower is better for procsock):")
        for tool in ("ss -tuaxnp", "netstat -tuaxnp", "lsof -nP -i -U"):
            ratio(medians, "procsock", tool)
        ratio(medians, "procsock.snapshot()", "psutil.net_connections('all')")
        for name in [n for n in medians if "pid=<" in n or "describe_fd" in n]:
            ratio(medians, name, "procsock.snapshot()")
        by_scale[count] = medians
    if len(by_scale) > 1:
        growth(by_scale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
