"""iproute2's own test of ss's filter language (tests/fixtures/ss, see ORIGIN.md) run through
`procsock --diag-file ss1.dump -Htna FILTER`: the same rows selected.

ss reads the file's first run only (IPv4, up to NLMSG_DONE); procsock reads the IPv6 run too, and
selects there what the kernel's inet_diag bytecode would (an IPv4 prefix never matches a plain IPv6
address; ss's file reader compares address bits without the family, so `src 0.0.0.0` matches `[::]`
there)."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "ss")
DUMP = os.path.join(HERE, "ss1.dump")
SUITE = open(os.path.join(HERE, "ssfilter.t"), encoding="utf-8").read()
CASES = re.findall(r'^ts_ss "\$0" "([^"]*)" (.*)\ntest_on "(.*)"$', SUITE, re.M)
V4_ROWS = {
    ("LISTEN", "0.0.0.0:22", "0.0.0.0:*"), ("ESTAB", "10.0.0.1:22", "10.0.0.1:36266"),
    ("ESTAB", "10.0.0.1:36266", "10.0.0.1:22"), ("ESTAB", "10.0.0.1:22", "10.0.0.2:50312"),
}
# what each case selects of the IPv6 run (ss's own answer on that run, by the kernel's family rule)
V6_SELECTED = {
    "Match dport = 22": {("ESTAB", "[fec0:42::24]:40520", "[fec0:42::1]:22")},
    "Match dport 22": {("ESTAB", "[fec0:42::24]:40520", "[fec0:42::1]:22")},
    "Match (dport)": {("ESTAB", "[fec0:42::24]:40520", "[fec0:42::1]:22")},
}


def expected_row(line):
    state, _, _, local, peer = line.replace("\\*", "*").split()
    return state, local, peer


def procsock_rows(argv):
    proc = subprocess.run([sys.executable, "-m", "procsock", "--diag-file", DUMP, *argv],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [tuple(line.split()[i] for i in (1, 4, 5)) for line in proc.stdout.splitlines()]


def test_every_case_of_the_suite_is_read():
    assert len(CASES) == SUITE.count("ts_ss ") == 12


@pytest.mark.parametrize("name, args, line", CASES, ids=[case[0] for case in CASES])
def test_selects_the_rows_ss_selects(name, args, line):
    argv = shlex.split(args)
    assert argv[0] == "-Htna"
    rows = procsock_rows(argv)
    assert len(rows) == len(set(rows))
    assert {row for row in rows if row in V4_ROWS} == {expected_row(line)}
    assert {row for row in rows if row not in V4_ROWS} == V6_SELECTED.get(name, set())


def runs_of_the_dump(tmp_path):
    """The dump cut after each NLMSG_DONE: files ss reads whole."""
    data, paths, start, offset = open(DUMP, "rb").read(), [], 0, 0
    while offset + 16 <= len(data):
        length, kind = int.from_bytes(data[offset:offset + 4], sys.byteorder), int.from_bytes(
            data[offset + 4:offset + 6], sys.byteorder)
        offset += (length + 3) & ~3
        if kind == 3:  # NLMSG_DONE
            paths.append(tmp_path / ("run%d.dump" % len(paths)))
            paths[-1].write_bytes(data[start:offset])
            start = offset
    return paths


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")
@pytest.mark.parametrize("name, args, line", CASES, ids=[case[0] for case in CASES])
def test_ss_itself_agrees_on_each_run_of_the_dump(tmp_path, name, args, line):
    argv = shlex.split(args)
    v4, v6 = runs_of_the_dump(tmp_path)
    selected = set()
    for path in (v4, v6):
        out = subprocess.run(["ss", *argv], env={**os.environ, "TCPDIAG_FILE": str(path)},
                             capture_output=True, text=True, timeout=60, check=True).stdout
        selected |= {tuple(line.split()[i] for i in (0, 3, 4)) for line in out.splitlines()}
    ipv4_condition = re.search(r"\b(src|dst) (= )?\d", args) is not None
    if ipv4_condition:  # ss's file reader, not the kernel, matches IPv4 prefixes against IPv6 bits
        selected = {row for row in selected if row in V4_ROWS}
    assert set(procsock_rows(argv)) == selected
