"""`procsock osquery`: the extension's Thrift server on a real unix socket, registered with a manager
served by the osquery package's generated ExtensionManager.Processor, driven by its own client."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

pytest.importorskip("osquery")
from osquery import ExtensionClient  # noqa: E402
from osquery.extensions import ExtensionManager as ManagerService  # noqa: E402
from osquery.extensions.ttypes import ExtensionStatus  # noqa: E402
from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.server import TServer  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

from procsock import osquery as extension  # noqa: E402
from procsock.fdscan import netns_inode  # noqa: E402
import test_context_cgroups  # noqa: E402

EQUALS, GREATER_THAN = 2, 4
cgroups = test_context_cgroups.cgroups  # the fixtures: real cgroups, a process holding sockets moved into them
holder = test_context_cgroups.holder
UUID = 4242


class Manager(ManagerService.Iface):
    """What osqueryd plays for an extension: registerExtension (answers UUID) and ping."""

    def __init__(self):
        self.registered = []
        self.transport = None

    def registerExtension(self, info, registry):
        self.registered.append((info, registry))
        return ExtensionStatus(code=0, message="OK", uuid=UUID)

    def ping(self):
        return ExtensionStatus(code=0, message="OK")

    def deregisterExtension(self, uuid):
        return ExtensionStatus(code=0, message="OK")


@pytest.fixture
def manager(tmp_path):
    """The manager served on tmp_path/osquery.em from a thread, until the test ends."""
    path = str(tmp_path / "osquery.em")
    handler = Manager()
    handler.path = path
    handler.transport = TSocket.TServerSocket(unix_socket=path)
    server = TServer.TSimpleServer(ManagerService.Processor(handler), handler.transport,
                                   TTransport.TBufferedTransportFactory(), TBinaryProtocol.TBinaryProtocolFactory())
    handler.transport.listen()
    listening = handler.transport.handle
    handler.transport.listen = lambda: None  # listening already: serve() accepts
    thread = threading.Thread(target=_serve_until_closed, args=(server,), daemon=True)
    thread.start()
    handler.stop = lambda: listening.shutdown(socket.SHUT_RDWR)
    yield handler
    try:
        handler.stop()
    except OSError:
        pass
    thread.join(timeout=60)
    listening.close()


def _serve_until_closed(server):
    try:
        server.serve()
    except OSError:  # the listening socket was shut down: the test is over
        pass


@pytest.fixture
def running(manager):
    """`procsock osquery --socket MANAGER` as a process, registered and serving; an open client."""
    proc = subprocess.Popen([sys.executable, "-m", "procsock", "osquery", "--socket", manager.path,
                             "--interval", "0.2"], stderr=subprocess.PIPE, text=True)
    client = ExtensionClient(path=manager.path, uuid=UUID)
    try:
        while not client.open(timeout=1):  # it listens once registered; or it died saying why
            assert proc.poll() is None, proc.stderr.read()
        yield proc, client.extension_client()
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)
        proc.stderr.close()


@pytest.fixture
def held(tmp_path):
    """A TCP listener, a connected TCP pair, a unix pair and an abstract unix listener whose name
    holds a newline, held by this process."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    left, right = socket.socketpair()
    named = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    named.bind(b"\0procsock-osq\n%d" % os.getpid())
    named.listen()
    yield {"listener": listener, "client": client, "accepted": accepted, "left": left, "right": right,
           "named": named}
    for sock in (listener, client, accepted, left, right, named):
        sock.close()


def generate(client, table, *constraints):
    """Rows of `table` for constraints (column, op, expr), as osquery asks."""
    context = {"constraints": [{"name": name, "list": [{"op": op, "expr": expr}], "affinity": "TEXT"}
                               for name, op, expr in constraints]}
    answer = client.call("table", table, {"action": "generate", "context": json.dumps(context)})
    assert answer.status.code == 0, answer.status.message
    return answer.response


def inode(sock):
    return str(os.fstat(sock.fileno()).st_ino)


def steady(rows, held):
    """The rows of the `held` sockets (this process also holds the manager's short-lived connections)."""
    inodes = {inode(sock) for sock in held.values()}
    return sorted((r for r in rows if r["socket"] in inodes), key=lambda r: (int(r["fd"]), r["pid"]))


def ours(rows):
    return sorted((r for r in rows if r["pid"] == str(os.getpid())), key=lambda r: (int(r["fd"]), r["socket"]))


def test_registration_announces_the_three_tables_with_their_columns(running, manager):
    (info, registry), = manager.registered
    assert info.name == "procsock"
    assert sorted(registry["table"]) == ["procsock_backends", "procsock_sockets", "procsock_unresolved"]
    routes = registry["table"]["procsock_sockets"]
    assert [(r["name"], r["type"]) for r in routes] == list(extension.SOCKET_COLUMNS)
    assert {"pid", "fd", "socket", "family", "protocol", "local_address", "remote_address", "local_port",
            "remote_port", "path", "state", "net_namespace"} <= {r["name"] for r in routes}
    assert {r["type"] for r in routes} <= {"INTEGER", "BIGINT", "TEXT"}


