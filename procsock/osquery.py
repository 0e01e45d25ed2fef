"""procsock as an osquery extension: tables `procsock_sockets`, `procsock_unresolved`, `procsock_backends`.

osqueryd (or osqueryi) gives extensions a unix socket (`--extensions_socket`); `run(PATH)` registers
the tables there (the manager's `registerExtension`) and answers osquery's calls on `PATH.UUID`, the
socket the manager's answer names, with the `osquery` package's Thrift bindings (extra
`procsock[osquery]`: the core never imports this module). The package's own ExtensionManager and
TablePlugin are process-wide singletons whose shutdown ends the process with os._exit; procsock
serves its own handler (`Extension`) through the package's generated Processor instead.

Rows are maps of column name to text, as osquery takes them; an unknown value is "" (NULL for
INTEGER and BIGINT columns). Every text a process, a path or a plugin chose is escaped (no control
bytes reach a log pipeline). Equality constraints osquery passes (`WHERE pid = 812`) narrow the
snapshot (`pushed_down`); osquery's SQLite applies every constraint again to the rows, so a
constraint procsock cannot push down costs time, never a row.
"""

import json
import logging
import os
import socket
import threading
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from osquery import ExtensionClient
from osquery.extensions import Extension as ExtensionService
from osquery.extensions.ttypes import ExtensionResponse, ExtensionStatus, InternalExtensionInfo
from thrift.protocol import TBinaryProtocol
from thrift.server import TServer
from thrift.transport import TSocket, TTransport

import procsock
from procsock.api import make_query
from procsock.backends import Registry
from procsock.errors import AccessDenied, BadArgument, NoSuchProcess, ProcsockError
from procsock.model import (
    OWNER_PID, Context, Family, InetAddress, Query, Row, Snapshot, Sockets, Source, UnixAddress, endpoint_text,
    identity_text_of_row, owner_row,
)
from procsock.resolver import Resolver
from procsock.text import escape_text

# thrift logs each failed connection attempt at ERROR (a line per retry): procsock says why it
# failed in one line of its own
logging.getLogger("thrift").propagate = False
logging.getLogger("thrift").addHandler(logging.NullHandler())

EQUALS = 2  # the op code osquery passes for `column = value` (SQLite's SQLITE_INDEX_CONSTRAINT_EQ)

# The context columns of an owner (owner_context_columns).
CONTEXT_COLUMNS = (("unit", "TEXT"), ("container", "TEXT"), ("pod", "TEXT"), ("cgroup", "TEXT"))

OWNER_COLUMNS = (
    ("pid", "INTEGER"), ("fd", "BIGINT"), ("tid", "INTEGER"), ("name", "TEXT"), ("uid", "BIGINT"),
) + CONTEXT_COLUMNS

# Names and types of osquery's process_open_sockets where the meaning is the same (pid, fd, socket,
# family, protocol, local/remote address and port, path, state, net_namespace), then procsock's own.
SOCKET_COLUMNS = OWNER_COLUMNS + (
    ("socket", "BIGINT"), ("family", "INTEGER"), ("protocol", "INTEGER"),
    ("local_address", "TEXT"), ("remote_address", "TEXT"), ("local_port", "INTEGER"), ("remote_port", "INTEGER"),
    ("path", "TEXT"), ("state", "TEXT"), ("net_namespace", "TEXT"),
    ("kind", "TEXT"), ("type", "TEXT"), ("inode", "BIGINT"), ("cookie", "BIGINT"), ("netns", "BIGINT"),
    ("path_hex", "TEXT"), ("peer_inode", "BIGINT"), ("identity", "TEXT"),
)

UNRESOLVED_COLUMNS = OWNER_COLUMNS + (("socket", "BIGINT"), ("inode", "BIGINT"), ("reason", "TEXT"))

BACKEND_COLUMNS = (
    ("name", "TEXT"), ("priority", "INTEGER"), ("status", "TEXT"), ("reason", "TEXT"), ("kinds", "TEXT"),
    ("families", "TEXT"), ("lookup_only", "INTEGER"), ("plugin", "TEXT"), ("distribution", "TEXT"),
    ("version", "TEXT"),
)

# Which make_query argument an equality on a column narrows to (a superset of the rows it keeps).
PUSHDOWN = {
    "pid": "pid", "state": "state", "netns": "netns", "net_namespace": "netns",
    "local_port": "port", "remote_port": "port", "kind": "kind",
    # the context filters select a superset of the equal rows (a unit's name without its suffix, an id's
    # prefix, a cgroup below): osquery filters the rows again
    "unit": "unit", "container": "container", "pod": "pod", "cgroup": "cgroup",
}


