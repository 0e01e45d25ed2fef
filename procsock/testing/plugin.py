"""The pytest plugin (entry point ``pytest11``): one test over every backend, and a socket-leak check.

- ``procsock_backend``: a fixture parametrized over every backend that can run here (or those
  named with ``--procsock-backend NAME``); it gives the ``procsock.backends.Backend``, whose
  ``.name`` goes to ``snapshot(backend=...)``. ``@pytest.mark.procsock_kinds("tcp", ...)`` keeps
  the backends that serve at least one of those kinds; lookup-only backends (pidfd) run a test
  only when it is marked ``@pytest.mark.procsock_lookups`` (it asks about given processes or fds).
- ``--procsock-leaks`` (ini ``procsock_leaks = true``), or ``@pytest.mark.procsock_leaks`` on a
  test: after its teardown, sockets this process holds that it did not hold at the baseline are
  reported as an error at teardown, with their endpoints and fds (see procsock.testing.leaks).

Backends are loaded only when a test asks for them, so the plugin costs nothing otherwise.
"""

import attrs
import pytest

from procsock.api import default_registry
from procsock.errors import BackendUnavailable
from procsock.model import Source
from procsock.resolver import Resolver
from procsock.testing import leaks

_BASELINE = pytest.StashKey[frozenset]()
_INI_POLICY = pytest.StashKey[leaks.LeakPolicy]()
_POLICY = pytest.StashKey[leaks.LeakPolicy]()
_FAILED = pytest.StashKey[bool]()

BASELINES = ("after-setup", "before-setup")
LEAK_MARKER_ARGS = ("enabled", "baseline", "children", "grace", "ignore_ports", "ignore_kinds", "ignore")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("procsock")
    group.addoption(
        "--procsock-backend", action="append", metavar="NAME",
        help="run procsock_backend tests (and procsock.testing.conformance) on this backend only; repeatable",
    )
    group.addoption(
        "--procsock-leaks", action="store_true",
        help="report an error at teardown of every test that leaves sockets open that this process "
        "did not hold once the test's setup was done (ini: procsock_leaks = true)",
    )
    parser.addini(
        "procsock_leaks", "check every test for leaked sockets (like --procsock-leaks)", type="bool", default=False
    )
    parser.addini(
        "procsock_leaks_grace", "seconds a new socket may take to close before it counts as leaked (default 0.5)",
        default="0.5",
    )
    parser.addini(
        "procsock_leaks_baseline", "after-setup (default) or before-setup (sockets fixtures leave open count too)",
        default="after-setup",
    )
    parser.addini(
        "procsock_leaks_children", "also check the test's child processes for sockets they hold at teardown",
        type="bool", default=False,
    )
    parser.addini(
        "procsock_leaks_ignore_ports", "local or remote ports whose sockets are never leaks", type="args", default=[]
    )
    parser.addini(
        "procsock_leaks_ignore_kinds", "socket kinds (tcp, unix, ...) that are never leaks", type="args", default=[]
    )


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "procsock_kinds(*names): run procsock_backend only over backends serving one of these kinds"
    )
    config.addinivalue_line(
        "markers", "procsock_lookups: run procsock_backend over lookup-only backends (pidfd) too: the test "
        "asks only about given processes or fds"
    )
    config.addinivalue_line(
        "markers", "procsock_leaks(enabled=True, *, baseline=, children=, grace=, ignore_ports=, ignore_kinds=, "
        "ignore=): check this test for leaked sockets (False: never), with these settings"
    )
    named = config.getoption("procsock_backend")
    if named:
        installed = default_registry().by_name()
        unknown = [name for name in named if name not in installed]
        if unknown:
            raise pytest.UsageError(
                "--procsock-backend %s: not an installed procsock backend (installed: %s)"
                % (", ".join(unknown), ", ".join(sorted(installed)) or "none")
            )
    config.stash[_INI_POLICY] = _ini_policy(config)


def _ini_policy(config) -> leaks.LeakPolicy:
    """The leak policy from the ini file; a bad value is a usage error naming the setting."""
    try:
        grace = float(config.getini("procsock_leaks_grace"))
        ports = frozenset(int(p) for p in config.getini("procsock_leaks_ignore_ports"))
    except ValueError as exc:
        raise pytest.UsageError("procsock_leaks_grace / procsock_leaks_ignore_ports: %s" % exc) from None
    baseline = config.getini("procsock_leaks_baseline")
    if baseline not in BASELINES or grace < 0:
        raise pytest.UsageError(
            "procsock_leaks_baseline must be one of %s and procsock_leaks_grace >= 0" % ", ".join(BASELINES)
        )
    return leaks.LeakPolicy(
        before_setup=baseline == "before-setup",
        children=config.getini("procsock_leaks_children"),
        grace=grace,
        ignore_ports=ports,
        ignore_kinds=frozenset(config.getini("procsock_leaks_ignore_kinds")),
    )


