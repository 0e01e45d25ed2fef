"""The entry points of one group, read from the metadata files of the distributions on sys.path.

What `importlib.metadata.entry_points(group=...)` finds, at a fraction of its start-up cost (it
imports email, zipfile and pathlib and reads every distribution's metadata): only the
`entry_points.txt` of each `*.dist-info` / `*.egg-info` directory is read, in sys.path order, and
the name and version of the few distributions that have the group. Installed normally or editable,
a distribution has such a directory on sys.path (an unzipped egg: its EGG-INFO). Zip archives
on sys.path are asked of importlib.metadata.

One departure from importlib.metadata: an `*.egg-info` whose packages (top_level.txt) are not beside
it is a by-product of building a source checkout (`pip install -e .` leaves `procsock.egg-info`
there; procsock_plugins is installed from plugins/), not an installation. Running from a checkout
puts it first on sys.path, where its entry points, stale or not, would shadow those of the
distribution actually installed; so it counts only for a distribution installed nowhere else.
"""

import importlib
import os
import re
import sys
from typing import Iterator, List, Optional, Tuple

import attrs

_METADATA_DIRS = (".dist-info", ".egg-info")
_METADATA_FILES = ("METADATA", "PKG-INFO")
# importlib.metadata's pattern: module[:attr.path] [extras]
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


@attrs.frozen
class EntryPoint:
    """One `name = module:attr` line of a group, and the distribution that declares it."""

    name: str
    value: str
    distribution: str
    version: str

    def load(self) -> object:
        """Import the module and follow the attribute path; ValueError for a malformed value."""
        match = _VALUE.match(self.value)
        if match is None:
            raise ValueError("entry point %s: malformed value %r" % (self.name, self.value))
        found = importlib.import_module(match.group("module"))
        attribute = match.group("attr")
        for part in attribute.split(".") if attribute else ():
            found = getattr(found, part)
        return found


def _section(text: str, group: str) -> List[Tuple[str, str]]:
    """(name, value) of each line in the `[group]` section of an entry_points.txt."""
    found, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            inside = line == "[%s]" % group
        elif inside:
            name, equals, value = line.partition("=")
            if equals:
                found.append((name.strip(), value.strip()))
    return found


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None


def _name_and_version(meta_dir: str) -> Tuple[str, str]:
    """The Name and Version headers of a distribution, else the parts of its directory's name."""
    fallback = os.path.basename(meta_dir).rsplit(".", 1)[0].split("-")
    name, version = fallback[0], fallback[1] if len(fallback) > 1 else ""
    for filename in _METADATA_FILES:
        text = _read(os.path.join(meta_dir, filename))
        if text is None:
            continue
        headers = text.split("\n\n", 1)[0]
        for line in headers.splitlines():
            key, colon, value = line.partition(":")
            if colon and key == "Name":
                name = value.strip()
            elif colon and key == "Version":
                version = value.strip()
        break
    return name, version


def _in_zip(entry: str, group: str) -> Iterator[EntryPoint]:
    import importlib.metadata  # only here: the import is the cost this module avoids

    for dist in importlib.metadata.distributions(path=[entry]):
        for ep in dist.entry_points:
            if ep.group == group:
                yield EntryPoint(ep.name, ep.value, dist.metadata["Name"], dist.version)


def _is_build_byproduct(meta_dir: str, names: List[str]) -> bool:
    """Whether an *.egg-info names top-level packages that are not beside it (in `names`, its
    directory's entries): a checkout's build metadata, not an installation there."""
    if not meta_dir.endswith(".egg-info"):
        return False
    present = {name.split(".", 1)[0] for name in names}
    return any(package not in present for package in (_read(os.path.join(meta_dir, "top_level.txt")) or "").split())


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def entry_points(group: str, path: Optional[List[str]] = None) -> List[EntryPoint]:
    """Every entry point of `group` on `path` (default sys.path), in path order, the first of
    each name only (as importlib.metadata resolves duplicates); a checkout's build metadata only
    for a distribution with no installed metadata on the path."""
    everywhere: List[Tuple[EntryPoint, bool]] = []  # (entry point, declared by build metadata)
    for entry in sys.path if path is None else path:
        directory = entry or "."
        if os.path.isdir(directory):
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if not (name.endswith(_METADATA_DIRS) or (name == "EGG-INFO" and directory.endswith(".egg"))):
                    continue
                meta_dir = os.path.join(directory, name)
                text = _read(os.path.join(meta_dir, "entry_points.txt"))
                lines = _section(text, group) if text else []
                if lines:
                    dist, version = _name_and_version(meta_dir)
                    byproduct = _is_build_byproduct(meta_dir, names)
                    everywhere.extend((EntryPoint(n, v, dist, version), byproduct) for n, v in lines)
        elif os.path.isfile(directory):
            everywhere.extend((point, False) for point in _in_zip(directory, group))
    installed = {_normalized(point.distribution) for point, byproduct in everywhere if not byproduct}
    found: List[EntryPoint] = []
    seen = set()
    for point, byproduct in everywhere:
        if point.name not in seen and not (byproduct and _normalized(point.distribution) in installed):
            seen.add(point.name)
            found.append(point)
    return found
