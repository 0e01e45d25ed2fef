"""Test helpers: the everyday socket zoo, a root-only mark, endpoints as ss prints them."""

import ipaddress
import json
import os

import pytest

from procsock.testing.zoo import SocketZoo, endpoint_of, inode_of, peer_of  # noqa: F401 (re-exported)

EVERYDAY_KINDS = ("tcp", "tcp6", "udp", "udp6", "unix")


def open_zoo(tmpdir: str) -> SocketZoo:
    """Sockets of the everyday kinds (no root needed), held by this process."""
    return SocketZoo(tmpdir).build(EVERYDAY_KINDS)


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (raw sockets, other users' processes, other namespaces)"
)


def ss_output(argv, **options) -> str:
    """What `ss ARGV` prints, as text. Other processes' socket and process names are theirs: not
    UTF-8, or holding blanks and newlines, on a busy host. Their bytes are kept (surrogateescape)
    and never stop a comparison of our own sockets."""
    import subprocess

    return subprocess.run(["ss", *argv], capture_output=True, text=True, errors="surrogateescape", check=True,
                          **options).stdout


def ss_unix_inodes(text: str) -> set:
    """The inodes of `ss -x` rows (NAME INODE PEER PEER_INODE last: names may hold blanks, the last
    three columns do not). A line whose third column from the end is not a number is a piece of
    another process's name that holds a newline, not a row."""
    return {int(fields[-3]) for fields in map(str.split, text.splitlines())
            if len(fields) >= 3 and fields[-3].isdigit()}


def ss_endpoint(text: str):
    """(ip or None for a wildcard, port or None) from an address as `ss -n` prints it."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]").split("%")[0]
    ip = None if host in ("*", "0.0.0.0", "::") else ipaddress.ip_address(host)
    return ip, None if port == "*" else int(port)


def model_endpoint(address):
    """The same pair from a model InetAddress, to compare with ss_endpoint()."""
    return (None if address.is_wildcard else address.ip), (None if address.port == 0 else address.port)


def usable_backends_serving(kind):
    """Names of the backends that can read the live host and serve `kind`."""
    from procsock.api import default_registry
    from procsock.model import Source
    from procsock.resolver import Resolver

    return [b.name for b in Resolver(default_registry(), Source.live()).usable_backends() if kind in b.info.kinds]


def as_user(uid, work, prepare=None):
    """`work()` in a forked child that ran `prepare()` (as we are) and then dropped to `uid` (with
    no groups; None: stays), its JSON-able result back; what it raised as {"error": ...}."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        result = {}
        try:
            os.close(read_end)
            if prepare is not None:
                prepare()
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            result = work()
        except BaseException as exc:  # reported to the parent, which fails the test with it
            result = {"error": "%s: %s" % (type(exc).__name__, exc)}
        finally:
            os.write(write_end, json.dumps(result).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    os.waitpid(child, 0)
    return json.loads(data)
