"""The README's code works as written: the library example and the plugin example."""

import os
import re
import types

import procsock
from procsock.backends import Registry

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
