"""What a plugin author is promised: kind names mean one family and protocol, an unknown kind
names the disabled plugins that may serve it, and procsock.plugin exports what the docs name."""

import os
import re

import pytest

import procsock.plugin
from procsock.api import make_query
from procsock.backends import Registry
from procsock.errors import BadArgument
from procsock.model import Family, SocketKind
from stubs import StubBackend, registry_of
from test_plugin_lifecycle import BROKEN, procsock as run

ICMP = SocketKind("icmp", Family.INET, "icmp", ("PING",))
ICMP_AS_V6 = SocketKind("icmp", Family.INET6, "icmp", ("PINGv6",))


@pytest.mark.parametrize("order", ["high first", "low first"])
def test_a_kind_name_another_backend_gives_another_family_makes_the_lower_plugin_broken(order):
    high, low = StubBackend("high", 100, [ICMP]), StubBackend("low", 50, [ICMP_AS_V6])
    registry = registry_of(*((high, low) if order == "high first" else (low, high)))
    assert [b.name for b in registry.backends] == ["high"] and [p.name for p in registry.plugins] == ["high"]
    (failure,) = registry.failures
    assert str(failure) == (
        "plugin low is broken and was skipped: its kind icmp (inet6/icmp) clashes with kind icmp (inet/icmp) "
        "of backend high: a kind name means one family and protocol"
    )
    assert registry.kinds() == (ICMP,)


def test_the_same_kind_served_by_several_backends_is_fine():
    registry = registry_of(StubBackend("high", 100, [ICMP]), StubBackend("low", 50, [SocketKind("icmp", Family.INET,
                                                                                                "icmp")]))
    assert [b.name for b in registry.backends] == ["high", "low"] and registry.failures == ()


def test_an_unknown_kind_names_the_disabled_plugins_that_may_serve_it():
    registry = Registry.from_entry_points(disabled=["pidfd"])
    assert registry.disabled == ("pidfd",) and "pidfd" not in registry.by_name()
    with pytest.raises(BadArgument, match=r"bad kind 'bluetooth' \(accepted: .*\); maybe served by a disabled "
                                          r"plugin: pidfd$"):
        make_query(kind="bluetooth", registry=registry)
    with pytest.raises(BadArgument, match=r"\(accepted: [^;]*\)$"):  # nothing disabled: no maybe
        make_query(kind="bluetooth", registry=Registry.from_entry_points())


@pytest.mark.parametrize("how", ["option", "variable"])
def test_the_cli_names_the_disabled_plugin_and_does_not_import_it(how):
    option = ["--disable-plugin", "broken"] if how == "option" else []
    variable = {"PROCSOCK_DISABLE_PLUGINS": "broken,absent-here"} if how == "variable" else {}
    proc = run("--kind", "bluetooth", *option, PYTHONPATH=BROKEN, **variable)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.endswith("; maybe served by a disabled plugin: broken\n") and "import failed" not in proc.stderr


DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "plugins.md")
README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_every_name_the_docs_say_procsock_plugin_exports_is_there():
    with open(DOCS) as docs:
        text = docs.read()
    (house,) = re.findall(r"A plugin imports from \*\*`procsock.plugin`\*\* only.*?\n\n", text, re.S)
    (reference,) = re.findall(r"## What a backend reads and returns\n.*?\n## ", text, re.S)
    named = set(re.findall(r"`([A-Za-z_][A-Za-z_0-9]*)`", house + reference))
    named |= set(re.findall(r"procsock\.plugin\.([A-Za-z_]+)", open(README).read()))
    classes = {n for n in named if n[0].isupper() and any(c.islower() for c in n)} - {"None"}  # not TCP, None
    assert {"Extended", "Source", "Netns", "Owner", "Collected", "BackendInfo", "SocketRecord"} <= classes
    assert classes <= set(procsock.plugin.__all__), classes - set(procsock.plugin.__all__)
