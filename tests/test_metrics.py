"""`procsock metrics`: Prometheus counts of real sockets, printed and scraped over real HTTP."""

import gc
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tracemalloc

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from procsock import metrics  # noqa: E402
from procsock.api import default_registry  # noqa: E402
from procsock.model import Query, Source  # noqa: E402


def samples(text):
    """{(name, sorted label items): value} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def run(*args):
    return subprocess.run([sys.executable, "-m", "procsock", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


def serving(query):
    """A collector of `query`'s sockets served on 127.0.0.1 (a free port); its URL."""
    collector = metrics.SnapshotCollector(default_registry(), Source.live(), query)
    server, thread = metrics.serve("127.0.0.1", 0, metrics.collector_registry(collector))
    yield "http://127.0.0.1:%d/metrics" % server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def served_host():
    """Counts of every socket of the host (a scrape costs a snapshot: seconds on a busy host)."""
    yield from serving(Query())


@pytest.fixture
def served():
    """Counts of this process's sockets (as `--pid`): the same collector, at the cost of one process."""
    yield from serving(Query(pid=os.getpid()))


def scrape(url):
    """GET the URL's exposition (http.client: urllib's opener keeps bytes per request of its own)."""
    host, _, port = url.split("/")[2].rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", "/metrics")
        reply = connection.getresponse()
        assert reply.status == 200
        return reply.read().decode("utf-8")
    finally:
        connection.close()


def test_a_scrape_of_the_host_counts_our_listener_by_kind_state_and_port(served_host, listener):
    port = listener.getsockname()[1]
    found = samples(scrape(served_host))
    assert found[("procsock_up", ())] == 1
    assert found[("procsock_listeners", (("kind", "tcp"), ("port", str(port))))] == 1
    assert found[("procsock_sockets", (("kind", "tcp"), ("state", "LISTEN")))] >= 1
    assert found[("procsock_scrape_duration_seconds", ())] > 0
    assert ("procsock_unresolved_sockets", ()) in found and ("procsock_fallbacks", ()) in found


def test_each_scrape_takes_a_new_snapshot(served, listener):
    port = listener.getsockname()[1]
    assert samples(scrape(served))[("procsock_listeners", (("kind", "tcp"), ("port", str(port))))] == 1
    listener.close()
    assert ("procsock_listeners", (("kind", "tcp"), ("port", str(port)))) not in samples(scrape(served))


def test_series_are_counts_never_one_per_connection(served, listener):
    port = listener.getsockname()[1]
    established = ("procsock_sockets", (("kind", "tcp"), ("state", "ESTABLISHED")))
    before = samples(scrape(served)).get(established, 0)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    accepted = [listener.accept()[0] for _ in clients]
    try:
        found = samples(scrape(served))
        labels = {name for (_, items) in found for name, _ in items}
        assert labels <= {"kind", "state", "port", "code", "unit", "container", "pod"}
        assert found[established] == before + 40
        assert not [key for key in found if dict(key[1]).get("port") not in (None, str(port)) and
                    key[0] == "procsock_listeners" and dict(key[1])["port"] in
                    {str(c.getsockname()[1]) for c in clients}]  # client ports never become labels
    finally:
        for sock in clients + accepted:
            sock.close()


def test_the_command_prints_the_text_exposition(listener):
    done = run("metrics", "--pid", os.getpid())
    assert done.returncode == 0, done.stderr
    found = samples(done.stdout)
    assert found[("procsock_listeners", (("kind", "tcp"), ("port", str(listener.getsockname()[1]))))] == 1


def test_the_command_serves_with_listen_until_stopped(listener):
    proc = subprocess.Popen([sys.executable, "-m", "procsock", "metrics", "--listen", "127.0.0.1:0",
                             "--pid", str(os.getpid())], stderr=subprocess.PIPE, text=True)
    try:
        said = proc.stderr.readline()  # once it listens (or '' if it died)
        assert said.startswith("procsock: serving metrics on http://127.0.0.1:"), said
        url = said.split()[-1]
        found = samples(scrape(url))
        assert found[("procsock_listeners", (("kind", "tcp"), ("port", str(listener.getsockname()[1]))))] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        proc.stderr.close()


@pytest.mark.parametrize("bad", ["9100", "127.0.0.1:", "127.0.0.1:65536", ":80", "x:y"])
def test_a_bad_listen_address_is_a_usage_error(bad):
    done = run("metrics", "--listen", bad)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--listen" in done.stderr


def test_an_address_in_use_is_a_one_line_error(listener):
    done = run("metrics", "--listen", "127.0.0.1:%d" % listener.getsockname()[1])
    assert done.returncode == 1 and done.stderr.startswith("procsock: cannot listen on 127.0.0.1:")
    assert done.stderr.count("\n") == 1


def test_without_the_extra_the_command_names_it():
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from procsock.cli import main; sys.exit(main(['metrics']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "procsock: %s\n" % "procsock metrics needs prometheus_client: pip install " \
        "'procsock[prometheus]'"


LEAK_BYTES = 100  # per scrape: less than one socket row (a 16-tuple alone is 184 bytes)


def _growth(scrape_once, scrapes=200, settle=50):
    """(growth, tolerance) of traced memory over `scrapes` scrapes: the mean of the last `settle`
    samples against the mean of the `settle` after warm-up; the tolerance is the first window's
    own spread (3 standard deviations: the host's sockets come and go between scrapes) plus
    LEAK_BYTES per scrape between the windows (the test process's own allocations: pytest's,
    threads')."""
    for _ in range(10):  # warm-up: caches, the first snapshot's imports
        scrape_once()
    tracemalloc.start()
    try:
        sampled = []
        for _ in range(scrapes):
            scrape_once()
            gc.collect()
            sampled.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    first, last = sampled[:settle], sampled[-settle:]
    return statistics.mean(last) - statistics.mean(first), 3 * statistics.pstdev(first) + LEAK_BYTES * (
        scrapes - settle)


def test_200_scrapes_leave_memory_flat(served):
    growth, tolerance = _growth(lambda: samples(scrape(served)))
    assert growth <= tolerance, "memory grew %d bytes over 200 scrapes (tolerance %d)" % (growth, tolerance)


def test_the_flatness_check_sees_a_leak_of_a_row_per_scrape():
    kept = []
    growth, tolerance = _growth(lambda: kept.append(tuple(range(len(kept), len(kept) + 16))))  # a row's size
    assert growth > tolerance