def owner_context_columns(context: Optional[Context]) -> Dict[str, str]:
    """The context columns of an owner's Context, escaped: its systemd unit, container id, pod UID
    and cgroup (v2 path, else the v1 name=systemd one); "" where unknown or for no holder."""
    if context is None:
        return {name: "" for name, _ in CONTEXT_COLUMNS}
    values = (context.unit, context.container_id, context.pod_uid, context.cgroup or context.cgroup_v1)
    return {name: "" if value is None else escape_text(value) for (name, _), value in zip(CONTEXT_COLUMNS, values)}


def _text(value) -> str:
    """A column value as osquery takes it: "" for unknown, numbers in decimal, text as given."""
    return "" if value is None else str(value)


def owner_columns(owner: Optional[tuple], context: Optional[Context]) -> Dict[str, str]:
    """pid, fd, tid, name (escaped), uid of one owner row and its process's `context` (all "" for none)."""
    columns = owner_context_columns(context)
    if owner is None:
        columns.update({name: "" for name, _ in OWNER_COLUMNS[:5]})
    else:
        pid, fd, name, uid, tid = owner
        columns.update(pid=_text(pid), fd=_text(fd), tid=_text(tid), name=escape_text(name), uid=_text(uid))
    return columns


def socket_columns(row: tuple) -> Dict[str, str]:
    """The socket's own columns of a procsock_sockets row (see `Row`).

    Nothing that depends on how the rows were found, so that a pushed-down constraint changes
    which rows come, never what they say: no backend (one pid is looked up through its fds, a
    whole table dumped), no peer pid (a snapshot of one pid knows the peer's holders only in that
    process; who holds the peer is a join on `peer_inode = socket`, the same on every path).
    """
    kind = row[Row.KIND]
    family, local, remote = kind.family, row[Row.LOCAL], row[Row.REMOTE]
    addresses = {"local_address": "", "remote_address": "", "local_port": "", "remote_port": "",
                 "path": "", "path_hex": ""}
    if family in (Family.INET, Family.INET6) and type(local) is tuple:
        addresses.update(local_address=InetAddress.host_of(local[0]), local_port=str(local[1]))
        if type(remote) is tuple:
            addresses.update(remote_address=InetAddress.host_of(remote[0]), remote_port=str(remote[1]))
    elif family is Family.UNIX and type(local) is tuple:
        addresses.update(path=UnixAddress.text(local[0]), path_hex=local[0].hex())
    else:  # packet, netlink, a plugin's family: the endpoint as procsock shows it
        addresses.update(local_address=endpoint_text(family, local),
                         remote_address="" if remote is None else endpoint_text(family, remote))
    netns = row[Row.NETNS]
    return dict(
        addresses,
        socket=_text(row[Row.INODE]), inode=_text(row[Row.INODE]), family=_text(int(family)),
        protocol=_text(row[Row.PROTOCOL]), state=row[Row.STATE].name, net_namespace=_text(netns), netns=_text(netns),
        kind=escape_text(kind.name), type=row[Row.TYPE].name, cookie=_text(row[Row.COOKIE]),
        peer_inode=_text(row[Row.PEER_INODE]),
        identity=escape_text(identity_text_of_row(row)),
    )


def socket_rows(snap: Snapshot) -> Iterator[Dict[str, str]]:
    """One row per (socket, holder) of a snapshot."""
    sockets = Sockets.of(snap.sockets)
    contexts = sockets.contexts
    for row, owners, _ in sockets.entries:
        columns = socket_columns(row)
        for owner in owners or (None,):
            yield dict(columns, **owner_columns(owner, owner and contexts.get(owner[OWNER_PID])))


def unresolved_rows(snap: Snapshot) -> Iterator[Dict[str, str]]:
    """One row per (held socket no backend reported, holder), with the reason."""
    for inode, unresolved in sorted(snap.unresolved.items()):
        for owner in unresolved.owners or (None,):
            yield dict(owner_columns(owner and owner_row(owner), owner and owner.context), socket=_text(inode),
                       inode=_text(inode),
                       reason=escape_text(unresolved.reason))


