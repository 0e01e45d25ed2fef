"""A watch's fd walk (procsock.rewalk): each poll walks again only the processes that ran or share
an fd table with one that ran, appeared or went, and gives what a full walk gives. Real processes:
a holder that blocks and a second process sharing its fd table (clone CLONE_FILES) that opens a
socket in it, then stays, exits or unshares; as root, and as nobody with the sharer undumpable
(kcmp may not compare it)."""

import os
import socket

import pytest

from procsock.fdscan import scan_fds
from procsock.rewalk import repeated_walk, walk_again
from procsock.scope import keeping
from sockzoo import needs_root
from table_sharer import CLONE_SYSCALL, check

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


needs_clone = pytest.mark.skipif(CLONE_SYSCALL is None, reason="no raw clone number known for this machine")


@needs_clone
@pytest.mark.parametrize("then", ["stay", "exit", "unshare", "thread"])
def test_a_socket_opened_by_a_process_sharing_an_idle_ones_fd_table_is_that_ones_too(then):
    # "thread": the table is a thread's own, and it and its sharer were made since the last walk
    report = check(then)
    assert "error" not in report, report
    assert report["rows_reused"], "the idle holder's rows were walked again: nothing reused"
    holder, sharer, fd = report["holder"], report["sharer"], report["fd"]
    expected = [[holder, fd], [sharer, fd]] if then == "stay" else [[holder, fd]]
    assert report["full"] == expected, report  # what the kernel shows now
    assert report["walk"] == expected, report


@needs_root
@needs_clone
@pytest.mark.parametrize("sharer, then", [("undumpable", "stay"), ("undumpable", "unshare"), ("root", "stay"),
                                          ("root", "exit")])
def test_as_nobody_a_sharer_kcmp_refuses_makes_the_tables_of_its_size_walked_again(sharer, then):
    # nobody may not compare (kcmp) its own undumpable process, nor root's, with the holder
    report = check(then, holder_uid=NOBODY, sharer_uid=NOBODY if sharer == "undumpable" else None,
                   undumpable=sharer == "undumpable", walker_uid=NOBODY)
    assert "error" not in report, report
    assert report["rows_reused"], "the idle holder's rows were walked again: nothing reused"
    expected = [[report["holder"], report["fd"]]]  # nobody may not read the sharer's table
    assert report["full"] == expected, report
    assert report["walk"] == expected, report


# The rule itself (rewalk._stale is a pure function of what two polls read): the cases a real
# process can hit only inside a window of microseconds, or with a pid the kernel hands out again.
def poll(marks, kernel=(), sharing=None, opaque=(), sizes=None):
    from procsock.rewalk import _Poll

    return _Poll(marks, frozenset(kernel), {} if sharing is None else sharing, frozenset(opaque), sizes or {})


def stale(first, now, last, walked=None, sizes_before=None):
    from procsock.rewalk import _stale, _Walked

    kept = {pid: _Walked((), (), 0, None, "", None, 1) for pid in now.marks} if walked is None else walked
    return _stale(first, now, last, kept, sizes_before or {})


def test_a_process_that_did_not_move_and_shares_nothing_is_kept():
    marks = {10: (1, 5), 11: (2, 7)}
    assert stale(marks, poll(marks), poll(marks)) == set()
    assert stale(marks, poll(marks), None) is None  # no last poll: walk everything
    assert stale(marks, poll(marks, sharing=None)._replace(sharing=None), poll(marks)) is None  # sharing unknown
    assert stale(marks, poll(marks), poll(marks)._replace(sharing=None)) is None


def test_a_kernel_thread_is_kept_only_at_the_same_directory():
    last = poll({10: (1, 5), 20: (2, 9)}, kernel=[20], sharing={10: frozenset({30})})
    ran = {10: (1, 5), 20: (2, 10)}  # the kernel thread ran: it holds no fds all the same
    assert stale(ran, poll(ran, kernel=[20]), last) == set()
    reused = {10: (1, 5), 20: (3, 10)}  # pid 20 is another process now (a new directory), a kernel thread or not
    assert stale(reused, poll(reused, kernel=[20]), last) == {20}
    assert stale(reused, poll(reused), last) == {20}


def test_a_sharer_that_ran_during_the_sort_or_went_makes_its_sharers_stale():
    sharing = {10: frozenset({11}), 11: frozenset({10})}
    last = poll({10: (1, 5), 11: (2, 7)}, sharing=sharing)
    first = {10: (1, 5), 11: (2, 7)}  # no clock moved before the sort...
    during = poll({10: (1, 5), 11: (2, 8)})  # ...11 ran during it, then unshared: kcmp no longer pairs them
    assert stale(first, during, last) == {10, 11}
    went = poll({10: (1, 5)})  # 11 exited during the sort
    assert stale(first, went, last) == {10, 11}
    gone = poll({10: (1, 5)})  # 11 exited before this poll
    assert stale({10: (1, 5)}, gone, last) == {10}
    now = poll(first, sharing=sharing)  # sharing kcmp sees now counts as much as the last poll's
    assert stale({10: (1, 5), 11: (2, 6)}, now._replace(marks={10: (1, 5), 11: (2, 6)}), poll(first)) == {10, 11}


def test_a_process_kcmp_refuses_that_moved_makes_the_tables_of_its_size_stale():
    last_marks = {1: (1, 1), 10: (2, 5), 11: (3, 5), 12: (4, 5)}
    last = poll(last_marks, opaque=[1], sizes={1: 128, 10: 128, 11: 256, 12: 64})
    marks = {1: (1, 2), 10: (2, 5), 11: (3, 5), 12: (4, 5)}  # pid 1 ran
    now = poll(marks, opaque=[1], sizes={1: 128, 10: 128, 11: 256, 12: 128})
    # 10: its size now and then; 12: its size now (a table grows while shared); 11: neither
    assert stale(marks, now, last, sizes_before={1: 128}) == {1, 10, 12}
    assert stale(marks, now, last, sizes_before={1: 64}) is None  # its table grew while the sizes were read
    unknown = now._replace(sizes={1: 128, 10: 128, 11: None, 12: 64})
    assert stale(marks, unknown, last, sizes_before={1: 128}) == {1, 10, 11}  # a size not read: walked
    still = poll({1: (1, 1), 10: (2, 5), 11: (3, 5), 12: (4, 5)}, opaque=[1], sizes={1: 128, 10: 128})
    assert stale(last_marks, still, last, sizes_before={1: 128}) == set()  # it did not move: nothing to fear
    went = poll({10: (2, 5), 11: (3, 5), 12: (4, 5)}, sizes={10: 128, 11: 256, 12: 64})
    assert stale({10: (2, 5), 11: (3, 5), 12: (4, 5)}, went, last) == {10}  # gone: its size at the last poll


def test_a_process_that_left_the_sort_alive_keeps_its_last_sharing_for_the_next_poll():
    # 11 was sorted, then exited (or kcmp refused it) after the clocks were read again: it may
    # have changed the table it shared with 10 and gone; the next poll must still know the two shared
    from procsock.rewalk import _remembered

    last = poll({10: (1, 5), 11: (2, 7)}, sharing={10: frozenset({11}), 11: frozenset({10})})
    told = {12: frozenset({13}), 13: frozenset({12})}
    assert _remembered(told, frozenset(), last) == told
    assert _remembered(told, frozenset({11}), last) == {10: {11}, 11: {10}, 12: {13}, 13: {12}}
    assert _remembered(told, frozenset({14}), last) is None  # new since the last poll: its sharing is unknown
    assert _remembered(told, frozenset({11}), last._replace(sharing=None)) is None
