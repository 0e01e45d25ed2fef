"""Entry points read from distribution metadata agree with importlib.metadata, and load plugins."""

import importlib.metadata
import os
import subprocess
import sys

import pytest

from procsock.backends import Registry
from procsock.entrypoints import EntryPoint, entry_points

PLUGIN = '''
import procsock
from procsock import hookimpl

@hookimpl
def procsock_backend_info():
    return procsock.BackendInfo("fakebackend", priority=10, kinds=())
'''


def importlib_view(group, path):
    seen, found = set(), []
    for dist in importlib.metadata.distributions(path=path):
        for ep in dist.entry_points:
            if ep.group == group and ep.name not in seen:
                seen.add(ep.name)
                found.append((ep.name, ep.value, dist.metadata["Name"], dist.version))
    return sorted(found)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


@pytest.fixture
def site(tmp_path):
    """A site directory with a wheel-style install and a setuptools-develop egg-info."""
    root = str(tmp_path)
    write(os.path.join(root, "fake_plugin_mod.py"), PLUGIN)
    write(os.path.join(root, "fake_plugin-1.2.dist-info", "METADATA"),
          "Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.2\n\nLong: text\nName: not this\n")
    write(os.path.join(root, "fake_plugin-1.2.dist-info", "entry_points.txt"),
          "[console_scripts]\nfake = fake_plugin_mod:main\n\n[procsock]\n# a comment\nfake = fake_plugin_mod\n")
    write(os.path.join(root, "other.egg-info", "PKG-INFO"), "Metadata-Version: 1.1\nName: other\nVersion: 0.3.dev0\n")
    write(os.path.join(root, "other.egg-info", "entry_points.txt"),
          "[procsock]\nattr = os.path:join [extra]\n")
    return root


def test_same_entry_points_as_importlib_metadata(site):
    mine = sorted((e.name, e.value, e.distribution, e.version) for e in entry_points("procsock", [site]))
    assert mine == importlib_view("procsock", [site])
    assert ("attr", "os.path:join [extra]", "other", "0.3.dev0") in mine
    assert [e.name for e in entry_points("console_scripts", [site])] == ["fake"]


def test_the_first_of_a_name_on_the_path_wins(site, tmp_path_factory):
    later = str(tmp_path_factory.mktemp("later"))
    write(os.path.join(later, "late-2.0.dist-info", "entry_points.txt"), "[procsock]\nfake = somewhere.else\n")
    (fake,) = [e for e in entry_points("procsock", [site, later]) if e.name == "fake"]
    assert (fake.value, fake.distribution) == ("fake_plugin_mod", "fake-plugin")
    (late,) = entry_points("procsock", [later])
    assert (late.distribution, late.version) == ("late", "2.0")  # no METADATA: from the directory's name


def test_the_installed_built_ins_are_found_as_importlib_metadata_finds_them():
    mine = sorted((e.name, e.value, e.distribution, e.version) for e in entry_points("procsock"))
    assert mine == importlib_view("procsock", sys.path)


def test_load_follows_the_attribute_path_and_rejects_malformed_values():
    assert EntryPoint("x", "os.path:join [extra]", "d", "1").load() is os.path.join
    assert EntryPoint("x", "os", "d", "1").load() is os
    with pytest.raises(ValueError, match="malformed"):
        EntryPoint("x", "not a module!", "d", "1").load()


def test_a_plugin_on_sys_path_is_loaded_with_its_distribution(site, monkeypatch):
    monkeypatch.syspath_prepend(site)
    registry = Registry.from_entry_points()
    loaded = {b.plugin_name: b for b in registry.backends}
    assert (loaded["fake"].distribution, loaded["fake"].version) == ("fake-plugin", "1.2")
    assert loaded["fake"].name == "fakebackend" and "procnet" in loaded


def checkout_with_build_metadata(root, entry_points_text):
    """A source checkout as `pip install -e .` leaves it: procsock.egg-info naming a package
    (procsock_plugins) that is installed from elsewhere (plugins/), so not beside it."""
    os.makedirs(os.path.join(root, "procsock"), exist_ok=True)
    write(os.path.join(root, "procsock.egg-info", "PKG-INFO"), "Metadata-Version: 2.1\nName: procsock\nVersion: 0.1\n")
    write(os.path.join(root, "procsock.egg-info", "top_level.txt"), "procsock\nprocsock_plugins\n")
    write(os.path.join(root, "procsock.egg-info", "entry_points.txt"), entry_points_text)
    return root


def test_a_checkouts_build_metadata_never_shadows_the_installed_distribution(tmp_path_factory):
    checkout = checkout_with_build_metadata(
        str(tmp_path_factory.mktemp("checkout")), "[procsock]\nprocnet = procsock_plugins.moved\nold = gone.module\n"
    )
    installed = str(tmp_path_factory.mktemp("site"))
    write(os.path.join(installed, "procsock-0.2.dist-info", "entry_points.txt"), "[procsock]\nprocnet = real.mod\n")
    found = entry_points("procsock", [checkout, installed])
    assert [(e.name, e.value, e.version) for e in found] == [("procnet", "real.mod", "0.2")]
    # installed nowhere else, the checkout's metadata is all there is: it counts
    assert [e.value for e in entry_points("procsock", [checkout])] == ["procsock_plugins.moved", "gone.module"]
    # an egg-info with its packages beside it is an installation (setup.py install, distro packages)
    write(os.path.join(checkout, "procsock_plugins", "__init__.py"), "")
    assert [e.value for e in entry_points("procsock", [checkout, installed])] == [
        "procsock_plugins.moved", "gone.module"
    ]


def test_running_from_a_checkout_with_stale_build_metadata_keeps_the_built_ins(tmp_path):
    """`python -c` puts the working directory first on sys.path, as running from a checkout does."""
    checkout_with_build_metadata(str(tmp_path), "[procsock]\nprocnet = procsock_plugins.moved_away\n")
    code = (
        "from procsock.backends import Registry; r = Registry.from_entry_points(); "
        "print([b.name for b in r.backends]); print([str(f) for f in r.failures])"
    )
    env = dict(os.environ, PYTHONPATH="")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    backends, failures = out.stdout.splitlines()
    assert "procnet" in backends and failures == "[]", out.stdout + out.stderr
