"""`procsock metrics`: counts of this host's sockets as a Prometheus text exposition, printed once
(for node exporter's textfile collector) or served to scrapers with --listen (extra `procsock[prometheus]`)."""

import argparse
import sys

from procsock.cli import options
from procsock.errors import ProcsockError

NAME = "metrics"
HELP = "counts of sockets by kind, state, listening port, as Prometheus text (--listen: serve it)"
OPTIONS = {"selection": None, "source": None, "plugins": None}
MISSING = "procsock metrics needs prometheus_client: pip install 'procsock[prometheus]'"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", metavar="ADDR:PORT", type=listen_address,
                        help="serve /metrics over HTTP here (port 0: any free port) until killed")


def listen_address(text: str):
    """(address, port) of `ADDR:PORT` (`[V6ADDR]:PORT` for IPv6)."""
    address, colon, port = text.rpartition(":")
    address = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    if not colon or not address or not port.isdigit() or int(port) > 0xFFFF:
        raise argparse.ArgumentTypeError("bad --listen %r (accepted: ADDR:PORT, [V6ADDR]:PORT)" % text)
    return address, int(port)


def run(args: argparse.Namespace, out) -> int:
    try:
        from procsock import metrics
    except ImportError:
        raise ProcsockError(MISSING) from None
    import attrs

    registry, source, query = options.resolving(args)
    query = attrs.evolve(query, context=True)  # the series by unit, container and pod
    exposed = metrics.collector_registry(metrics.SnapshotCollector(registry, source, query, args.backend))
    if args.listen is None:
        out.write(metrics.exposition(exposed))
        return 0
    options.long_run()
    try:
        server, thread = metrics.serve(*args.listen, exposed)
    except OSError as exc:
        raise ProcsockError("cannot listen on %s:%d: %s" % (*args.listen, exc.strerror or exc)) from None
    host, port = server.server_address[:2]
    print("procsock: serving metrics on http://%s:%d/metrics" % ("[%s]" % host if ":" in host else host, port),
          file=sys.stderr, flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0
