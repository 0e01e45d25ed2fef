"""The README's code works as written: the library example and the plugin example."""

import os
import re
import types

import pytest

import procsock
from procsock.backends import Registry
from procsock.model import TCP
from sockzoo import ss_output, ss_unix_inodes, usable_backends_serving

README = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()


def block(starting: str) -> str:
    return re.search(r"```python\n(%s.*?)```" % re.escape(starting), README, re.S).group(1)


def test_library_example_runs(capsys):
    exec(block("import os, socket"), {})
    assert "LISTEN" in capsys.readouterr().out


def test_plugin_example_registers_and_answers_its_kind():
    plugin = types.ModuleType("myplugin")
    exec(block("# myplugin.py"), plugin.__dict__)
    registry = Registry()
    registry.register(plugin, "myvsock")
    assert [b.name for b in registry.backends] == ["myvsock"] and registry.failures == ()
    snap = procsock.snapshot(kind="vsock", registry=registry)
    assert snap.answered_by == {"vsock": "myvsock"} and snap.sockets == ()


def test_testing_example_passes_under_pytest(pytester):
    pytester.makepyfile(test_example=block("import os, socket, subprocess, sys"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3 + len(usable_backends_serving(TCP)))


def test_ci_runs_the_readme_test_command():
    command = re.search(r"## Set up and test\n\n```sh\n(.*?)\n```", README, re.S).group(1)
    ci = open(os.path.join(os.path.dirname(__file__), "..", ".ci", "run"), encoding="utf-8").read()
    assert command.replace("python3 ", "python ") in ci


class _Recorder:
    """Collects the options and ini settings a pytest plugin adds, with their help."""

    def __init__(self):
        self.helps = []

    def getgroup(self, name):
        return self

    def addoption(self, *names, **kwargs):
        self.helps.append((names[0] + (" " + kwargs["metavar"] if "metavar" in kwargs else ""), kwargs["help"]))

    def addini(self, name, help, **kwargs):
        self.helps.append((name, help))


def test_readme_lists_each_pytest_option_as_help_says():
    from procsock.testing import plugin

    recorder = _Recorder()
    plugin.pytest_addoption(recorder)
    assert len(recorder.helps) == 8
    for name, help in recorder.helps:
        assert "- `%s`: %s\n" % (name, help) in README, name


SS_SECTION = re.search(r"### Coming from ss/netstat\n(.*?)\n#", README, re.S).group(1)
SS_ROWS = re.findall(r"^\| `((?:ss|netstat) [^`]*)`(?:, `[^`]*`)* \| `(procsock [^`]*)`", SS_SECTION, re.M)


def test_the_ss_table_has_its_rows():
    assert len(SS_ROWS) == SS_SECTION.count("\n| `") == 16


def _inodes(argv, tool):
    """The socket inodes a command selects: procsock's through --json, ss's through -e's ino: (inet) or
    the column after the name (unix: NAME INODE PEER PEER_INODE; -p's column dropped)."""
    import json
    import subprocess
    import sys

    if tool == "procsock":
        out = subprocess.run([sys.executable, "-m", "procsock", *argv, "--json"], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        return {s["inode"] for s in json.loads(out)["sockets"]}
    flags = argv[0].replace("p", "")
    out = ss_output(["-H", flags, *argv[1:], *([] if "x" in flags else ["-e"])], timeout=120)
    if "x" in flags:
        return ss_unix_inodes(out)
    return {int(n) for n in re.findall(r"\bino:(\d+)", out)}


@pytest.mark.parametrize("ss, ours", SS_ROWS, ids=[row[0] for row in SS_ROWS])
def test_each_ss_row_runs_and_selects_what_ss_selects(zoo, ss, ours, tmp_path):
    import shlex
    import shutil
    import subprocess
    import sys

    argv = shlex.split(ours)[1:]
    if "NSNAME" in argv:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            pytest.skip("needs root and ip (iproute2) for a named namespace")
        name = "procsock-readme-%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            argv = [name if word == "NSNAME" else word for word in argv]
            proc = subprocess.run([sys.executable, "-m", "procsock", *argv], capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == 0 and "Netid" in proc.stdout.splitlines()[0], proc.stderr
        finally:
            subprocess.run(["ip", "netns", "del", name], check=True)
        return
    proc = subprocess.run([sys.executable, "-m", "procsock", *argv], capture_output=True, text=True, timeout=120)
    if argv == ["-E"]:
        assert proc.returncode == 2 and "use `procsock watch`" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    if argv == ["-V"]:
        assert proc.stdout == "procsock %s\n" % procsock.__version__
        return
    assert "Netid" in proc.stdout.splitlines()[0]
    ss_argv = shlex.split(ss)[1:]
    if ss.startswith("ss ") and shutil.which("ss") and ss_argv[0] not in ("-tr", "-tiem", "-to"):
        ours_held = {item.inode for item in zoo.expected}
        assert _inodes(argv, "procsock") & ours_held == _inodes(ss_argv, "ss") & ours_held


def test_watch_example_runs():
    exec(block("import os\nimport socket\nimport procsock.testing"), {})
