"""procsock.scope: one resource per key and operation, closed when the operation ends."""

import contextvars
import threading

import pytest

from procsock.plugin import scope, shared


class Resource:
    """A resource that records its opening and closing in `log`; closing raises if told to."""

    def __init__(self, name, log, fail_close=False):
        self.name, self.log, self.fail_close, self.closed = name, log, fail_close, False
        log.append(("open", name))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True
        self.log.append(("close", self.name))
        if self.fail_close:
            raise OSError("cannot close %s" % self.name)


def opener(name, log, **kwargs):
    return lambda: Resource(name, log, **kwargs)


def test_outside_a_scope_each_use_opens_and_closes_its_own():
    log = []
    with shared("k", opener("a", log)) as first:
        assert not first.closed
    assert first.closed
    with shared("k", opener("b", log)) as second:
        assert second is not first
    assert log == [("open", "a"), ("close", "a"), ("open", "b"), ("close", "b")]


def test_a_scope_opens_one_per_key_and_closes_them_last_first():
    log = []
    with scope():
        with shared("x", opener("x", log)) as x:
            pass
        with shared("y", opener("y", log)) as y:
            pass
        with shared("x", opener("x again", log)) as again:
            assert again is x and not x.closed and not y.closed
    assert log == [("open", "x"), ("open", "y"), ("close", "y"), ("close", "x")]


def test_an_opener_that_raises_leaves_nothing_behind():
    log, calls = [], []

    def failing():
        calls.append(1)
        raise OSError("refused")

    with scope():
        for _ in range(2):  # not cached: asked again, refused again
            with pytest.raises(OSError, match="refused"):
                with shared("k", failing):
                    pass
        with shared("k", opener("k", log)) as resource:
            assert not resource.closed
    assert len(calls) == 2 and log == [("open", "k"), ("close", "k")]


def test_a_block_that_raises_closes_its_resource_and_the_next_use_opens_afresh():
    log = []
    with scope():
        with pytest.raises(KeyError):
            with shared("k", opener("first", log)):
                raise KeyError("half-read answer")
        assert log == [("open", "first"), ("close", "first")]
        with shared("k", opener("second", log)) as second:
            pass
        assert not second.closed
    assert log[2:] == [("open", "second"), ("close", "second")]


def test_an_exception_in_the_scope_still_closes_everything():
    log = []
    with pytest.raises(RuntimeError, match="operation failed"):
        with scope():
            for name in "abc":
                with shared(name, opener(name, log)):
                    pass
            raise RuntimeError("operation failed")
    assert log[3:] == [("close", "c"), ("close", "b"), ("close", "a")]


def test_a_close_that_raises_does_not_stop_the_others_and_is_raised():
    log = []
    with pytest.raises(OSError, match="cannot close b"):
        with scope():
            for name in "abc":
                with shared(name, opener(name, log, fail_close=name == "b")):
                    pass
    assert log[3:] == [("close", "c"), ("close", "b"), ("close", "a")]


def test_nested_scopes_own_what_is_opened_in_them():
    log = []
    with scope():
        with shared("k", opener("outer", log)) as outer:
            pass
        with scope():
            with shared("k", opener("inner", log)) as inner:
                assert inner is not outer  # a fresh resource: an inner operation sees nothing of the outer
        assert inner.closed and not outer.closed
        with shared("k", opener("unused", log)) as again:
            assert again is outer
    assert outer.closed
    assert log == [("open", "outer"), ("open", "inner"), ("close", "inner"), ("close", "outer")]


def test_a_decorated_function_is_one_operation_per_call():
    log = []

    @scope()
    def operation(name):
        with shared("k", opener(name, log)) as first, shared("k", opener("unused", log)) as second:
            assert first is second
        return first

    assert operation("one").closed and operation("two").closed
    assert log == [("open", "one"), ("close", "one"), ("open", "two"), ("close", "two")]


def test_threads_and_copied_contexts_do_not_share_a_scope_by_accident():
    log, seen = [], []

    def elsewhere():
        with shared("k", opener("thread", log)) as resource:
            seen.append(resource)

    with scope():
        with shared("k", opener("main", log)) as mine:
            pass
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
        assert seen[0] is not mine and seen[0].closed  # the thread had no scope: opened and closed its own
        contextvars.Context().run(elsewhere)  # an empty context: no scope either
        assert seen[1] is not mine and seen[1].closed and not mine.closed
    assert mine.closed
