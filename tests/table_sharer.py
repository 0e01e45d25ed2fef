"""Processes sharing one fd table (a raw clone with CLONE_FILES, not a thread), and the check the
tests of a watch's walk (procsock.rewalk) run with them, as root or as nobody.

The holder (forked from the caller) opens a TCP listener and blocks reading a pipe: it does not
run again until the check ends. The sharer shares a table with it and waits for a line on a
FIFO, then opens a TCP listener in the shared table and, per `then`: "stay" (keeps it), "exit"
(exits), "unshare" (takes a private copy of the table and closes the listener in it, so that only
the holder's table has it); then it reports the listener's inode and fd. The holder clones the
sharer at once, except with then="thread": on the FIFO's first line one of the holder's threads
takes a private fd table and clones the sharer from there, which opens, reports and exits on the
second line. The holder and the sharer may drop to other uids (dumpable: as a program run so is).
"""

import ctypes
import json
import os
import resource
import socket
import tempfile
import threading
import time

from sockzoo import as_user

CLONE_FILES, SIGCHLD, PR_SET_DUMPABLE = 0x400, 17, 4
CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "loongarch64": 220}.get(os.uname().machine)
LIBC = ctypes.CDLL(None, use_errno=True)
# libc through PyDLL, which keeps the GIL during a call (see clone_files)
LIBC_KEEPING_GIL = ctypes.PyDLL(None, use_errno=True)
DISTINCT_FD = 5000


def become(uid, undumpable: bool = False) -> None:
    """Drop to `uid` (None: stay), dumpable unless asked otherwise."""
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    if LIBC.prctl(PR_SET_DUMPABLE, 0 if undumpable else 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def clone_files() -> int:
    # keeping the GIL during the call: the child's only thread then holds it (a call that let it
    # go could clone while another thread held it, and the child would wait forever)
    child = LIBC_KEEPING_GIL.syscall(CLONE_SYSCALL, CLONE_FILES | SIGCHLD, 0, 0, 0, 0)
    if child < 0:
        raise OSError(ctypes.get_errno(), "clone(CLONE_FILES)")
    return child


def _sharer(commands, then: str, out: int) -> None:
    """The sharer's life after the clone (it never returns)."""
    try:
        while commands.readline():
            fd = socket.create_server(("127.0.0.1", 0)).detach()
            inode = os.fstat(fd).st_ino
            if then == "unshare":
                if LIBC.unshare(CLONE_FILES) != 0:
                    os._exit(4)
                os.close(fd)
            os.write(out, json.dumps({"inode": inode, "fd": fd}).encode() + b"\n")
            if then in ("exit", "thread"):
                break
    finally:
        os._exit(0)


def _holder(fifo: str, then: str, report: int, hold: int, holder_uid, sharer_uid, undumpable: bool) -> None:
    """The holder's life (it never returns): the sharer is cloned before either drops its uid."""
    listener = socket.create_server(("127.0.0.1", 0))
    started = {"holder": os.getpid(), "inode": os.fstat(listener.fileno()).st_ino}
    # an fd table of a size few processes have (FDSize 8192): on a busy host no other process's
    # table is of its size, so only its sharers can make it walked again where kcmp is refused
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= DISTINCT_FD < hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (DISTINCT_FD + 1, hard))
    os.dup2(listener.fileno(), DISTINCT_FD)
    commands = open(fifo, "rb", buffering=0)
    if then != "thread":
        sharer = clone_files()
        if sharer == 0:
            become(sharer_uid, undumpable)
            _sharer(commands, then, report)
        started["sharer"] = sharer
    become(holder_uid)
    os.write(report, json.dumps(started).encode() + b"\n")
    if then == "thread":
        commands.readline()

        def private_table():  # a thread with a table of its own, shared with a new process
            if LIBC.unshare(CLONE_FILES) != 0:
                os._exit(5)
            sharer = clone_files()
            if sharer == 0:
                _sharer(commands, then, report)
            os.write(report, json.dumps({"sharer": sharer, "tid": threading.get_native_id()}).encode() + b"\n")
            os.read(hold, 1)

        threading.Thread(target=private_table, daemon=True).start()
    os.read(hold, 1)


