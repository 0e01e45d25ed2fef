"""Asking backends: the first usable backend serving a kind answers, one that fails is passed over
(and remembered), and the sockets it defers are asked of the backends after it."""

import sys
from typing import AbstractSet, Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Tuple

import attrs

from procsock import log
from procsock.backends import Backend
from procsock.errors import BackendUnavailable, NotApplicable, ProcsockError
from procsock.model import Collected, Netns, Owner, Row, SocketKind, Source
from procsock.scope import kept
from procsock.text import escape_text


REASON_LIMIT = 300  # characters of a backend's reason kept: it is one line of a report

Holders = Mapping[int, Tuple[Owner, ...]]  # e.g. FdScan.owners


@attrs.frozen
class Answer:
    """One kind read in one namespace: the `inodes` asked for (None: the whole table), the
    `backend` that answered and what it `collected` (both None when none could), and the
    `failures` (backend name, reason) of the backends tried before or after it."""

    kind: SocketKind
    netns: Netns
    inodes: Optional[FrozenSet[int]]
    backend: Optional[str]
    collected: Optional[Collected]
    failures: Tuple[Tuple[str, str], ...] = ()


def deferred_reasons(collected, field: str = "deferred") -> Dict[int, str]:
    """A backend's deferred (or `settled`) inodes → reason, keeping only well-formed (inode, text)
    pairs, with the text escaped and cut short: a plugin's words reach terminals."""
    try:
        pairs = tuple(getattr(collected, field, ()))
    except TypeError:
        return {}
    return {
        pair[0]: escape_text(pair[1][:REASON_LIMIT]) for pair in pairs
        if isinstance(pair, tuple) and len(pair) == 2
        and isinstance(pair[0], int) and isinstance(pair[1], str)
    }


