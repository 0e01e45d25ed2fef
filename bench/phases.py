"""Where one `procsock` run spends its time, phase by phase, at one scale.

    python bench/phases.py --sockets 10000 --procs 50 --runs 5 [--netns K] [--quiet-timeout S | --no-wait]

Starts bench/workload.py and waits for a quiet machine as bench/run.py does (its helpers), then
times, interleaved, whole processes (a bare interpreter, `import procsock`, `import procsock.cli`,
`procsock --help`, and the whole `procsock` run for reference) and, in a fresh interpreter each run
(cold, as a command runs; after `import procsock.cli`), the steps of a run one after the other:
plugin loading, the sock_diag receive of each kind (its wire bytes), decoding each, the fd walk,
the join, rendering the table, JSON and JSONL, writing them to /dev/null. Prints the medians in
ms. The steps run one after the other here: a full snapshot walks the fds in a forked child,
beside the receive and decode, so the whole run costs less than their sum. Every step after
plugin loading runs with the cyclic collector paused, as the `procsock` command runs.

Every call into procsock is in the table of small functions below (PHASES): adapt them there
when the internals change.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import run  # bench/run.py: the workload, the quiet check, timing a process

# --- Every call into procsock: one small function a phase ----------------------------------------
# Each takes the pass's state (a dict: what earlier phases made) and returns what it handled (bytes,
# records, lines) for the last column, or None. Per-kind phases take the kind too.


def load_plugins(state):
    from procsock.backends import Registry

    state["registry"] = Registry.from_entry_points()


def open_diag_socket(state):
    from procsock_plugins.netlink import transport

    state["sock"] = transport.open_diag_socket()


def netlink_kinds(state):
    """The kinds the netlink backend dumps (not timed)."""
    return state["registry"].backend("netlink").info.kinds


def receive(state, kind):
    from procsock_plugins.netlink import codec, transport

    seq = len(state) + 1  # any number: this socket carries only this pass's requests
    request = codec.request_for(kind, seq)
    chunks, _ = transport.exchange(state["sock"], request, seq)
    state["wire", kind] = seq, b"".join(chunks)
    return "%d bytes" % len(state["wire", kind][1])


def decode(state, kind):
    from procsock_plugins.netlink import codec

    seq, raw = state["wire", kind]
    state["decoded", kind] = codec.decode(raw, kind=kind, seq=seq, port=state["sock"].getsockname()[0])
    return "%d rows" % len(state["decoded", kind].records)


def fd_walk(state):
    from procsock.fdscan import scan_fds

    state["scan"] = scan_fds("/proc", threads=True)
    return "%d socket inodes" % len(state["scan"].owners)


def make_resolver(state):
    from procsock.model import Source
    from procsock.resolver import Resolver

    state["resolver"] = Resolver(state["registry"], Source.live())


def join(state):
    """The resolver's join of the decoded tables with the walk (with --netns: it reads the other
    namespaces here too), as a full snapshot does once the walk is in."""
    from procsock.model import Collected, Query
    from procsock.resolve.collect import Answer

    resolver, kinds = state["resolver"], netlink_kinds(state)
    early = {}
    for kind in kinds:
        decoded = state["decoded", kind]
        early[kind] = Answer(kind, resolver._own_netns, None, "netlink", Collected(decoded.records, decoded.skipped))
    state["snapshot"] = resolver._resolve(Query(), kinds, state["scan"], None, early)
    return "%d sockets" % len(state["snapshot"].sockets)


def materialise(state):
    state["sockets"] = list(state["snapshot"].sockets)


def render_table(state):
    from procsock.render import table_lines

    from procsock.model import Row
    from procsock.render import entries

    snap = state["snapshot"]
    several = len({row[Row.NETNS] for row, _, _ in entries(snap.sockets)}) > 1
    lines = list(table_lines(snap.sockets, netns=several, netns_names=snap.netns_names))
    state["table"] = "\n".join(lines) + "\n"
    return "%d lines" % len(lines)


def render_json(state):
    from procsock.render import json_document

    state["json"] = "".join(json_document(state["snapshot"]))
    return "%d bytes" % len(state["json"])


def render_jsonl(state):
    from procsock.render import json_lines

    state["jsonl"] = "".join(json_lines(state["snapshot"]))
    return "%d bytes" % len(state["jsonl"])


def write(state, key):
    with open(os.devnull, "w") as out:
        out.write(state[key])


# (name, function, per kind, with the cyclic collector paused); "name: kind" rows of one name add up
PHASES = (
    ("plugin loading (Registry.from_entry_points)", load_plugins, False, False),
    ("open a sock_diag socket", open_diag_socket, False, True),
    ("netlink receive", receive, True, True),
    ("decode", decode, True, True),
    ("fd walk (in-process here)", fd_walk, False, True),
    ("resolver set-up", make_resolver, False, True),
    ("join / resolve", join, False, True),
    ("list(.sockets)", materialise, False, True),
    ("table rendering", render_table, False, True),
    ("JSON rendering", render_json, False, True),
    ("JSONL rendering", render_jsonl, False, True),
    ("write the table to /dev/null", lambda state: write(state, "table"), False, True),
    ("write the JSON to /dev/null", lambda state: write(state, "json"), False, True),
    ("write the JSONL to /dev/null", lambda state: write(state, "jsonl"), False, True),
)

# (name, argv, whether argv follows the installed procsock command rather than the interpreter)
WHOLE_PROCESSES = (
    ("bare interpreter", ["-c", "pass"], False),
    ("import procsock", ["-c", "import procsock"], False),
    ("import procsock.cli", ["-c", "import procsock.cli"], False),
    ("procsock --help", ["--help"], True),
    ("procsock (the whole run, for reference)", [], True),
)

# -------------------------------------------------------------------------------------------------


def _timed(function, *args, paused=False):
    if paused:
        gc.disable()
    try:
        start = time.perf_counter()
        what = function(*args)
        return time.perf_counter() - start, what
    finally:
        gc.enable()


def one_pass():
    """Run every phase once in this (fresh) interpreter; print [name, seconds, what] rows as JSON."""
    import procsock.cli  # noqa: F401  (timed as a whole process; the phases start after it)

    state, rows = {}, []
    for name, function, per_kind, paused in PHASES:
        for kind in netlink_kinds(state) if per_kind else (None,):
            args = (state, kind) if per_kind else (state,)
            seconds, what = _timed(function, *args, paused=paused)
            rows.append(("%s: %s" % (name, kind.name) if per_kind else name, seconds, what))
    state["sock"].close()
    json.dump(rows, sys.stdout)
    return 0


def _totals(rows):
    """A run's rows, each per-kind phase followed by its sum over the kinds ("name: all kinds"), and
    the sum of them all."""
    out = []
    for index, (name, seconds, what) in enumerate(rows):
        out.append((name, seconds, what))
        group = name.split(": ")[0]
        if ": " in name and (index + 1 == len(rows) or not rows[index + 1][0].startswith(group + ": ")):
            kinds = [row[1] for row in rows if row[0].startswith(group + ": ")]
            out.append((group + ": all kinds", sum(kinds), None))
    out.append(("sum of the in-process phases", sum(seconds for _, seconds, _ in rows), None))
    return out


def _line(name, times, what=None):
    return "  %-48s %9.2f  %8.2f-%-8.2f %s" % (
        name, 1000 * statistics.median(times), 1000 * min(times), 1000 * max(times), what or "")


def measure(runs):
    whole = {name: [] for name, _, _ in WHOLE_PROCESSES}
    passes = []
    for _ in range(runs):  # interleaved, so drift hits every phase alike
        for name, argv, of_procsock in WHOLE_PROCESSES:
            command = run.procsock_command(sys.executable) if of_procsock else [sys.executable]
            whole[name].append(run.time_process(command + argv)[0])
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--one-pass"], stdout=subprocess.PIPE)
        if done.returncode != 0:  # its own error is on stderr above
            raise SystemExit("phases: the in-process pass failed (exit %d)" % done.returncode)
        passes.append(_totals(json.loads(done.stdout)))
    print("%-50s %9s  %-17s %s" % ("phase", "median ms", "spread ms", "handled"))
    print("whole processes:")
    for name, _, _ in WHOLE_PROCESSES:
        print(_line(name, whole[name]))
    print("in-process, a fresh interpreter each run, after import procsock.cli:")
    for index, (name, _, what) in enumerate(passes[0]):
        print(_line(name, [rows[index][1] for rows in passes], what))


def main() -> int:
    if sys.argv[1:] == ["--one-pass"]:
        return one_pass()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--procs", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--netns", type=int, default=0, help="processes with a network namespace of their own (root)")
    run.add_quiet_options(parser)
    args = parser.parse_args()
    print("machine: %d cores, %s, Python %s" % (os.cpu_count(), os.uname().release, sys.version.split()[0]))
    run.compile_bytecode()
    with run.workload(args.sockets, args.procs, args.netns) as (ready, pids):
        ours = [os.getpid()] + pids
        print("\n=== %s ===" % ready)
        print(run.wait_quiet(ours, args.quiet_timeout, not args.no_wait))
        before = run.load_sample(ours)
        measure(args.runs)
        print(run.timing_load_line(before, run.load_sample(ours)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
