"""Peak memory of a large listing (issue 15): what is held per socket, on rows of real sockets."""

import os
import socket

import procsock
from procsock.model import Row
from sockzoo import needs_root

@needs_root
def test_inet_rows_share_their_addresses():
    """Rows of sockets on one address share one bytes object for it (the netlink dump's rows)."""
    listeners = [socket.socket() for _ in range(3)]
    try:
        for sock in listeners:
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
        ports = {sock.getsockname()[1] for sock in listeners}
        snap = procsock.snapshot(pid=os.getpid(), backend="netlink")
        addresses = [row[Row.LOCAL][0] for row, _, _ in snap.sockets.entries if row[Row.LOCAL][1] in ports]
    finally:
        for sock in listeners:
            sock.close()
    assert len(addresses) == 3 and addresses[0] == bytes([127, 0, 0, 1])
    assert all(address is addresses[0] for address in addresses)
