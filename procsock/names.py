"""Names for numbers, for `-r/--resolve` only (procsock is numeric by default): host names through the
system's resolver (socket.getnameinfo), service names from the services database.

A name lookup may block for as long as a DNS server keeps it waiting: each address is looked up in
a daemon thread, all of them within one time budget, and an address without an answer by then stays
numeric (its thread is left to finish on its own; it never delays the output or the exit).
"""

import ipaddress
import re
import socket
import threading
import time
from typing import Callable, Dict, Iterable, Optional

from procsock.text import escape_text

DEFAULT_BUDGET = 2.0  # seconds for every host name lookup of one run together
MAX_THREADS = 32


def _lookup(packed: bytes) -> Optional[str]:
    """The host name of an address, None when it has none."""
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    try:
        host, _ = socket.getnameinfo((socket.inet_ntop(family, packed), 0), socket.NI_NAMEREQD)
    except (OSError, ValueError):
        return None
    return host


def _looks_like_an_address(name: str) -> bool:
    """Whether a name could be read as an address: a PTR record may say "10.0.0.1" for another
    address, and -r must not show one address as another."""
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


def host_names(addresses: Iterable[bytes], budget: float = DEFAULT_BUDGET,
               lookup: Callable[[bytes], Optional[str]] = _lookup) -> Dict[bytes, str]:
    """Packed address -> host name, for the addresses that answer within `budget` seconds (the
    wildcard addresses are not looked up)."""
    pending = [a for a in dict.fromkeys(addresses) if any(a)]
    found: Dict[bytes, str] = {}
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def work(queue):
        while True:
            with lock:
                if not queue:
                    break
                address = queue.pop()
            name = lookup(address)
            with lock:
                if name and not _looks_like_an_address(name):
                    found[address] = escape_text(name)  # a DNS answer is no one's promise
            done.release()

    workers = [threading.Thread(target=work, args=(pending,), daemon=True)
               for _ in range(min(MAX_THREADS, len(pending)))]
    total = len(pending)
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + budget
    for _ in range(total):
        if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
    with lock:
        pending.clear()  # what was not started will not be
        return dict(found)


# A service's name as services are named: letters, digits and . _ + -, not only digits.
_SERVICE_NAME = re.compile(r"[A-Za-z0-9._+-]*[A-Za-z._+-][A-Za-z0-9._+-]*")


def service_name(port: int, protocol: str) -> Optional[str]:
    """The services database's name of a port ("ssh" for 22/tcp); None when it has none, or none
    to believe: NSS may take it from the network, as it may a host name, and a name that is not
    one (control bytes, not UTF-8, a number or `*` that reads as another port, `a:443`) would show
    something false where the port's number shows the truth."""
    try:
        name = socket.getservbyport(port, protocol)
    except (OSError, OverflowError, TypeError, ValueError):  # ValueError: UnicodeDecodeError
        return None
    return name if _SERVICE_NAME.fullmatch(name) else None


class Names:
    """The names -r shows in place of numbers: `hosts` (packed -> name), services looked up once."""

    def __init__(self, hosts: Dict[bytes, str]) -> None:
        self.hosts = hosts
        self._services: Dict[tuple, str] = {}

    def endpoint_text(self, packed: bytes, port: int, protocol: str, numeric_host: str) -> str:
        """host:service as ss -r shows it (numbers where no name is known; port 0 as *)."""
        host = self.hosts.get(packed)
        if host is None:
            host = numeric_host if len(packed) == 4 else "[%s]" % numeric_host
        key = (port, protocol)
        service = self._services.get(key)
        if service is None:
            service = self._services[key] = (
                (service_name(port, protocol) if protocol in ("tcp", "udp") else None) or str(port or "*"))
        return "%s:%s" % (host, service)
