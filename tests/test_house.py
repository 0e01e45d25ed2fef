"""The house's promises: two public faces (users, plugin authors), a lazy `import procsock`,
plugins that are not backends, and errors that cross process boundaries."""

import ast
import os
import pickle
import subprocess
import sys

import pytest

import procsock
import procsock.plugin
from procsock import errors, hookimpl
from procsock.backends import Registry

from stubs import StubBackend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_SOURCES = [
    os.path.join(where, name)
    for top in ("plugins", os.path.join("examples", "procsock-ping", "procsock_ping"))
    for where, _, names in os.walk(os.path.join(ROOT, top))
    for name in names
    if name.endswith(".py")
]


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: os.path.relpath(p, ROOT))
def test_plugins_import_only_the_plugin_face_of_procsock(path):
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), path)
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    core = {name for name in imported if name == "procsock" or name.startswith("procsock.")}
    assert core <= {"procsock.plugin"}, "%s imports %s" % (path, sorted(core))
    # nor another plugin: a plugin package reuses only its own modules
    parts = os.path.relpath(path, ROOT).split(os.sep)
    own = "procsock_plugins." + parts[1] if parts[0] == "plugins" and len(parts) > 2 else None
    others = {name for name in imported if name.startswith("procsock_plugins") and
              not (own and (name == own or name.startswith(own + ".")))}
    assert not others, "%s imports another plugin: %s" % (path, sorted(others))


def test_every_public_name_resolves_and_is_listed():
    for name in procsock.__all__:
        assert getattr(procsock, name) is not None
    for name in procsock.plugin.__all__:
        assert getattr(procsock.plugin, name) is not None
    assert procsock.Extended is procsock.plugin.Extended
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        procsock.nosuch  # noqa: B018


def test_import_procsock_imports_nothing_else_of_it():
    code = (
        "import sys, procsock; print(sorted(m for m in sys.modules if m.startswith(('procsock', 'pluggy', 'attrs'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['procsock']"


def test_the_version_is_the_distributions():
    from importlib.metadata import version

    assert procsock.__version__ == version("procsock")


class HalfBackend:
    """Implements collect but never says what it is."""

    @hookimpl
    def procsock_collect(self, kind):
        return None


def test_a_plugin_without_backend_hooks_is_a_plugin_not_a_broken_backend():
    registry = Registry()
    registry.register(object(), "bare")  # implements nothing (yet): e.g. hooks procsock will declare later
    registry.register(StubBackend("stub", 10, [procsock.TCP]), "stub")
    assert [p.name for p in registry.plugins] == ["bare", "stub"]
    assert [b.name for b in registry.backends] == ["stub"]
    assert registry.failures == ()


def test_backend_hooks_without_backend_info_is_broken_and_said_so():
    registry = Registry()
    registry.register(HalfBackend(), "half")
    (failure,) = registry.failures
    assert failure.reason == "implements procsock_collect but not procsock_backend_info"
    assert str(failure) == "plugin half is broken and was skipped: " + failure.reason
    assert registry.backends == () and registry.plugins == ()
    with pytest.raises(errors.BackendUnavailable, match="half is broken"):
        registry.backend("half")


def test_an_unknown_backend_names_the_installed_ones():
    registry = Registry()
    registry.register(StubBackend("stub", 10, [procsock.TCP]), "stub")
    with pytest.raises(errors.BackendUnavailable, match=r"no such backend \(installed: stub\)"):
        registry.backend("nosuch")


@pytest.mark.parametrize(
    "error",
    [
        errors.ProcsockError("plain"),
        errors.ParseError("/proc/net/tcp", 3, "bad line"),
        errors.ParseError("file", None, "no line"),
        errors.BackendUnavailable("netlink", "refused"),
        errors.NotApplicable("pidfd", "whole tables"),
        errors.NoSuchProcess(12, 4),
        errors.NoSuchProcess(pid=12),
        errors.AccessDenied(1),
        errors.NotASocket(1, 2, "pipe:[3]"),
        errors.SocketNotFound(77, "gone"),
    ],
    ids=repr,
)
def test_errors_survive_pickling(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert vars(again) == vars(error)
