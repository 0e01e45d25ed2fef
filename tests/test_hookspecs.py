"""The hook reference cannot drift: every hookspec is documented (when it is called, with what,
what it returns, what an exception does), its docstring is in docs/plugins.md word for word, and
some test exercises it."""

import glob
import inspect
import os

import pytest

from procsock import hookspecs
from procsock.backends import HOOK_NAMES

ROOT = os.path.join(os.path.dirname(__file__), "..")
GUIDE = os.path.join(ROOT, "docs", "plugins.md")
REFERENCE_START = "<!-- hook reference: generated from procsock/hookspecs.py, checked by tests/test_hookspecs.py -->"
REFERENCE_END = "<!-- end of hook reference -->"


def hook_reference() -> str:
    """The reference section as docs/plugins.md must carry it."""
    parts = [REFERENCE_START]
    for name in HOOK_NAMES:
        spec = getattr(hookspecs, name)
        params = ", ".join(inspect.signature(spec).parameters)
        returns = inspect.signature(spec).return_annotation
        returned = inspect.formatannotation(returns).replace("procsock.model.", "")
        parts.append("### `%s(%s)` → `%s`\n\n%s" % (name, params, returned, inspect.getdoc(spec)))
    parts.append(REFERENCE_END)
    return "\n\n".join(parts)


def test_every_hook_is_in_the_reference_word_for_word():
    guide = open(GUIDE, encoding="utf-8").read()
    start, end = guide.find(REFERENCE_START), guide.find(REFERENCE_END)
    assert start >= 0 and end > start, "docs/plugins.md has no hook reference markers"
    current = guide[start:end + len(REFERENCE_END)]
    want = hook_reference()
    assert current == want, "docs/plugins.md is out of date; its hook reference must read:\n\n" + want


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hook_is_documented(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Called" in doc, "%s: say when it is called" % name
    assert "exception" in doc.lower() or "raise" in doc.lower(), "%s: say what an exception does" % name
    assert any(word in doc for word in ("Return", "return", "→")), "%s: say what it returns" % name


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hook_is_exercised_by_a_test(name):
    here = os.path.abspath(__file__)
    tests = [p for p in glob.glob(os.path.join(ROOT, "tests", "test_*.py")) if os.path.abspath(p) != here]
    assert any(name in open(p, encoding="utf-8").read() for p in tests), "no test calls %s" % name


def test_hook_names_are_exactly_the_hookspecs():
    specs = {n for n, f in vars(hookspecs).items() if hasattr(f, "procsock_spec")}
    assert specs == set(HOOK_NAMES)
