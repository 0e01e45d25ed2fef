"""Entry points read from distribution metadata agree with importlib.metadata, and load plugins."""

import importlib.metadata
import os
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
