"""procsock.watch / `procsock watch`: real processes open, change and close real sockets while a watch
looks on. Nothing here sleeps a fixed time: each test waits for what it expects to observe, within
a generous deadline (a busy host is slow, never wrong)."""

import contextlib
import gc
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

import procsock
from procsock.plugin import Row
from procsock.testing import record_events
from procsock_plugins.netlink import destroy
from sockzoo import needs_root
from watchchurn import forged_destroy

DEADLINE = 60.0  # seconds: far beyond what any wait below takes on a quiet host
CHURNER = os.path.join(os.path.dirname(__file__), "churner.py")

# A child process that opens and closes sockets when told, one command per line on stdin,
# answering one line of JSON on stdout.
ACTOR = r"""
import json, os, socket, sys, time
held = []
listener = None
for line in sys.stdin:
    word, *args = line.split()
    if word == "pair":
        held += socket.socketpair()
        answer = [os.fstat(s.fileno()).st_ino for s in held[-2:]]
    elif word == "dup":
        held.append(socket.socket(fileno=os.dup(held[0].fileno())))
        answer = held[-1].fileno()
    elif word == "close":
        for s in held:
            s.close()
        held = []
        answer = "closed"
    elif word == "flash":  # N connections that live 10 ms each, to a listener of ours
        listener = listener or socket.create_server(("127.0.0.1", 0))
        answer = []
        for _ in range(int(args[0])):
            client = socket.create_connection(listener.getsockname())
            accepted = listener.accept()[0]
            answer.append([client.getsockname()[1], listener.getsockname()[1]])
            time.sleep(0.01)
            client.close()
            accepted.close()
    print(json.dumps(answer), flush=True)
"""


def runnable_python():
    """Child processes run this interpreter: skip where this user may not (a venv whose Python
    lives under /root, run as nobody)."""
    if not os.access(sys.executable, os.X_OK):
        pytest.skip("this user may not run %s, so no child process can start" % sys.executable)


