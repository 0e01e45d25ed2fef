"""Without privileges: as nobody, and as nobody with /proc mounted hidepid=2 in a private mount
namespace. Own sockets resolve exactly through netlink, others' processes are counted or hidden,
nothing crashes. Each check runs in a forked child (root drops to nobody there)."""

import ctypes
import os
import socket

import procsock
from procsock.api import default_registry
from sockzoo import as_user, needs_root

NOBODY = 65534
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18


def visible_uids():
    """The owners of the processes this /proc shows (a process that exits meanwhile is skipped)."""
    uids = set()
    for name in os.listdir("/proc"):
        try:
            if name.isdigit():
                uids.add(os.stat("/proc/" + name).st_uid)
        except FileNotFoundError:
            continue
    return sorted(uids)


def own_sockets_report():
    """What a snapshot says of two sockets of ours, and what it counts of the rest."""
    with socket.create_server(("127.0.0.1", 0)) as mine, socket.socket(socket.AF_UNIX) as unix:
        unix.bind(b"\0procsock-nobody-%d" % os.getpid())
        snap = procsock.snapshot()
        wanted = {os.fstat(s.fileno()).st_ino: s.fileno() for s in (mine, unix)}
        return {
            "own": sorted((s.record.inode, s.record.backend, [(o.pid, o.fd) for o in s.owners])
                          for s in snap.sockets if s.record.inode in wanted),
            "wanted": sorted((inode, [(os.getpid(), fd)]) for inode, fd in wanted.items()),
            "unreadable": len(snap.unreadable_processes),
            "visible_uids": visible_uids(),
            "answered_by": snap.answered_by,
            "notes": [note.text for note in snap.notes],
        }


def in_child(prepare):
    """Run `prepare()` then the checks in a forked child as nobody; returns what it reports."""
    default_registry()  # plugins load here, while their files are readable
    return as_user(NOBODY, own_sockets_report, prepare)


def hidepid_proc():
    """A private mount namespace with /proc mounted hidepid=2 (the child's alone)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "unshare/mount --make-rprivate")
    if libc.mount(b"proc", b"/proc", b"proc", 0, b"hidepid=2") != 0:
        raise OSError(ctypes.get_errno(), "mount -t proc -o hidepid=2")


def check_own_sockets(report):
    assert "error" not in report, report.get("error")
    assert [(inode, owners) for inode, _, owners in report["own"]] == [tuple(w) for w in report["wanted"]]
    assert {backend for _, backend, _ in report["own"]} == {"netlink"}
    assert report["answered_by"]["tcp"] == "netlink" and report["answered_by"]["unix"] == "netlink"


@needs_root
def test_nobody_resolves_own_sockets_through_netlink_and_counts_the_rest():
    report = in_child(lambda: None)
    check_own_sockets(report)
    assert report["unreadable"] > 0
    assert any("processes not readable" in note for note in report["notes"])


@needs_root
def test_nobody_under_hidepid_2_sees_only_itself_and_still_resolves_its_sockets():
    report = in_child(hidepid_proc)
    check_own_sockets(report)
    assert report["visible_uids"] == [NOBODY]  # hidepid=2: only nobody's own processes are in /proc
    assert report["unreadable"] == 0 and not any("not readable" in note for note in report["notes"])
    assert any(note.startswith("/proc is mounted hidepid=") and "other users' processes are hidden" in note
               for note in report["notes"])  # the kernel names hidepid=2 "invisible" in mountinfo