def backend_names(config, kinds=None, lookups: bool = True) -> list:
    """The backends `procsock_backend` runs over: those named on the command line, else every
    backend that can read the live host, serving one of `kinds` (when given), lookup-only ones
    only with `lookups`. A named backend that does not fit is a skipped parameter, with the reason."""
    named = config.getoption("procsock_backend")
    if named:
        served = default_registry().by_name()
        return [_fit(served[name], kinds, lookups) for name in named]
    usable = Resolver(default_registry(), Source.live()).usable_backends()
    return [
        b.name for b in usable
        if (kinds is None or any(k.name in kinds for k in b.info.kinds)) and (lookups or not b.info.lookup_only)
    ]


def _fit(backend, kinds, lookups: bool):
    if kinds is not None and not any(k.name in kinds for k in backend.info.kinds):
        reason = "backend %r serves none of the kinds %s" % (backend.name, ", ".join(kinds))
    elif backend.info.lookup_only and not lookups:
        reason = "backend %r is lookup-only: mark the test procsock_lookups if it asks only about given pids or fds" % (
            backend.name)
    else:
        return backend.name
    return pytest.param(backend.name, marks=pytest.mark.skip(reason=reason), id=backend.name)


def pytest_generate_tests(metafunc) -> None:
    if "procsock_backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("procsock_kinds")
        kinds = marker.args if marker else None
        if kinds is not None:
            known = {k.name for k in default_registry().kinds()}
            unknown = [k for k in kinds if k not in known]
            if unknown or not kinds:
                pytest.fail(
                    "procsock_kinds(%s): unknown kind(s) %s; known kinds: %s"
                    % (", ".join(map(repr, kinds)), ", ".join(map(repr, unknown)) or "(none given)",
                       ", ".join(sorted(known))),
                    pytrace=False,
                )
        lookups = metafunc.definition.get_closest_marker("procsock_lookups") is not None
        names = backend_names(metafunc.config, kinds, lookups)
        ids = [n if isinstance(n, str) else n.id for n in names]
        metafunc.parametrize("procsock_backend", names, indirect=True, ids=ids)


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


def leak_policy(item):
    """How `item` is checked for leaked sockets, or None when it is not: its closest
    ``procsock_leaks`` marker, over the ini settings and ``--procsock-leaks``."""
    config = item.config
    marker = item.get_closest_marker("procsock_leaks")
    if marker is None:
        on = config.getoption("procsock_leaks") or config.getini("procsock_leaks")
        return config.stash[_INI_POLICY] if on else None
    args = dict(zip(LEAK_MARKER_ARGS, marker.args), **marker.kwargs)
    wrong = sorted(set(args) - set(LEAK_MARKER_ARGS))
    if len(marker.args) > 1 or wrong or args.get("baseline", BASELINES[0]) not in BASELINES:
        pytest.fail(
            "procsock_leaks takes (enabled=True, *, %s), baseline one of %s; got %r %r"
            % (", ".join(LEAK_MARKER_ARGS[1:]), ", ".join(BASELINES), marker.args, marker.kwargs),
            pytrace=False,
        )
    if not args.pop("enabled", True):
        return None
    policy = config.stash[_INI_POLICY]
    changes = {}
    if "baseline" in args:
        changes["before_setup"] = args["baseline"] == "before-setup"
    for name in ("children", "grace", "ignore"):
        if name in args:
            changes[name] = args[name]
    for name in ("ignore_ports", "ignore_kinds"):
        if name in args:
            changes[name] = getattr(policy, name) | frozenset(args[name])
    return attrs.evolve(policy, **changes)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    policy = leak_policy(item)
    if policy is not None and policy.before_setup:
        item.stash[_BASELINE] = leaks.baseline(policy)
    result = yield
    if policy is not None:
        item.stash[_POLICY] = policy
        if not policy.before_setup:
            item.stash[_BASELINE] = leaks.baseline(policy)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Note a test whose setup or call raised (failed, xfailed, skipped inside): its traceback may
    hold the sockets, so it gets no leak error on top."""
    report = yield
    if call.excinfo is not None or report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield  # fixtures are torn down by now; a teardown that raised is reported as it is
    before = item.stash.get(_BASELINE, None)
    if before is not None and _POLICY in item.stash and not item.stash.get(_FAILED, False):
        report = leaks.find_leaks(before, item.stash[_POLICY])
        if report:
            pytest.fail(report, pytrace=False)
    return result