def backend_rows(registry: Registry, source: Source) -> Iterator[Dict[str, str]]:
    """One row per backend (ready, or unavailable with the reason) and per broken plugin."""
    for backend in registry.backends:
        reason = backend.unavailable(source)
        kinds = backend.info.kinds
        yield {name: escape_text(value) for name, value in (
            ("name", backend.name), ("priority", str(backend.info.priority)),
            ("status", "ready" if reason is None else "unavailable"), ("reason", reason or ""),
            ("kinds", ",".join(k.name for k in kinds)),
            ("families", ",".join(dict.fromkeys(k.family.name.lower() for k in kinds))),
            ("lookup_only", str(int(backend.info.lookup_only))), ("plugin", backend.plugin_name),
            ("distribution", backend.distribution or ""), ("version", backend.version or ""),
        )}
    for failure in registry.failures:
        yield dict({name: "" for name, _ in BACKEND_COLUMNS}, name=escape_text(failure.name), status="broken",
                   reason=escape_text(failure.reason), distribution=escape_text(failure.distribution or ""))


def _argument(name: str, expr: str):
    """The make_query value of one equality's text, None when it is not one (left to osquery).
    Text columns show escaped values (escape_text) and the filters compare raw ones: they are equal
    but for a backslash, which every escape holds, so a value holding one is left to osquery."""
    if name in ("pid", "netns", "port"):
        return int(expr) if expr.isdigit() else None
    return None if "\\" in expr else expr


def pushed_down(context: Mapping, columns: Iterable[str], registry: Registry) -> Query:
    """The query that osquery's constraints (the `context` of a generate call) narrow a table to.

    Only equalities on the columns of PUSHDOWN that the table has: the first one per argument, for
    osquery applies them all again (two equalities on one column leave no row; on local_port and
    remote_port, either port is a superset). A value procsock refuses (a state it does not know,
    pid 0) is left to osquery, never an error.
    """
    asked: Dict[str, object] = {}
    constraints = context.get("constraints") if isinstance(context, Mapping) else None
    for constraint in constraints if isinstance(constraints, list) else ():
        if not isinstance(constraint, Mapping) or constraint.get("name") not in columns:
            continue
        argument = PUSHDOWN.get(constraint["name"])
        ops = constraint.get("list")  # osquery sends "" for a column without constraints
        if argument is None or argument in asked or not isinstance(ops, list):
            continue
        for op in ops:
            if isinstance(op, Mapping) and op.get("op") == EQUALS and isinstance(op.get("expr"), str):
                value = _argument(argument, op["expr"])
                if value is None:
                    continue
                try:
                    make_query(**{argument: value}, registry=registry)
                except (BadArgument, TypeError):
                    continue
                asked[argument] = value
                break
    return make_query(**asked, context="unit" in columns, registry=registry)


Table = Tuple[Tuple[Tuple[str, str], ...], Callable[["Extension", Mapping], Iterable[Dict[str, str]]]]


class Extension(ExtensionService.Iface):
    """What osquery calls on an extension (ping, call, shutdown), for procsock's tables read from
    `source` through `registry` (and only `backend`, if given)."""

    def __init__(self, registry: Registry, source: Source, backend: Optional[str] = None) -> None:
        self.registry, self.source, self.backend = registry, source, backend
        self.stopped = threading.Event()
        self.listening: Optional[TSocket.TServerSocket] = None

    def snapshot(self, context: Mapping, columns: Iterable[str]) -> Optional[Snapshot]:
        """The snapshot a generate call's constraints narrow to; None when a pushed-down pid holds
        nothing (no such process, or not ours to read: a full table would list none of its fds)."""
        try:
            return Resolver(self.registry, self.source, self.backend).snapshot(
                pushed_down(context, columns, self.registry))
        except (NoSuchProcess, AccessDenied):
            return None

    def _sockets(self, context: Mapping) -> Iterable[Dict[str, str]]:
        snap = self.snapshot(context, [name for name, _ in SOCKET_COLUMNS])
        return () if snap is None else socket_rows(snap)

    def _unresolved(self, context: Mapping) -> Iterable[Dict[str, str]]:
        snap = self.snapshot(context, ["pid"])  # only pid keeps every kind (see Snapshot.unresolved)
        return () if snap is None else unresolved_rows(snap)

    def _backends(self, context: Mapping) -> Iterable[Dict[str, str]]:
        return backend_rows(self.registry, self.source)

    TABLES: Dict[str, Table] = {
        "procsock_sockets": (SOCKET_COLUMNS, _sockets),
        "procsock_unresolved": (UNRESOLVED_COLUMNS, _unresolved),
        "procsock_backends": (BACKEND_COLUMNS, _backends),
    }

    def registry_routes(self) -> Dict[str, Dict[str, List[Dict[str, str]]]]:
        """The tables and their columns, as registerExtension announces them."""
        return {"table": {name: routes(columns) for name, (columns, _) in self.TABLES.items()}}

    def ping(self) -> ExtensionStatus:
        return ExtensionStatus(code=0, message="OK")

    def call(self, registry: str, item: str, request: Mapping[str, str]) -> ExtensionResponse:
        table = self.TABLES.get(item) if registry == "table" else None
        if table is None:
            return _failed("no such table plugin: %s %s" % (escape_text(str(registry)), escape_text(str(item))))
        columns, generate = table
        action = request.get("action")
        if action == "columns":
            return ExtensionResponse(status=ExtensionStatus(code=0, message="OK"), response=routes(columns))
        if action != "generate":
            return _failed("unknown action: %s" % escape_text(str(action)))
        try:
            context = json.loads(request.get("context") or "{}")
            rows = list(generate(self, context))
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            return _failed("bad query context: %s" % escape_text(str(exc)))
        except (ProcsockError, OSError) as exc:
            return _failed(escape_text(str(exc)))
        return ExtensionResponse(status=ExtensionStatus(code=0, message="OK"), response=rows)

    def shutdown(self) -> ExtensionStatus:
        self.stop()
        return ExtensionStatus(code=0, message="OK")

    def stop(self) -> None:
        """Stop serving: the server's accept() returns and `serve` ends."""
        self.stopped.set()
        handle = getattr(self.listening, "handle", None)
        if handle is not None:
            try:
                handle.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def routes(columns: Iterable[Tuple[str, str]]) -> List[Dict[str, str]]:
    """A table's columns as osquery's routes (as osquery.TablePlugin.routes makes them)."""
    return [{"id": "column", "name": name, "type": kind, "op": "0"} for name, kind in columns]