def ask(
    backend: Backend,
    kind: SocketKind,
    source: Source,
    inodes: Optional[FrozenSet[int]],
    details: bool = False,
    netns: Netns = Netns(),
    holders: Optional[Holders] = None,
    raw: bool = False,
) -> Collected:
    """`backend`'s records of one kind, as rows (`Row`), with their wire form when `raw` asks
    for it and the backend has one. Every failure is a ProcsockError saying why: a plugin's
    bug (any exception, MemoryError on hostile input included) or an answer of nothing is
    reported as BackendUnavailable, so that one broken plugin cannot stop the others."""
    try:
        collected = backend.collect(kind, source, inodes, details, netns, holders, raw)
    except ProcsockError:
        raise
    except Exception as exc:
        log.debug("backend %s crashed on %s", backend.name, kind.name, exc_info=True)
        raise BackendUnavailable(backend.name, "plugin error: %s: %s" % (type(exc).__name__, exc)) from None
    if not isinstance(collected, Collected):
        raise BackendUnavailable(backend.name, "returned nothing" if collected is None else "plugin error: returned "
                                 "%s, not Collected" % type(collected).__name__)
    checked = kept(("procsock.collect", backend.name, kind, source.proc_root, netns.inode, inodes, details))
    try:
        rows = collected.rows(None if checked is None else checked.get("rows"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise BackendUnavailable(backend.name, "plugin error: %s" % exc) from None
    if checked is not None:  # a repeated operation (a watch's polls): rows a backend gives again are not checked again
        checked["rows"] = {id(row): row for row in rows}
    if raw and collected.raw is not None and type(collected.raw) is not bytes:
        raise BackendUnavailable(backend.name, "plugin error: its raw form is %s, not bytes"
                                 % type(collected.raw).__name__)
    return attrs.evolve(collected, records=rows, raw=collected.raw if raw else None)


def collect(backends: Sequence[Backend], source: Source, kind: SocketKind, inodes: Optional[FrozenSet[int]],
            details: bool, netns: Netns, holders: Holders, raw: bool = False) -> Answer:
    """The answer of the first of `backends` serving `kind` (with its wire form when `raw`); the
    inodes it deferred are asked of the backends after it, and those none reports stay in
    ``deferred`` with the first reason given, as do those it settled (asked of no other backend)."""
    rest, collected, failures = _first_answer(backends, source, kind, inodes, details, netns, holders, raw)
    if collected is None:
        return Answer(kind, netns, inodes, None, None, tuple(failures))
    name = rest[0].name
    records, reasons, settled = list(collected.records), deferred_reasons(collected), {}
    if collected.settled:
        settled = deferred_reasons(collected, "settled")
        reasons = {i: why for i, why in reasons.items() if i not in settled}
    if reasons or settled:  # a deferral of a socket not asked for, or answered after all, is not believed
        listed = {r[Row.INODE] for r in records}
        reasons, settled = ({
            i: why for i, why in pairs.items() if (inodes is None or i in inodes) and i not in listed
        } for pairs in (reasons, settled))
    while reasons:
        asked = frozenset(reasons)
        rest, answer, failed = _first_answer(rest[1:], source, kind, asked, details, netns, holders, False)
        failures += failed
        if answer is None:
            break
        for record in answer.records:
            inode = record[Row.INODE]
            if inode in asked and reasons.pop(inode, None) is not None:
                records.append(record)
    if collected.deferred or collected.settled or reasons:
        collected = attrs.evolve(collected, records=tuple(records),
                                 deferred=tuple(reasons.items()) + tuple(settled.items()), settled=())
    return Answer(kind, netns, inodes, name, collected, tuple(failures))


def _first_answer(backends: Sequence[Backend], source: Source, kind: SocketKind,
                  inodes: Optional[FrozenSet[int]], details: bool, netns: Netns, holders: Holders, raw: bool):
    """(the backends from the one that answered on, its Collected, failures) for the first of
    `backends` that answers for `kind`; ((), None, failures) if none does."""
    failures: List[Tuple[str, str]] = []
    handled = sys.exc_info()[1]  # the caller's own exception, when it asks from an except block
    for position, backend in enumerate(backends):
        if kind not in backend.info.kinds or (inodes is None and backend.info.lookup_only):
            continue
        try:
            collected = ask(backend, kind, source, inodes, details, netns, holders, raw)
        except NotApplicable as exc:
            forget_frames(exc, handled)
            continue
        except ProcsockError as exc:
            log.debug("backend %s failed on %s", backend.name, kind.name, exc_info=True)
            failures.append((backend.name, getattr(exc, "reason", None) or str(exc)))
            forget_frames(exc, handled)
            continue
        return backends[position:], collected, failures
    return (), None, failures


def forget_frames(exc: BaseException, handled: Optional[BaseException]) -> None:
    """Drop the tracebacks of `exc` and of the exceptions behind it, once only its reason is kept,
    and the locals of their frames that have returned. Those frames (pluggy's, a plugin's) may
    hold an exception again: a cycle that, with the command's cyclic collector off, would keep
    every frame's objects alive to the end, the fd walk's owners and earlier kinds' rows among
    them (8 MB at 100k sockets). The exception the caller was handling when it asked, `handled`,
    and those behind it are not ours to change (pluggy's re-raise may make it `exc`'s context)."""
    theirs = {id(behind) for behind in _chain(handled)}
    for failure in _chain(exc, theirs):
        entry = failure.__traceback__
        while entry is not None:
            try:
                entry.tb_frame.clear()
            except RuntimeError:  # a frame still running: ours, up the stack
                pass
            entry = entry.tb_next
        failure.__traceback__ = None


def _chain(exc: Optional[BaseException], stop: AbstractSet[int] = frozenset()) -> Iterator[BaseException]:
    """`exc` and the exceptions behind it (causes, contexts), each once, not past those whose ids
    are in `stop`."""
    pending, seen = [exc], set(stop)
    while pending:
        exc = pending.pop()
        if exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            yield exc
            pending += (exc.__cause__, exc.__context__)