def start_pair(fifo: str, then: str, holder_uid=None, sharer_uid=None, undumpable: bool = False):
    """Fork the holder (which clones the sharer): (its pid, a reader of their reports, the write
    end of the pipe it blocks on: closing it lets it exit)."""
    report_r, report_w = os.pipe()
    hold_r, hold_w = os.pipe()
    holder = os.fork()
    if holder == 0:
        try:
            os.close(report_r)
            os.close(hold_w)
            _holder(fifo, then, report_w, hold_r, holder_uid, sharer_uid, undumpable)
        finally:
            os._exit(0)
    os.close(report_w)
    os.close(hold_r)
    return holder, os.fdopen(report_r, "rb"), hold_w


def cpu_clock(pid: int) -> int:
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def gone(pid: int) -> bool:
    """Whether `pid` has exited (gone, or a zombie)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def wait_until(done, what: str, seconds: float = 60.0) -> None:
    """Wait for `done()`, which the test observes; RuntimeError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("still waiting for " + what)
        time.sleep(0.001)


def holders(scan, inode: int, pids) -> list:
    return sorted([row[0], row[1]] for row in scan.owner_rows.get(inode, ()) if row[0] in pids)


def _observe(holder: int, started: dict, reports, commands, then: str):
    """The walks of one round (see check); None when the holder ran after all."""
    from procsock.fdscan import scan_fds
    from procsock.rewalk import walk_again

    store: dict = {}
    walk_again(store, "/proc", False)
    quiet = []

    def holder_stopped():  # a walk between two equal readings of the holder's clock
        clock = cpu_clock(holder)
        quiet[:] = [clock, walk_again(store, "/proc", False)]
        return cpu_clock(holder) == clock == store["poll"].marks[holder][1]

    wait_until(holder_stopped, "the holder to block")
    clock, last = quiet
    reused = walk_again(store, "/proc", False)
    rows = [scan.owner_rows.get(started["inode"], ()) for scan in (last, reused)]
    same_rows = bool(rows[0]) and len(rows[0]) == len(rows[1]) and all(a is b for a, b in zip(*rows))
    if then == "thread":  # the private table and its sharer appear now: one walk sees them, the next is the test
        commands.write(b"prepare\n")
        started.update(json.loads(reports.readline()))
        clock = cpu_clock(holder)
        walk_again(store, "/proc", False)
    commands.write(b"open\n")
    opened = json.loads(reports.readline())
    sharer = started["sharer"]
    if then in ("exit", "thread"):
        wait_until(lambda: gone(sharer), "the sharer to exit")
    scan = walk_again(store, "/proc", False)
    if cpu_clock(holder) != clock:
        return None
    full = scan_fds("/proc", threads=True)
    pids = (holder, sharer)
    return {"walk": holders(scan, opened["inode"], pids), "full": holders(full, opened["inode"], pids),
            "holder": holder, "sharer": sharer, "fd": opened["fd"], "rows_reused": same_rows}


def check(then: str, holder_uid=None, sharer_uid=None, undumpable: bool = False, walker_uid=None,
          rounds: int = 20) -> dict:
    """Walk (as `walker_uid`) until the holder's rows are reused (it stopped running), have the
    sharer open a socket, walk again: what that walk and a full walk say of the socket's holders.
    A round in which the holder ran after all (its CPU clock moved) proves nothing: run again."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        fifo = os.path.join(tmp, "commands")
        os.mkfifo(fifo)
        os.chmod(fifo, 0o666)
        for attempt in range(1, rounds + 1):
            holder, reports, hold = start_pair(fifo, then, holder_uid, sharer_uid, undumpable)
            commands = started = None
            try:
                commands = open(fifo, "wb", buffering=0)  # kept open: the sharer reads lines until EOF
                started = json.loads(reports.readline())
                report = as_user(walker_uid, lambda: _observe(holder, started, reports, commands, then))
                if report is not None:
                    return dict(report, attempts=attempt)
            finally:
                if commands is not None:
                    commands.close()
                for pid in [started.get("sharer")] if started else []:
                    try:
                        os.kill(pid, 9)
                    except (ProcessLookupError, TypeError):
                        pass
                os.close(hold)
                reports.close()
                os.waitpid(holder, 0)
    return {"error": "the holder kept running in %d rounds" % rounds}