def _failed(message: str) -> ExtensionResponse:
    return ExtensionResponse(status=ExtensionStatus(code=1, message=message), response=[])


def register(manager_path: str, extension: Extension, timeout: float = 3.0) -> str:
    """Announce the tables to osquery's extension manager at `manager_path`; the socket path this
    extension must then serve (`MANAGER_PATH.UUID`)."""
    client = ExtensionClient(path=manager_path)
    if not client.open(timeout=timeout):
        raise ProcsockError("cannot reach osquery's extension manager at %s" % escape_text(manager_path))
    try:
        status = client.extension_manager_client().registerExtension(
            info=InternalExtensionInfo(name="procsock", version=procsock.__version__, sdk_version="0.0.0",
                                       min_sdk_version="0.0.0"),
            registry=extension.registry_routes(),
        )
    except (TTransport.TTransportException, OSError) as exc:
        raise ProcsockError("osquery's extension manager at %s: %s" % (escape_text(manager_path), exc)) from None
    finally:
        client.close()
    if status.code != 0:
        raise ProcsockError("osquery refused the extension: %s" % escape_text(str(status.message)))
    return "%s.%s" % (manager_path, status.uuid)


def watch(manager_path: str, extension: Extension, interval: float) -> None:
    """Ping the manager every `interval` seconds; stop the extension when it no longer answers
    (osqueryd exited: an extension must not outlive it)."""
    while not extension.stopped.wait(interval):
        client = ExtensionClient(path=manager_path)
        try:
            alive = client.open(timeout=interval) and client.extension_manager_client().ping().code == 0
        except (TTransport.TTransportException, OSError):
            alive = False
        finally:
            client.close()
        if not alive:
            extension.stop()


def serve(path: str, extension: Extension) -> None:
    """Answer osquery's calls on the unix socket `path` until the extension stops."""
    transport = TSocket.TServerSocket(unix_socket=path)
    server = TServer.TSimpleServer(ExtensionService.Processor(extension), transport,
                                   TTransport.TBufferedTransportFactory(), TBinaryProtocol.TBinaryProtocolFactory())
    extension.listening = transport
    try:
        server.serve()
    except OSError:
        if not extension.stopped.is_set():
            raise
    finally:
        transport.close()
        try:
            os.unlink(path)
        except OSError:
            pass


def run(manager_path: str, registry: Registry, source: Source, backend: Optional[str] = None,
        timeout: float = 3.0, interval: float = 3.0) -> None:
    """Register the tables with osquery at `manager_path` and serve them until osquery asks the
    extension to shut down or stops answering pings."""
    extension = Extension(registry, source, backend)
    path = register(manager_path, extension, timeout)
    watcher = threading.Thread(target=watch, args=(manager_path, extension, interval), daemon=True)
    watcher.start()
    serve(path, extension)
