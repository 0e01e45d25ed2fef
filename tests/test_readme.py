"""The README's code works as written: the library example and the plugin example."""

import os
import re
import types

import procsock
from procsock.backends import Registry
from procsock.model import TCP
from sockzoo import usable_backends_serving

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


def test_watch_example_runs():
    exec(block("import os\nimport socket\nimport procsock.testing"), {})
