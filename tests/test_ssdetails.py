"""Details people can read: -i/-e/-m/-o laid out as ss lays them out (procsock.ssdetails), JSON raw."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from procsock.details import Extended, MemInfo, TcpInfo
from procsock.model import TCP, InetAddress, SockType, SocketRecord, State, row_from_record
from procsock.render import row_details_text
from procsock.ssdetails import UNLIMITED, details_text, rate, shutdown_arrow, tcp_info_parts, timer_text, when


@pytest.mark.parametrize("bps, text", [
    (0, "0bps"), (12, "12bps"), (999, "999bps"), (640000, "640kbps"), (2.1e9, "2.1Gbps"), (79.4e9, "79.4Gbps"),
    (110.4e9, "110Gbps"), (3.5e12, "3.5Tbps"), (1e6, "1Mbps"),
])
def test_rates_as_ss_prints_them(bps, text):
    assert rate(bps) == text


@pytest.mark.parametrize("ms, text", [
    (200, "200ms"), (1500, "1.500sec"), (12000, "12sec"), (12500, "12sec"), (60000, "1min"), (61500, "1min1sec"),
    (7199000, "119min"), (5, "005ms"),
])
def test_timer_times_as_ss_prints_them(ms, text):
    assert when(ms) == text


def test_timers_name_their_kind():
    assert timer_text(2, 7199000, 0) == "timer:(keepalive,119min,0)"
    assert timer_text(1, 204, 3) == "timer:(on,204ms,3)"
    assert timer_text(9, 0, 0) == "timer:(unknown,,0)"


def test_shutdown_arrows():
    assert [shutdown_arrow(mask) for mask in range(4)] == ["<->", "-->", "<--", "---"]


def test_tcp_info_in_ms_and_rates_with_unfilled_fields_left_out():
    info = TcpInfo(rto=204000, rtt=26, rttvar=13, snd_mss=32768, snd_cwnd=10, pacing_rate=262500000,
                   max_pacing_rate=UNLIMITED, snd_ssthresh=0x7FFFFFFF, reordering=3, retrans=0, total_retrans=2)
    assert tcp_info_parts(info, "cubic", State.ESTABLISHED) == [
        "cubic", "rto:204", "rtt:0.026/0.013", "mss:32768", "cwnd:10", "send 101Gbps", "pacing_rate 2.1Gbps",
        "retrans:0/2",
    ]


def test_an_unlimited_pacing_rate_and_the_initial_rto():
    info = TcpInfo(rto=3000000, pacing_rate=UNLIMITED, snd_cwnd=10, sacked=5)
    assert tcp_info_parts(info, None, State.LISTEN) == ["cwnd:10", "pacing_rate unlimited"]
    assert tcp_info_parts(TcpInfo(), None, State.ESTABLISHED) == []  # an old kernel filled nothing


def test_the_details_line_in_ss_order():
    extended = Extended(
        tcp_info=TcpInfo(snd_cwnd=10), meminfo=MemInfo(1, 2, 3, 4, 5, 6, 7, 8, 9), congestion="bbr\x1b",
        shutdown=0, mark=0x5A5, cgroup_id=7, timer=(2, 60000, 0),
    )
    row = row_from_record(SocketRecord(
        kind=TCP, inode=5, type=SockType.STREAM, protocol=6, state=State.ESTABLISHED, local=InetAddress(bytes(4), 1),
        remote=InetAddress(bytes(4), 2), rx_queue=0, tx_queue=0, uid=1000, backend="t", cookie=0x1F, extended=extended,
    ))
    assert row_details_text(row) == details_text(row) == (
        "timer:(keepalive,1min,0) uid:1000 sk:1f fwmark:0x5a5 cgroup_id:7 <-> "
        "skmem:(r1,rb2,t3,tb4,f5,w6,o7,bl8,d9) bbr\\x1b cwnd:10"
    )


def words(line):
    """The key:value words of a details line."""
    return dict(re.findall(r"(?:^|\s)(\w+):(\([^)]*\)|[\w./,]+)", line))


@pytest.fixture
def keepalive_connection():
    """(listener, client with SO_KEEPALIVE, accepted server side), closed afterwards."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    server, _ = listener.accept()
    yield listener, client, server
    for sock in (client, server, listener):
        sock.close()


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs iproute2's ss")
def test_the_same_words_as_ss_for_the_same_socket(keepalive_connection):
    listener, client, server = keepalive_connection
    port = client.getsockname()[1]
    chosen = ["sport", "=", str(port), "dport", "=", str(listener.getsockname()[1])]  # one 4-tuple: one socket
    ss = subprocess.run(["ss", "-Htnoiem", *chosen], capture_output=True, text=True, check=True, timeout=60).stdout
    proc = subprocess.run([sys.executable, "-m", "procsock", "-Htoiem", "--pid", str(os.getpid()), *chosen],
                          capture_output=True, text=True, timeout=60)
    ours = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(ours) == 2 and ours[1].startswith("\t "), proc.stderr
    assert len(ss.strip().splitlines()) == 2, ss
    theirs, mine = words(" ".join(ss.split("\n"))), words(ours[1])
    stable = ("timer", "wscale", "mss", "pmtu", "rcvmss", "advmss", "cwnd", "sk", "rto")
    assert {k: mine.get(k) for k in stable} == {k: theirs.get(k) for k in stable}
    assert mine["timer"].startswith("(keepalive,") and re.fullmatch(r"[\d.]+/[\d.]+", mine["rtt"])
    assert re.fullmatch(r"\(r\d+,rb\d+,t\d+,tb\d+,f\d+,w\d+,o\d+,bl\d+,d\d+\)", mine["skmem"])
    assert re.search(r" send [\d.]+[kMGT]?bps ", ours[1]) and re.search(r" pacing_rate [\d.]+[kMGT]?bps", ours[1])


def test_json_keeps_raw_numbers(keepalive_connection):
    listener, client, server = keepalive_connection
    proc = subprocess.run([sys.executable, "-m", "procsock", "-io", "--json", "--backend", "netlink", "--pid",
                           str(os.getpid())], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    found = {s["inode"]: s["extended"] for s in json.loads(proc.stdout)["sockets"]}
    mine = found[os.fstat(client.fileno()).st_ino]
    assert mine["tcp_info"]["rto"] >= 200000 and isinstance(mine["tcp_info"]["rtt"], int)  # µs, as the kernel
    assert mine["timer"]["timer"] == 2 and mine["timer"]["expires_ms"] > 60000 and mine["timer"]["retrans"] == 0
    assert found[os.fstat(listener.fileno()).st_ino]["tcp_info"]["pacing_rate"] == UNLIMITED
