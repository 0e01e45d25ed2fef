"""Per-operation resources: what backends open once for one operation and close when it ends.

The resolver runs each operation that asks backends (a snapshot, a describe, the raw dumps of
``--save-diag``, a comparison's collection) inside ``scope()``. A plugin asks for a resource with
``shared(key, opener)``: inside a scope, every ask with the same key gets the one resource opened
for it in this scope, closed when the scope ends; outside any scope, each ask opens its own and
closes it when its ``with`` block ends. Nothing outlives its scope, so a later operation never
uses an earlier one's resource (a socket left open inside a network namespace keeps it alive).

The active scope is a ContextVar: threads and async tasks of an embedder do not share one by
accident. Scopes nest; the innermost one owns what is opened while it is active and sees nothing of
the outer ones, so an operation run inside another still starts with fresh resources.
"""

import contextlib
import contextvars
from typing import Callable, ContextManager, Dict, Hashable, Iterator, Optional, Tuple, TypeVar

__all__ = ["keeping", "kept", "scope", "shared"]

T = TypeVar("T")

# The resources of the active scope: key -> (resource, its context manager), in opening order.
_active: contextvars.ContextVar = contextvars.ContextVar("procsock_scope", default=None)
# The store of the active `keeping` block and the keys asked of it in the block.
_keeping: contextvars.ContextVar = contextvars.ContextVar("procsock_keeping", default=None)


def _close(managers) -> None:
    """Exit `managers` last first, every one even if some raise; then raise the first failure."""
    failure = None
    for manager in reversed(managers):
        try:
            manager.__exit__(None, None, None)
        except Exception as exc:  # the others are still closed
            failure = failure or exc
    if failure is not None:
        raise failure


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Run the block as one operation: what ``shared`` opens in it is closed when it ends (also
    when it raises). A close that raises is raised once every other close was attempted.

    Also a decorator (``@scope()``): each call of the function is one operation.
    """
    resources: Dict[Hashable, Tuple[object, ContextManager]] = {}
    token = _active.set(resources)
    try:
        yield
    finally:
        _active.reset(token)
        _close([manager for _, manager in resources.values()])


@contextlib.contextmanager
def shared(key: Hashable, opener: Callable[[], ContextManager[T]]) -> Iterator[T]:
    """The resource for `key` in the active scope, opened with `opener()` on first use.

    `opener` returns a context manager (a socket, a file, ``contextlib.closing(x)``); what its
    ``__enter__`` returns is the resource and its ``__exit__`` closes it. Inside a scope the
    resource stays open for the next ``shared`` of the same key until the scope ends; outside any
    scope it is closed when this block ends. An opener that raises leaves nothing behind; a block
    that raises may have left the resource half-used (an unread answer), so it is closed at once
    and the next use of `key` in the scope opens a fresh one.
    """
    resources = _active.get()
    if resources is None:
        with opener() as resource:
            yield resource
        return
    entry = resources.get(key)
    if entry is None:
        manager = opener()
        entry = resources[key] = (manager.__enter__(), manager)
    try:
        yield entry[0]
    except BaseException:
        if resources.get(key) is entry:
            del resources[key]
            _close([entry[1]])
        raise


@contextlib.contextmanager
def keeping(store: Dict[Hashable, dict]) -> Iterator[None]:
    """Run the block with `store` as what ``kept`` hands out. A caller that repeats one operation
    (a watch's polls) passes the same store each time, so that a plugin can reuse what it made
    from the same input the last time instead of making it again. Only values, no resources: what
    a key held that the block did not ask for is dropped at its end (a namespace gone, a kind no
    longer read), so the store holds what one repetition made, no more."""
    asked: set = set()
    token = _keeping.set((store, asked))
    try:
        yield
    finally:
        _keeping.reset(token)
        for key in [key for key in store if key not in asked]:
            del store[key]


def kept(key: Hashable) -> Optional[dict]:
    """The dict kept for `key` across the repetitions of the active ``keeping`` block (empty the
    first time); None outside one: then keep nothing. What goes in must be a pure function of
    the input it is looked up by (decoded rows by the bytes they came from): it may be handed
    out again in a later operation."""
    active = _keeping.get()
    if active is None:
        return None
    store, asked = active
    asked.add(key)
    return store.setdefault(key, {})
