"""What a Prometheus scrape of `procsock metrics --listen` costs against a bare snapshot, on this host.

    python3 bench/scrape.py [--runs 20]

Serves the collector in-process on 127.0.0.1 (a free port) and times, interleaved, a scrape over
HTTP (snapshot, counting, exposition, transfer) and a `procsock.snapshot()` of the same host;
prints the medians, their ratio, the exposition's size and series count, and this process's RSS
after the first and the last scrape (a scrape must not leak). Open a workload first, e.g.
`sleep 100000 | python3 bench/workload.py --sockets 10000 --procs 50 &` (kill it afterwards).
"""

import argparse
import http.client
import statistics
import time

import procsock
from procsock import metrics
from procsock.api import default_registry
from procsock.model import Query, Source


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    collector = metrics.SnapshotCollector(default_registry(), Source.live(), Query())
    server, thread = metrics.serve("127.0.0.1", 0, metrics.collector_registry(collector))
    port = server.server_address[1]

    def scrape() -> str:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
        connection.close()
        return body

    scraped, snapped, sizes, rss = [], [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        body = scrape()
        scraped.append(time.perf_counter() - started)
        rss.append(rss_kib())
        started = time.perf_counter()
        sockets = len(procsock.snapshot().sockets)
        snapped.append(time.perf_counter() - started)
        sizes.append((len(body), sum(1 for line in body.splitlines() if line and not line.startswith("#")), sockets))
    server.shutdown()
    thread.join()
    scrape_s, snap_s = statistics.median(scraped), statistics.median(snapped)
    print("sockets (last snapshot): %d" % sizes[-1][2])
    print("scrape over HTTP, median of %d: %.3f s (min %.3f, max %.3f)" % (runs, scrape_s, min(scraped), max(scraped)))
    print("procsock.snapshot(), median of %d: %.3f s (min %.3f, max %.3f)" % (runs, snap_s, min(snapped), max(snapped)))
    print("scrape / snapshot: %.2fx" % (scrape_s / snap_s))
    print("exposition: %d bytes, %d samples" % sizes[-1][:2])
    print("RSS after the first scrape %d KiB, after the last %d KiB" % (rss[0], rss[-1]))


if __name__ == "__main__":
    main()