def test_ping_and_columns_over_the_real_socket(running):
    _, client = running
    assert client.ping().code == 0
    for table, columns in (("procsock_sockets", extension.SOCKET_COLUMNS),
                           ("procsock_unresolved", extension.UNRESOLVED_COLUMNS),
                           ("procsock_backends", extension.BACKEND_COLUMNS)):
        answer = client.call("table", table, {"action": "columns"})
        assert answer.status.code == 0
        assert [(r["name"], r["type"]) for r in answer.response] == list(columns)


def test_generate_lists_our_sockets_one_row_per_fd(running, held):
    _, client = running
    rows = generate(client, "procsock_sockets")
    assert len({r["pid"] for r in rows}) > 1 or os.getuid() != 0  # as root: every process, not only ours
    by_fd = {int(r["fd"]): r for r in ours(rows)}
    listener = by_fd[held["listener"].fileno()]
    assert listener["socket"] == listener["inode"] == inode(held["listener"])
    assert (listener["state"], listener["family"], listener["protocol"]) == ("LISTEN", "2", "6")
    assert (listener["local_address"], listener["local_port"]) == ("127.0.0.1", str(held["listener"].getsockname()[1]))
    assert (listener["remote_address"], listener["remote_port"], listener["kind"]) == ("0.0.0.0", "0", "tcp")
    assert listener["net_namespace"] == listener["netns"] == str(netns_inode("/proc", "self"))
    assert listener["name"] and listener["uid"] == str(os.getuid())
    client_row = by_fd[held["client"].fileno()]
    assert (client_row["state"], client_row["remote_port"]) == ("ESTABLISHED", str(held["listener"].getsockname()[1]))
    left, right = by_fd[held["left"].fileno()], by_fd[held["right"].fileno()]
    assert (left["family"], left["path"], left["peer_inode"]) == ("1", "*", inode(held["right"]))
    assert right["peer_inode"] == inode(held["left"])
    named = by_fd[held["named"].fileno()]
    name = held["named"].getsockname()
    assert named["path"] == "@procsock-osq\\n%d" % os.getpid() and named["path_hex"] == name.hex()
    assert named["local_address"] == named["local_port"] == ""
    for row in rows:
        assert set(row) == {name for name, _ in extension.SOCKET_COLUMNS}
        assert all(value.isprintable() for value in row.values())
    cgroup = [line[3:] for line in open("/proc/self/cgroup").read().splitlines() if line.startswith("0::")]
    for row in ours(rows):  # the owner's context: our cgroup as the kernel names it
        assert row["cgroup"] == (cgroup[0] if cgroup else row["cgroup"]) and row["cgroup"]


def test_a_pid_equality_is_pushed_down_and_answers_as_the_whole_table_does(running, held):
    _, client = running
    pushed = generate(client, "procsock_sockets", ("pid", EQUALS, str(os.getpid())))
    assert pushed and {r["pid"] for r in pushed} == {str(os.getpid())}  # only that pid was walked
    whole = steady(generate(client, "procsock_sockets"), held)
    assert steady(pushed, held) == whole and len(whole) == len(held)


def test_state_netns_port_and_kind_equalities_narrow_the_rows(running, held):
    _, client = running
    me = ("pid", EQUALS, str(os.getpid()))  # with each: this process's rows, not a walk of the busy host
    mine = steady(generate(client, "procsock_sockets", me), held)
    assert {"LISTEN", "ESTABLISHED"} <= {r["state"] for r in mine} and {"tcp", "unix"} <= {r["kind"] for r in mine}
    listening = generate(client, "procsock_sockets", ("state", EQUALS, "LISTEN"), me)
    assert {r["state"] for r in listening} == {"LISTEN"}
    assert steady(listening, held) == [r for r in mine if r["state"] == "LISTEN"]
    unix = generate(client, "procsock_sockets", ("kind", EQUALS, "unix"), me)
    assert {r["kind"] for r in unix} == {"unix"} and steady(unix, held) == [r for r in mine if r["kind"] == "unix"]
    netns = str(netns_inode("/proc", "self"))
    assert steady(generate(client, "procsock_sockets", ("net_namespace", EQUALS, netns), me), held) == [
        r for r in mine if r["netns"] == netns]
    port = str(held["listener"].getsockname()[1])
    by_port = generate(client, "procsock_sockets", ("local_port", EQUALS, port), me)
    assert sorted(int(r["fd"]) for r in by_port) == sorted(
        held[name].fileno() for name in ("listener", "client", "accepted"))  # local or remote port: a superset


def test_what_cannot_be_pushed_down_is_left_to_osquery_never_dropped(running, held):
    _, client = running
    me = ("pid", EQUALS, str(os.getpid()))
    mine = steady(generate(client, "procsock_sockets", me), held)
    for constraint in (("pid", GREATER_THAN, "1"), ("state", EQUALS, "NOT-A-STATE"), ("pid", EQUALS, "x"),
                       ("kind", EQUALS, "nosuchkind"), ("name", EQUALS, "python"), ("local_port", EQUALS, "-1")):
        assert steady(generate(client, "procsock_sockets", constraint, me), held) == mine, constraint


