"""Plugin lifecycle through real entry points: lazy loading, a broken distribution, disabling."""

import os
import subprocess
import sys

BROKEN = os.path.join(os.path.dirname(__file__), "fixtures", "broken_plugin")


def procsock(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "procsock", *args], capture_output=True, text=True,
        env=dict(os.environ, **env), check=False,
    )


def test_importing_procsock_loads_no_plugin():
    code = "import sys, procsock; print(sorted(m for m in sys.modules if m.startswith('procsock_')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_distribution_whose_plugin_fails_to_import_is_reported_once_and_skipped():
    listed = procsock("--list-backends", PYTHONPATH=BROKEN)
    assert listed.returncode == 0
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith("broken ")]
    assert "broken: import failed: ImportError: No module named 'vsock_helpers'" in line
    assert "(from procsock-broken)" in line
    assert any(row.startswith("netlink ") and "ready" in row for row in listed.stdout.splitlines())
    run = procsock("--pid", str(os.getpid()), PYTHONPATH=BROKEN)
    assert run.returncode == 0
    notes = [row for row in run.stderr.splitlines() if "broken" in row]
    assert notes == [
        "procsock: plugin broken (from procsock-broken) is broken and was skipped: import failed: "
        "ImportError: No module named 'vsock_helpers' (plugin test fixture)"
    ]


def test_disabled_broken_plugin_is_not_even_imported():
    run = procsock("--list-backends", "--disable-plugin", "broken", PYTHONPATH=BROKEN)
    assert "broken" not in run.stdout and run.returncode == 0
    run = procsock("--list-backends", PYTHONPATH=BROKEN, PROCSOCK_DISABLE_PLUGINS="broken,pidfd")
    names = [row.split()[0] for row in run.stdout.splitlines()]
    assert "broken" not in names and "pidfd" not in names and "netlink" in names
