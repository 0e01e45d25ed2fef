"""Two processes sharing one fd table (a raw clone with CLONE_FILES, not a thread), and the check
the tests of a watch's walk (procsock.rewalk) run with them, as root or as nobody.

The holder (forked from the caller) opens a TCP listener, clones the sharer and blocks reading a
pipe: it does not run again until the check ends. The sharer (made undumpable if asked) waits
for a line on a FIFO, opens a TCP listener in the shared table, then, per `then`: "stay" (keeps
it), "exit" (exits), "unshare" (takes a private copy of the table and closes the listener in it,
so that only the holder's table has it); then it reports the listener's inode and fd.
"""

import ctypes
import json
import operator
import os
import socket
import tempfile
import time

CLONE_FILES, SIGCHLD, PR_SET_DUMPABLE = 0x400, 17, 4
CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "loongarch64": 220}.get(os.uname().machine)


def _sharer(libc, fifo: str, then: str, undumpable: bool, out: int) -> None:
    if undumpable and libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        os._exit(3)
    with open(fifo, "rb", buffering=0) as commands:
        while commands.readline():
            fd = socket.create_server(("127.0.0.1", 0)).detach()
            inode = os.fstat(fd).st_ino
            if then == "unshare":
                if libc.unshare(CLONE_FILES) != 0:
                    os._exit(4)
                os.close(fd)
            os.write(out, json.dumps({"inode": inode, "fd": fd}).encode() + b"\n")
            if then == "exit":
                os._exit(0)
    os._exit(0)


def start_pair(fifo: str, then: str, undumpable: bool):
    """Fork the holder (which clones the sharer): (its pid, a reader of their reports, the write
    end of the pipe it blocks on; closing it lets it exit)."""
    report_r, report_w = os.pipe()
    hold_r, hold_w = os.pipe()
    holder = os.fork()
    if holder == 0:
        try:
            os.close(report_r)
            os.close(hold_w)
            libc = ctypes.CDLL(None, use_errno=True)
            listener = socket.create_server(("127.0.0.1", 0))
            sharer = libc.syscall(CLONE_SYSCALL, CLONE_FILES | SIGCHLD, 0, 0, 0, 0)
            if sharer == 0:
                _sharer(libc, fifo, then, undumpable, report_w)
            started = {"holder": os.getpid(), "sharer": sharer, "inode": os.fstat(listener.fileno()).st_ino}
            os.write(report_w, json.dumps(started).encode() + b"\n")
            os.read(hold_r, 1)
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


def check(then: str, undumpable: bool = False, rounds: int = 20) -> dict:
    """Walk until the holder's rows are reused (it stopped running), have the sharer open a
    socket, walk again: what that walk and a full walk say of the socket's holders. A round in
    which the holder ran after all (its CPU clock moved) proves nothing and is run again."""
    from procsock.fdscan import scan_fds
    from procsock.rewalk import walk_again

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        fifo = os.path.join(tmp, "commands")
        os.mkfifo(fifo)
        for attempt in range(1, rounds + 1):
            holder, reports, hold = start_pair(fifo, then, undumpable)
            sharer = commands = None
            try:
                started = json.loads(reports.readline())
                sharer = started["sharer"]
                commands = open(fifo, "wb", buffering=0)  # kept open: the sharer waits for lines until EOF
                store: dict = {}
                walk_again(store, "/proc", False)
                quiet = []

                def holder_stopped():  # a walk between two equal readings of the holder's clock
                    clock = cpu_clock(holder)
                    quiet[:] = [clock, walk_again(store, "/proc", False)]
                    return cpu_clock(holder) == clock == store["marks"][holder][1]

                wait_until(holder_stopped, "the holder to block")
                clock, last = quiet
                reused = walk_again(store, "/proc", False)
                rows = [scan.owner_rows.get(started["inode"], ()) for scan in (last, reused)]
                same_rows = bool(rows[0]) and len(rows[0]) == len(rows[1]) and all(map(operator.is_, *rows))
                commands.write(b"open\n")
                opened = json.loads(reports.readline())
                if then == "exit":
                    wait_until(lambda: gone(sharer), "the sharer to exit")
                scan = walk_again(store, "/proc", False)
                if cpu_clock(holder) != clock:
                    continue  # the holder ran: another round
                full = scan_fds("/proc", threads=True)
                pids = (holder, sharer)
                return {"walk": holders(scan, opened["inode"], pids), "full": holders(full, opened["inode"], pids),
                        "holder": holder, "sharer": sharer, "fd": opened["fd"], "rows_reused": same_rows,
                        "attempts": attempt}
            finally:
                if commands is not None:
                    commands.close()
                if sharer is not None:
                    try:
                        os.kill(sharer, 9)
                    except ProcessLookupError:
                        pass
                os.close(hold)
                reports.close()
                os.waitpid(holder, 0)
    return {"error": "the holder kept running in %d rounds" % rounds}