@pytest.mark.parametrize("name, column", [
    ("evil\\back\x1b[31m.service", "cgroup"),  # a backslash and a control byte, shown escaped
    ("evil\\x2dback.service", "unit"),  # systemd's own escape: a unit name holding a backslash
])
def test_an_equality_on_a_context_column_as_shown_keeps_its_rows(running, cgroups, holder, name, column):
    # the columns show the context escaped, the filters compare the raw text: a value holding a
    # backslash is not pushed down (osquery's SQLite compares what the table showed)
    holder.move(cgroups("system.slice/" + name))
    _, client = running
    me = ("pid", EQUALS, str(holder.pid))
    mine = sorted(generate(client, "procsock_sockets", me), key=lambda r: r["fd"])
    shown = mine[0][column]
    assert "\\\\" in shown and all(row[column] == shown for row in mine), mine
    assert sorted(generate(client, "procsock_sockets", (column, EQUALS, shown), me), key=lambda r: r["fd"]) == mine


def test_a_pid_that_holds_nothing_answers_no_rows(running):
    _, client = running
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1  # no process can have it
    assert generate(client, "procsock_sockets", ("pid", EQUALS, str(beyond))) == []


def test_backends_and_unresolved_tables(running):
    _, client = running
    backends = {r["name"]: r for r in generate(client, "procsock_backends")}
    assert {"procnet", "netlink", "pidfd"} <= set(backends)
    assert backends["procnet"]["status"] == "ready" and "tcp" in backends["procnet"]["kinds"].split(",")
    assert backends["pidfd"]["lookup_only"] == "1"
    for row in generate(client, "procsock_unresolved"):
        assert set(row) == {name for name, _ in extension.UNRESOLVED_COLUMNS} and row["reason"]


def test_unknown_tables_and_actions_are_refused_in_the_answer(running):
    _, client = running
    assert client.call("table", "nosuch", {"action": "columns"}).status.code == 1
    assert client.call("config", "procsock_sockets", {"action": "columns"}).status.code == 1
    assert client.call("table", "procsock_sockets", {"action": "dance"}).status.code == 1
    bad = client.call("table", "procsock_sockets", {"action": "generate", "context": "{not json"})
    assert bad.status.code == 1 and bad.status.message.startswith("bad query context")
    assert client.ping().code == 0  # and it still serves


def test_a_context_nested_too_deep_is_a_bad_query_context(running):
    _, client = running
    deep = '{"constraints": ' + "[" * 5000 + "]" * 5000 + "}"
    bad = client.call("table", "procsock_sockets", {"action": "generate", "context": deep})
    assert bad.status.code == 1 and bad.status.message.startswith("bad query context"), bad.status.message
    assert client.ping().code == 0  # and it still serves


def test_shutdown_ends_the_extension(running):
    proc, client = running
    client.shutdown()  # void in osquery's Thrift IDL
    client._iprot.trans.close()  # osquery hangs up after shutdown
    assert proc.wait(timeout=60) == 0


def test_the_extension_exits_when_osquery_is_gone(running, manager):
    proc, client = running
    client._iprot.trans.close()
    manager.stop()  # the manager no longer answers pings
    assert proc.wait(timeout=60) == 0


def test_no_manager_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "procsock", "osquery", "--socket", str(tmp_path / "none.em"),
                           "--timeout", "0.2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "procsock: cannot reach osquery's extension manager at %s\n" % (tmp_path / "none.em")


def test_without_the_extra_the_command_names_it():
    code = ("import sys; sys.modules['osquery'] = None\n"
            "from procsock.cli import main; sys.exit(main(['osquery', '--socket', 'x']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (
        1, "procsock: procsock osquery needs the osquery package: pip install 'procsock[osquery]'\n")


@pytest.mark.skipif(shutil.which("osqueryi") is None, reason="no osqueryi binary on this machine")
def test_osqueryi_end_to_end(tmp_path, held):
    socket_path = str(tmp_path / "osqueryi.em")
    wrapper = tmp_path / "procsock.ext"  # osquery runs one executable, passing it --socket
    wrapper.write_text('#!/bin/sh\nexec %s -m procsock osquery "$@"\n' % sys.executable)
    wrapper.chmod(0o755)
    done = subprocess.run(
        ["osqueryi", "--json", "--extensions_socket", socket_path, "--extension", str(wrapper),
         "--extensions_timeout", "10",
         "SELECT pid, fd, state, local_port FROM procsock_sockets WHERE pid = %d AND state = 'LISTEN'" % os.getpid()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {"pid": str(os.getpid()), "fd": str(held["listener"].fileno()), "state": "LISTEN",
            "local_port": str(held["listener"].getsockname()[1])} in rows
