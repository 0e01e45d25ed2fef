"""A watch's fd walk (procsock.rewalk): each poll walks again only the processes that ran or share
an fd table with one that ran, appeared or went, and gives what a full walk gives. Real processes:
a holder that blocks and a second process sharing its fd table (clone CLONE_FILES) that opens a
socket in it, then stays, exits or unshares; as root, and as nobody with the sharer undumpable
(kcmp may not compare it)."""

import ctypes
import json
import os
import socket

import pytest

from procsock.fdscan import scan_fds
from procsock.rewalk import repeated_walk, walk_again
from procsock.scope import keeping
from sockzoo import needs_root
from table_sharer import CLONE_SYSCALL, PR_SET_DUMPABLE, check

NOBODY = 65534

def _usable():
    with keeping({}):
        return repeated_walk("/proc", False) is not None


if not _usable():
    pytestmark = pytest.mark.skip(reason="the repeated walk needs a live /proc of our pid namespace, kcmp and "
                                         "Linux >= 5.12")


def mine(scan, pids):
    return {inode: rows for inode, rows in scan.owner_rows.items() if any(row[0] in pids for row in rows)}


def test_repeated_walks_give_what_a_full_walk_gives_for_sockets_opened_and_closed_between_them():
    store = {}
    with socket.socket() as kept_open:
        walk_again(store, "/proc", False)
        opened = socket.create_server(("127.0.0.1", 0))
        kept_open.bind(("127.0.0.1", 0))
        again = walk_again(store, "/proc", False)
        full = scan_fds("/proc", threads=True)
        assert mine(again, {os.getpid()}) == mine(full, {os.getpid()})
        assert os.fstat(opened.fileno()).st_ino in again.owner_rows
        opened.close()
        last = walk_again(store, "/proc", False)
        assert os.fstat(kept_open.fileno()).st_ino in last.owner_rows
        assert mine(last, {os.getpid()}) == mine(scan_fds("/proc", threads=True), {os.getpid()})


def test_a_repeated_walk_counts_what_a_full_walk_counts():
    store = {}
    walk_again(store, "/proc", False)
    again, full = walk_again(store, "/proc", False), scan_fds("/proc", threads=True)
    # other processes come and go between two walks on a busy host: the counts are those of one walk
    assert again.unreadable == full.unreadable or not full.unreadable
    assert again.hidden == full.hidden
    assert again.malformed == 0 and again.facts is None
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        with_context = walk_again({}, "/proc", True)
    assert with_context.facts is not None and os.getpid() in with_context.facts


def test_outside_a_keeping_block_nothing_is_kept():
    assert repeated_walk("/proc", False) is None


@pytest.mark.skipif(CLONE_SYSCALL is None, reason="no raw clone number known for this machine")
@pytest.mark.parametrize("then", ["stay", "exit", "unshare"])
def test_a_socket_opened_by_a_process_sharing_an_idle_ones_fd_table_is_that_ones_too(then):
    report = check(then)
    assert "error" not in report, report
    assert report["rows_reused"], "the idle holder's rows were walked again: nothing reused"
    holder, sharer, fd = report["holder"], report["sharer"], report["fd"]
    expected = [[holder, fd], [sharer, fd]] if then == "stay" else [[holder, fd]]
    assert report["full"] == expected, report  # what the kernel shows now
    assert report["walk"] == expected, report


@needs_root
@pytest.mark.skipif(CLONE_SYSCALL is None, reason="no raw clone number known for this machine")
@pytest.mark.parametrize("then", ["stay", "unshare"])
def test_as_nobody_an_undumpable_sharer_that_ran_makes_the_walk_read_everything_again(then):
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # as a program run as nobody is
            report = check(then, undumpable=True)
        except BaseException as exc:
            report = {"error": "%s: %s" % (type(exc).__name__, exc)}
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        report = json.loads(answer.read())
    os.waitpid(child, 0)
    assert "error" not in report, report
    assert report["rows_reused"], "the idle holder's rows were walked again: nothing reused"
    expected = [[report["holder"], report["fd"]]]  # nobody may not read the undumpable sharer's table
    assert report["full"] == expected, report
    assert report["walk"] == expected, report


def test_the_sharing_of_a_process_that_left_the_sort_is_remembered_for_the_next_poll():
    # 10 and 11 shared a table at the last poll; 11 exited during this poll's sort (its mark was read
    # before: it may have changed the table, then gone): the next poll must still know 10 shared with it
    from procsock.rewalk import _remembered, _Tables

    marks = {10: (1, 1), 11: (2, 2), 12: (3, 3), 13: (4, 4)}
    now = _Tables({12: frozenset({13}), 13: frozenset({12})}, frozenset(), frozenset({11}))
    last = {10: frozenset({11}), 11: frozenset({10}), 12: frozenset({13}), 13: frozenset({12})}
    assert _remembered(now, last, marks) == {10: {11}, 11: {10}, 12: {13}, 13: {12}}
    # what kcmp compared now replaces the last poll's; a process gone before the poll is forgotten
    compared = _Tables({}, frozenset(), frozenset())
    assert _remembered(compared, last, marks) == {}
    assert _remembered(now, last, {12: (3, 3), 13: (4, 4)}) == {12: {13}, 13: {12}}
