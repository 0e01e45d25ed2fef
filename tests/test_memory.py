"""Peak memory of a large listing (issue 15): what is held per socket, counted by tracemalloc
(bytes allocated, not time), on rows of real sockets."""

import os
import socket
import tracemalloc

import procsock
from procsock.model import Row, Sockets
from procsock.render import table_lines
from sockzoo import needs_root

COPIES = 5000  # entries the table is made of: enough that the per-row cost dwarfs the fixed one


def _own_entries():
    """This process's sockets as a snapshot's entries: a TCP listener, a connected pair, a socketpair."""
    held = [socket.socket(), socket.socket()]
    held[0].bind(("127.0.0.1", 0))
    held[0].listen(1)
    held[1].connect(held[0].getsockname())
    held.append(held[0].accept()[0])
    held += socket.socketpair()
    try:
        return procsock.snapshot(pid=os.getpid()).sockets.entries
    finally:
        for sock in held:
            sock.close()


def test_table_holds_one_string_per_row_not_its_cells():
    """The table needs every row's cells for its widths before its first line; what it holds
    meanwhile is about one string per row (a tuple of eight strings per row held 5 times more)."""
    found = _own_entries()
    assert found
    many = Sockets(found * (COPIES // len(found) + 1))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        written = 0
        for line in table_lines(many, details=True):  # written away, as the command does
            written += 1
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    rows = len(many.entries)
    assert written > rows
    widest = max(len(line) for line in table_lines(Sockets(found)))
    assert peak < rows * (widest + 120), (peak, rows, widest)


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
