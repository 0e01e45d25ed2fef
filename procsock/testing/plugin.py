"""The pytest plugin (entry point ``pytest11``): one test over every backend, and a socket-leak check.

- ``procsock_backend``: a fixture parametrized over every backend that can run here (or those
  named with ``--procsock-backend NAME``); it gives the ``procsock.backends.Backend``, whose
  ``.name`` goes to ``snapshot(backend=...)``. ``@pytest.mark.procsock_kinds("tcp", ...)`` keeps
  the backends that serve at least one of those kinds.
- ``@pytest.mark.procsock_leaks``, or ``--procsock-leaks`` for the whole run: a test fails when,
  after its teardown, this process holds sockets it did not hold once its setup was done; the
  report lists them with their endpoints and fds.

Backends are loaded only when a test asks for them, so the plugin costs nothing otherwise.
"""

import gc
import os

import pytest

from procsock.api import default_registry
from procsock.errors import BackendUnavailable
from procsock.model import Source
from procsock.resolver import Resolver
from procsock.testing import describe_sockets, held_socket_inodes

_BASELINE = pytest.StashKey[frozenset]()


def pytest_addoption(parser) -> None:
    group = parser.getgroup("procsock")
    group.addoption(
        "--procsock-backend", action="append", metavar="NAME",
        help="run procsock_backend tests (and procsock.testing.conformance) on this backend only; repeatable",
    )
    group.addoption(
        "--procsock-leaks", action="store_true",
        help="fail every test that leaves sockets open that this process did not hold when it started",
    )


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "procsock_kinds(*names): run procsock_backend only over backends serving one of these kinds"
    )
    config.addinivalue_line(
        "markers", "procsock_leaks: fail the test if it leaves sockets open that it did not have at its start"
    )


def backend_names(config, kinds=None) -> list:
    """The backends `procsock_backend` runs over: those named on the command line, else every
    backend that can read the live host (and serves one of `kinds`, when given)."""
    named = config.getoption("procsock_backend")
    if named:
        return list(named)
    usable = Resolver(default_registry(), Source.live()).usable_backends()
    return [b.name for b in usable if kinds is None or any(k.name in kinds for k in b.info.kinds)]


def pytest_generate_tests(metafunc) -> None:
    if "procsock_backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("procsock_kinds")
        names = backend_names(metafunc.config, marker.args if marker else None)
        metafunc.parametrize("procsock_backend", names, indirect=True, ids=names)


def usable_backend(name: str):
    """The installed backend `name`, failing the test with the reason when it is not installed
    (or broken) or cannot read the live host."""
    try:
        backend = default_registry().backend(name)
    except BackendUnavailable as exc:
        pytest.fail("procsock backend %r is not usable: %s" % (name, exc.reason))
    reason = backend.unavailable(Source.live())
    if reason is not None:
        pytest.fail("procsock backend %r cannot run here: %s" % (name, reason))
    return backend


@pytest.fixture
def procsock_backend(request):
    """One backend that can run here (the test runs once per backend)."""
    return usable_backend(request.param)


def _checks_leaks(item) -> bool:
    return item.config.getoption("procsock_leaks") or item.get_closest_marker("procsock_leaks") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield
    if _checks_leaks(item):
        gc.collect()
        item.stash[_BASELINE] = held_socket_inodes(os.getpid())


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem) -> None:
    baseline = item.stash.get(_BASELINE, None)
    if baseline is None:
        return
    gc.collect()  # a socket only a reference cycle kept is closed by now, not leaked
    leaked = held_socket_inodes(os.getpid()) - baseline
    if leaked:
        pytest.fail(
            "test left %d socket(s) open that it did not have at its start:\n%s"
            % (len(leaked), describe_sockets(os.getpid(), leaked)),
            pytrace=False,
        )
