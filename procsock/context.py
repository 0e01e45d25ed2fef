"""Owner context: who each process holding sockets is (user, unit, container, pod), asked of the
context plugins once per process and kept by pid (owner rows stay as the walk made them).

The fd walk read each process's raw facts (`FdScan.facts`); the plugins implementing
``procsock_owner_context`` turn them into fields; their answers are checked here, at the door, so
a plugin can neither break a writer nor set a field to a value of the wrong type. Only when asked
for: a snapshot without context never comes here.
"""

import re
from typing import Dict, List, Tuple

import attrs

from procsock.backends import Registry
from procsock.fdscan import FdScan, with_facts
from procsock.model import CONTEXT_FIELDS, Context, FrozenDict, Note, Process, Source
from procsock.resolve.explain import context_failure
from procsock.text import escape_text

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}\Z")
MAX_TEXT = 4096  # characters of one value a plugin gives
_INT_FIELDS = ("cgroup_id",)


def checked_answer(answer) -> Dict[str, object]:
    """A plugin's answer as a dict of checked fields; ValueError saying what is wrong with it."""
    if answer is None:
        return {}
    if not isinstance(answer, dict) and not hasattr(answer, "items"):
        raise ValueError("answered %s, not a mapping" % type(answer).__name__)
    checked = {}
    for key, value in answer.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ValueError("answered a bad field name %s" % escape_text(repr(key)[:80]))
        wanted = (int,) if key in _INT_FIELDS else (str,) if key in CONTEXT_FIELDS else (str, int)
        if value is not None and (isinstance(value, bool) or not isinstance(value, wanted)
                                  or (isinstance(value, str) and len(value) > MAX_TEXT)):
            raise ValueError("answered %s for %s" % (escape_text(repr(value)[:80]), key))
        checked[key] = value
    return checked


def contexts(registry: Registry, source: Source, scan: FdScan) -> Tuple[Dict[int, Context], Tuple[Note, ...]]:
    """The Context of every process holding sockets in `scan` (which has its facts), and a note
    per plugin that failed or answered badly (with how many processes it failed for)."""
    failed: Dict[str, List] = {}
    found = {}
    for pid, (name, uid, cgroup, cmdline) in (scan.facts or {}).items():
        process = Process(pid, name, uid, cgroup, cmdline, source)
        fields: Dict[str, object] = {}
        extra: Dict[str, object] = {}
        for plugin, hook in registry.context_hooks:
            try:
                answers = hook(process=process, source=source)
                answer = checked_answer(answers[0] if answers else None)
            except Exception as exc:
                failed.setdefault(plugin, [0, "%s: %s" % (type(exc).__name__, exc)])[0] += 1
                continue
            for key, value in answer.items():
                target = fields if key in CONTEXT_FIELDS else extra
                if target.get(key) is None:
                    target[key] = value
        found[pid] = Context(**fields, extra=extra)
    notes = tuple(context_failure(escape_text(plugin), count, escape_text(reason))
                  for plugin, (count, reason) in failed.items())
    return found, notes


def with_context(registry: Registry, source: Source, scan: FdScan) -> Tuple[FdScan, Tuple[Note, ...]]:
    """`scan` with the Context of each process holding sockets (`FdScan.contexts`: one per
    process, looked up by pid where shown), and the notes of context plugins that failed. Facts
    the walk did not read are read now."""
    if source.proc_root is None:
        return scan, ()
    scan = with_facts(scan, source.proc_root, not source.kernel)
    found, notes = contexts(registry, source, scan)
    return attrs.evolve(scan, contexts=FrozenDict(found)), notes
