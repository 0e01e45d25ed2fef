"""SocketRecord's sixteen fields are named at every construction: a positional call, where swapping
two Optional[int] fields (rx_queue/tx_queue, uid/peer_inode) would go unnoticed, is refused."""

import pytest

from procsock.model import TCP, InetAddress, SocketRecord, SockType, State

FIELDS = dict(
    kind=TCP, inode=7, type=SockType.STREAM, protocol=6, state=State.LISTEN, local=InetAddress(bytes(4), 80),
    remote=None, rx_queue=0, tx_queue=128, uid=0, backend="b",
)


def test_socket_record_is_built_by_keyword():
    record = SocketRecord(**FIELDS)
    assert (record.rx_queue, record.tx_queue, record.peer_inode) == (0, 128, None)


def test_socket_record_refuses_positions():
    with pytest.raises(TypeError):
        SocketRecord(*FIELDS.values())