class Actor:
    def __init__(self):
        runnable_python()
        self.proc = subprocess.Popen([sys.executable, "-c", ACTOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)

    def __call__(self, *words):
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        return json.loads(self.proc.stdout.readline())

    def end(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def actor():
    one = Actor()
    try:
        yield one
    finally:
        one.end()


def wait_for(events, wanted, seen=None):
    """Read `events` until `wanted(seen)` holds (seen: every event so far); fail at the deadline
    (every watch here is made with duration=DEADLINE, so no read blocks longer)."""
    seen = [] if seen is None else seen
    end = time.monotonic() + DEADLINE
    while not wanted(seen):
        assert time.monotonic() < end, "not seen within %g s: %r" % (DEADLINE, seen[-20:])
        event = next(events, None)
        assert event is not None, "the watch ended (duration=DEADLINE) before it was seen: %r" % seen[-20:]
        seen.append(event)
    return seen


def of_inodes(seen, inodes, kind=None):
    return [e for e in seen if e.socket is not None and e.socket.record.inode in inodes
            and (kind is None or e.kind == kind)]


def test_open_change_and_close_of_unix_sockets_are_seen_by_polls_with_their_owners(actor):
    with procsock.watch(kind="unix", interval=0.05, duration=DEADLINE) as events:
        inodes = set(actor("pair"))
        seen = wait_for(events, lambda s: len(of_inodes(s, inodes, "open")) == 2)
        for event in of_inodes(seen, inodes):
            assert (event.source, event.owners) == ("poll", "now")
            assert [o.pid for o in event.socket.owners] == [actor.proc.pid]
        fd = actor("dup")
        seen = wait_for(events, lambda s: of_inodes(s, inodes, "change"), seen)
        change = of_inodes(seen, inodes, "change")[0]
        assert change.changed == ("owners",)
        assert fd in [o.fd for o in change.socket.owners] and fd not in [o.fd for o in change.previous.owners]
        actor("close")
        seen = wait_for(events, lambda s: len(of_inodes(s, inodes, "close")) == 2, seen)
    closes = of_inodes(seen, inodes, "close")
    assert {(e.source, e.owners) for e in closes} == {("poll", "last-seen")}
    assert all(actor.proc.pid in [o.pid for o in e.socket.owners] for e in closes)
    assert len(of_inodes(seen, inodes)) == 5, "an event invented or repeated"


def test_connections_of_10_ms_are_closes_from_the_kernel_with_owners_unknown(actor):
    # polls far apart: no poll can see these connections, only the destroy notifications
    with procsock.watch(kind="tcp", interval=3600, duration=DEADLINE) as events:
        pairs = actor("flash", 20)
        ports = {port for pair in pairs for port in pair}
        clients = {pair[0] for pair in pairs}

        def ours(seen):
            return [e for e in seen if e.kind == "close" and e.socket.record.local.port in clients
                    or e.kind == "close" and e.socket.record.remote is not None
                    and e.socket.record.remote.port in clients]

        def lost(seen):  # notifications the kernel dropped (a very busy host): said, so not asserted
            return [e for e in seen if e.kind == "gap" and e.source == "destroy"]

        seen = wait_for(events, lambda s: len(ours(s)) == 2 * len(pairs) or lost(s))
    closes = ours(seen)
    assert {(e.source, e.owners, e.socket.owners) for e in closes} <= {("destroy", "unknown", ())}
    assert len({e.socket.record.cookie for e in closes}) == len(closes), "a close said twice"
    assert all(e.socket.record.local.port in ports for e in closes)
    assert len(closes) == 2 * len(pairs) or lost(seen)


def test_a_destroy_takes_the_owners_of_the_last_poll():
    with procsock.watch(kind="tcp", interval=0.05, duration=DEADLINE) as events:
        server = socket.create_server(("127.0.0.1", 0))
        inode = os.fstat(server.fileno()).st_ino
        seen = wait_for(events, lambda s: of_inodes(s, {inode}, "open"))
        server.close()
        seen = wait_for(events, lambda s: of_inodes(s, {inode}, "close"), seen)
    close = of_inodes(seen, {inode}, "close")[0]
    assert (close.source, close.owners) == ("destroy", "last-seen")
    assert [(o.pid, o.name) for o in close.socket.owners] == [(os.getpid(), of_inodes(seen, {inode})[0].socket
                                                               .owners[0].name)]
    assert len(of_inodes(seen, {inode})) == 2


def test_filters_keep_a_socket_leaving_them_from_looking_closed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        with procsock.watch(kind="tcp", port=port, interval=0.05, duration=DEADLINE) as events:
            server.listen()
            seen = wait_for(events, lambda s: [e for e in s if e.kind in ("open", "change")])
            inode = os.fstat(server.fileno()).st_ino
            assert {e.socket.record.inode for e in seen if e.socket is not None} == {inode}
            assert seen[-1].socket.record.state is procsock.State.LISTEN
    finally:
        server.close()


def test_the_filter_expression_and_its_owner_keys_select_events():
    """ss's filter (with procsock's pid key, read on the owners) narrows events as it narrows a snapshot."""
    kept, dropped = socket.socket(), socket.socket()
    for sock in (kept, dropped):
        sock.bind(("127.0.0.1", 0))
    port = kept.getsockname()[1]
    expression = "sport = :%d and pid = %d" % (port, os.getpid())
    try:
        with procsock.watch(kind="tcp", filter=expression, interval=0.05, duration=DEADLINE) as events:
            dropped.listen()
            kept.listen()
            seen = wait_for(events, lambda s: [e for e in s if e.kind in ("open", "change")])
        inodes = {e.socket.record.inode for e in seen if e.socket is not None}
        assert inodes == {os.fstat(kept.fileno()).st_ino}
    finally:
        kept.close()
        dropped.close()


def test_what_the_kernel_leaves_of_a_closed_socket_is_not_another_socket():
    """close() of an ESTAB socket whose peer stays open: the kernel frees the socket (a destroy)
    and lists a FIN-WAIT-2 mini socket with the same cookie and inode 0 until the peer's FIN and
    TIME-WAIT. That remnant is no socket of its own: one close, and no open or close of it."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted = server.accept()[0]
    cookie = struct.unpack("=Q", client.getsockopt(socket.SOL_SOCKET, 57, 8))[0]  # SO_COOKIE

    def mine(seen):
        return [e for e in seen if e.socket is not None and e.socket.record.cookie == cookie]

    try:
        with procsock.watch(kind="tcp", port=port, interval=0.05, duration=DEADLINE, initial=True) as events:
            seen = wait_for(events, mine)
            client.close()
            seen = wait_for(events, lambda s: [e for e in mine(s) if e.kind == "close"], seen)
            remnant = lambda: [r for r in procsock.snapshot(kind="tcp", port=port).sockets  # noqa: E731
                               if r.record.cookie == cookie and r.record.inode == 0]
            assert remnant(), "the kernel lists the FIN-WAIT-2 remnant"
            seen += events.poll_now() + events.poll_now()
            accepted.close()  # the peer's FIN: the remnant moves to TIME-WAIT
            seen += events.poll_now() + events.poll_now()
        kinds = [e.kind for e in mine(seen)]
        assert kinds.count("close") == 1 and kinds.count("open") == 1, kinds  # the baseline's open
    finally:
        for sock in (client, accepted, server):
            sock.close()


def test_record_events_reports_what_a_block_opened_and_closed():
    with record_events(kind="tcp") as ev:
        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted = server.accept()[0]
        client.close()
        accepted.close()
    try:
        assert ev, "the events are there once the block ends"
        ours = [e for e in ev if e.socket is not None and port in (e.socket.record.local.port,
                                                                   getattr(e.socket.record.remote, "port", None))]
        opened = [e for e in ours if e.kind == "open" and e.socket.record.state is procsock.State.LISTEN]
        assert [o.pid for o in opened[0].socket.owners] == [os.getpid()]
        assert len([e for e in ours if e.kind == "close" and e.source == "destroy"]) == 2
    finally:
        server.close()


def test_bad_arguments_are_refused_naming_them():
    with pytest.raises(procsock.BadArgument, match="interval"):
        procsock.watch(interval=0)
    with pytest.raises(procsock.BadArgument, match="duration"):
        procsock.watch(duration=-1)
    with pytest.raises(TypeError, match="interval"):
        procsock.watch(interval="1")
    with pytest.raises(procsock.BadArgument, match="state"):
        procsock.watch(state="LISTENING")


def test_duration_ends_the_iterator_and_closing_releases_every_socket():
    before = set(os.listdir("/proc/self/fd"))
    start = time.monotonic()
    events = procsock.watch(interval=0.05, duration=0.3, kind="unix")
    assert len(os.listdir("/proc/self/fd")) > len(before), "the destroy listener is open"
    list(events)
    assert time.monotonic() - start >= 0.3
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) == before


# Holds a TCP listener and a unix socket in its own network namespace until its stdin closes.
HOLDER = ("import socket, sys; s = socket.socket(socket.AF_UNIX); t = socket.create_server(('127.0.0.1', 0)); "
          "print('ready', flush=True); sys.stdin.read()")


@contextlib.contextmanager
def netns_holder():
    """A network namespace of its own (loopback up), kept alive by a process holding sockets in
    it: (its inode, the holder's pid). Every TCP socket there is the test's."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    holder = subprocess.Popen(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"',
                               sys.executable, HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        yield os.stat("/proc/%d/ns/net" % holder.pid).st_ino, holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=DEADLINE)


def isolated(*args):
    """tests/watchchurn.py ARGS in fresh pid, mount (/proc) and network namespaces with loopback up,
    so that the host's own processes and sockets, however many, neither slow the polls nor show."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip("%s is not installed" % tool)
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
         sys.executable, os.path.join(os.path.dirname(__file__), "watchchurn.py"), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=10 * DEADLINE,  # a guard against a hang
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


SO_COOKIE = 57


def closed_connections(count):
    """The cookies of `count` TCP connections (both ends) opened and closed at once with a reset."""
    cookies = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        for _ in range(count):
            for end in (socket.create_connection(server.getsockname()), None):
                end = end or server.accept()[0]
                end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                cookies.append(struct.unpack("Q", end.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0])
                end.close()
    return set(cookies)


def test_events_read_but_not_yet_returned_are_not_lost_when_the_caller_polls_now():
    # the kernel's destroys reach every listener at once: a witness of our own says when the
    # watch's listener holds them all, so that one read of it takes them together
    witness = destroy.DestroyListener(destroy.open_listener_socket(), None)
    try:
        with procsock.watch(kind="tcp", interval=3600, duration=DEADLINE) as events:
            cookies = closed_connections(3)
            heard, end = set(), time.monotonic() + DEADLINE
            while not cookies <= heard:
                assert select.select([witness], [], [], max(0.0, end - time.monotonic()))[0], "no destroy heard"
                heard.update(row[Row.COOKIE] for row in witness.read().records)
            # one of ours, from one read of all six: the others are read but not yet returned
            seen = wait_for(events, lambda s: [e for e in s if e.kind == "close" and e.socket.record.cookie in cookies])
            seen += events.poll_now()  # the rest of that read, then a poll
    finally:
        witness.close()
    closed = [e.socket.record.cookie for e in seen if e.kind == "close"]
    assert sorted(c for c in closed if c in cookies) == sorted(cookies)


@needs_root
def test_a_churn_of_1000_sockets_a_second_invents_nothing_and_loses_nothing_outside_a_gap():
    found = isolated("churn", 1000, 30)
    assert found["repeated"] == [], "a close said twice"
    assert found["closes"] <= found["opened_tcp"]
    # the churner's listener: between its open and its close only owners change (a poll that met
    # a forked child holding it, and the next one)
    assert found["listener"][0] == "open" and found["listener"][-1] == "close"
    assert set(found["listener"][1:-1]) <= {"change owners"}
    assert found["wrong_owners"] == [] and found["invented"] == []
    # only a said loss may hide a close (the events of a poll cut short by the switch to poll_now
    # were once lost: test_events_read_but_not_yet_returned_are_not_lost_when_the_caller_polls_now)
    assert found["lost"] or found["closes"] == found["opened_tcp"], \
        "closes lost without a gap: %(closes)d of %(opened_tcp)d" % found
    print("churn: %(opened_tcp)d short-lived TCP sockets opened, %(closes)d closes seen (%(from_kernel)d from the "
          "kernel, %(with_owners)d with owners), notifications lost: %(lost)s" % found)


def in_netns(holder, script):
    """Run a Python script inside the namespace of `holder`; its stdout."""
    return subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % holder, sys.executable, "-c", script],
                          check=True, stdout=subprocess.PIPE, text=True, timeout=DEADLINE).stdout


FLASH = """
import socket, time
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
accepted = server.accept()[0]
time.sleep(0.01)
port = server.getsockname()[1]
client.close(); accepted.close(); server.close()
print(port)
"""


@needs_root
def test_a_namespace_that_appears_is_said_and_its_destroys_are_heard():
    with procsock.watch(kind="tcp", interval=0.05, duration=DEADLINE) as events:
        with netns_holder() as (netns, holder):
            seen = wait_for(events, lambda s: [e for e in s if e.kind == "gap" and "appeared" in e.text])
            assert str(netns) in [e for e in seen if e.kind == "gap"][-1].text
            in_netns(holder, FLASH)
            seen = wait_for(events, lambda s: len([e for e in s if e.kind == "close" and e.source == "destroy"
                                                   and e.socket.record.netns == netns]) >= 3, seen)
        seen = wait_for(events, lambda s: [e for e in s if e.kind == "gap" and "no process holds" in e.text], seen)
    assert [e.text for e in seen if e.kind == "gap" and str(netns) in e.text][-1].startswith("network namespace")


@needs_root
def test_notifications_the_kernel_dropped_are_a_gap():
    with procsock.watch(kind="udp", interval=3600, duration=DEADLINE) as events:
        for listener in events._watch.listeners.values():  # a small buffer: a few hundred messages
            listener._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # nobody reads while far more closes happen than the listener's buffer holds
        for _ in range(3000):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", 0))
        seen = wait_for(events, lambda s: [e for e in s if e.kind == "gap" and e.source == "destroy"])
    gap = [e for e in seen if e.kind == "gap" and e.source == "destroy"][0]
    assert "ENOBUFS" in gap.text


def test_a_forged_destroy_message_is_never_believed():
    cookie = 0x5EED00000000 + os.getpid()
    with procsock.watch(kind="tcp", interval=0.05, duration=DEADLINE) as events:
        ports = [listener._sock.getsockname()[0] for listener in events._watch.listeners.values()]
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4) as forger:
            for port in ports:
                try:
                    forger.sendto(forged_destroy(cookie), (port, 0))
                except OSError:
                    pass  # the kernel refuses senders other than itself to a socket connected to it
        seen = events.poll_now()  # what the listeners hold, and a poll
    assert not [e for e in seen if e.socket is not None and e.socket.record.cookie == cookie]


@needs_root
def test_a_flood_of_forged_destroys_is_one_gap_per_poll_at_most():
    # root of a namespace may send to its destroy groups: every read of the listener then drops
    # forgeries. Said at once, then counted until the next poll: at most two gaps a poll.
    found = isolated("forge", 0.1, 10)
    assert found["invented"] == [], found
    assert any("not from the kernel" in text for text in found["gaps"]), found
    assert len(found["gaps"]) <= 2 * found["polls"], found
    assert found["reads"] > 2 * found["polls"], "the forgeries came too slowly to test anything: %r" % found


NOBODY = 65534


@needs_root
def test_as_an_ordinary_user_every_destroy_is_heard_and_unreadable_owners_are_said_once():
    procsock.api.default_registry()  # plugins load here, while their files are readable
    ready_r, ready_w = os.pipe()
    port_r, port_w = os.pipe()
    report_r, report_w = os.pipe()
    child = os.fork()
    if child == 0:
        report = {}
        try:
            for end in (report_r, ready_r, port_w):
                os.close(end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with procsock.watch(kind="tcp", interval=0.05, duration=DEADLINE) as events:
                os.write(ready_w, b"ready")
                port = int(os.read(port_r, 64))
                seen = []

                def done(s):
                    closes = [e for e in s if e.kind == "close" and port in (
                        e.socket.record.local.port, getattr(e.socket.record.remote, "port", None))]
                    return len(closes) >= 2 and [e for e in s if e.kind == "open"
                                                 and e.socket.record.local.port == port]

                wait_for(events, done, seen)
                seen += events.poll_now() + events.poll_now()  # two more polls: owners said once, not per poll
            ours = [e for e in seen if e.socket is not None and port in (
                e.socket.record.local.port, getattr(e.socket.record.remote, "port", None))]
            report = {
                "events": [(e.kind, e.source, e.owners, len(e.socket.owners)) for e in ours],
                "said": [e.text for e in seen if e.kind == "gap" and "not readable" in e.text],
                "owned": [(e.socket.record.inode, o.pid, o.uid) for e in seen if e.socket is not None
                          for o in e.socket.owners if o.uid != NOBODY],
            }
        except BaseException as exc:  # reported to the parent, which fails the test with it
            report = {"error": "%s: %s" % (type(exc).__name__, exc)}
        finally:
            os.write(report_w, json.dumps(report).encode())
            os._exit(0)
    for end in (report_w, ready_w, port_r):  # the child's alone: its exit ends our reads
        os.close(end)
    try:
        assert os.read(ready_r, 16) == b"ready", "the watch as nobody did not start"
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        accepted = server.accept()[0]
        client.close()
        accepted.close()
        os.write(port_w, b"%d" % server.getsockname()[1])
        with os.fdopen(report_r, "rb") as answer:
            report = json.loads(answer.read())
        server.close()
    finally:
        os.waitpid(child, 0)
    assert "error" not in report, report["error"]
    closes = [e for e in report["events"] if e[0] == "close"]
    assert [e[:3] for e in closes] == [["close", "destroy", "unknown"]] * 2
    opened = [e for e in report["events"] if e[0] == "open"]
    assert opened and all(e[3] == 0 for e in opened), "root's listener shown with an owner nobody may read"
    assert len(report["said"]) == 1, report["said"]
    assert report["owned"] == [], "an owner shown that nobody may not read"


def procsock_command(*args):
    runnable_python()
    return subprocess.Popen([sys.executable, "-m", "procsock", "watch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_command_prints_events_and_ends_quietly_on_a_signal(signum):
    with socket.socket(socket.AF_UNIX) as held:
        held.bind(b"\0procsock-watch-cli-%d" % os.getpid())
        command = procsock_command("--jsonl", "--initial", "-x", "--pid", str(os.getpid()), "--interval", "0.05")
        try:
            inode = os.fstat(held.fileno()).st_ino
            for line in command.stdout:  # the baseline's open events: one is our socket
                event = json.loads(line)
                if event["socket"] is not None and event["socket"]["inode"] == inode:
                    break
            assert (event["event"], event["source"], event["owners_known"]) == ("open", "baseline", "now")
            assert event["identity"].split("/")[1:3] == ["unix", "%d@%x" % (inode, event["socket"]["cookie"])]
            assert [o["pid"] for o in event["socket"]["owners"]] == [os.getpid()]
            command.send_signal(signum)
            out, err = command.communicate(timeout=DEADLINE)
        finally:
            if command.poll() is None:
                command.kill()
                command.communicate()
    assert command.returncode == 0
    assert "Traceback" not in err and "Error" not in err


def test_the_command_stops_after_count_and_duration_and_refuses_bad_values():
    with socket.socket(socket.AF_UNIX) as held:
        held.bind(b"\0procsock-watch-cli-count-%d" % os.getpid())
        out, err = procsock_command("--initial", "-x", "--pid", str(os.getpid()), "--count", "2", "--duration",
                                    str(DEADLINE)).communicate(
            timeout=DEADLINE)
    assert len(out.splitlines()) == 2 and "open baseline" in " ".join(out.split()), out
    command = procsock_command("-x", "--duration", "0.2", "--interval", "0.05")
    command.communicate(timeout=DEADLINE)
    assert command.returncode == 0
    for bad in (["--interval", "0"], ["--duration", "-1"], ["--count", "0"], ["--state", "nosuch"]):
        command = procsock_command(*bad)
        out, err = command.communicate(timeout=DEADLINE)
        assert command.returncode == 2 and len(err.strip().splitlines()) == 1, (bad, err)


def test_a_closing_socket_line_says_whose_owners_it_shows():
    from procsock.cli.watch import event_dict, event_line
    from procsock.watcher import Event

    record = procsock.SocketRecord(
        kind=procsock.TCP, inode=0, type=procsock.SockType.STREAM, protocol=6, state=procsock.State.CLOSE,
        local=procsock.InetAddress(socket.inet_aton("127.0.0.1"), 1), remote=None, rx_queue=0, tx_queue=0,
        uid=0, backend="netlink", cookie=0xAB,
    )
    event = Event("close", 0.0, "destroy", procsock.Socket(record, ()), "unknown")
    assert event_line(event).endswith("(owners unknown: no poll saw it)")
    assert event_dict(event)["identity"].endswith("/tcp/0@ab")
    gap = Event("gap", 0.0, "destroy", text="bad\x1b[2Jthing")
    assert "\x1b" not in event_line(gap) and "\\x1b" in event_line(gap)


@needs_root
def test_memory_stays_flat_over_a_soak_of_observed_polls():
    found = isolated("soak", 300, 100)
    assert found["grown"] < 256 * 1024, "memory grew by %(grown)d bytes over %(polls)d polls" % found


@needs_root
def test_a_flood_of_destroys_neither_stretches_the_duration_nor_grows_memory():
    # a child closes UDP sockets faster than destroys are decoded: reads must yield to the
    # watch's clock. The end may lag the duration by a poll under way (measured in the flood),
    # an interval's wake-up and one read slice of the listener.
    duration, interval = 3.0, 0.5
    found = isolated("flood", duration, interval)
    assert found["counts"].get("close", 0) > 0, found
    late = found["took"] - duration
    assert late <= interval + destroy.READ_SLICE + 2 * found["poll"], found
    assert found["grown_kib"] < 64 * 1024, found


def test_the_netlink_destroy_listener_hears_a_close_and_a_saved_source_has_none():
    netlink = procsock.api.default_registry().by_name()["netlink"]
    assert netlink.hooks.procsock_destroy_listener(source=procsock.Source.saved_diag("/dev/null"),
                                                   netns=procsock.Netns()) is None
    listener = netlink.destroy_listener(procsock.Source.live(), procsock.Netns())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
        end = time.monotonic() + DEADLINE
        found = []
        while not found:
            assert time.monotonic() < end, "no destroy of our UDP socket heard"
            select.select([listener], [], [], 1.0)
            read = listener.read()
            found = [row for row in read.records if row[Row.LOCAL][1] == port]
        assert found[0][Row.STATE] is procsock.State.CLOSE and found[0][Row.COOKIE]
    finally:
        listener.close()


def test_a_watch_reports_no_sock_diag_socket_of_its_own_polls_and_hides_no_other_netlink_socket():
    # every poll opens a sock_diag socket in this process to dump the tables: not a socket to report
    route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE: ours, and reported
    try:
        with procsock.watch(kind="netlink") as events:
            route.bind((0, 0))
            seen = events.poll_now() + events.poll_now() + events.poll_now()
        inode = os.fstat(route.fileno()).st_ino
        assert [e.kind for e in seen if e.socket is not None and e.socket.record.inode == inode] == ["open"]
        instruments = [e for e in seen if e.socket is not None and e.socket.record.protocol == 4
                       and {o.pid for o in e.socket.owners} == {os.getpid()}]
        assert instruments == []
    finally:
        route.close()
