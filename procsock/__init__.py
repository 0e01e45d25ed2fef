"""procsock: what is socket:[56789]? Every socket a process holds, resolved to its endpoints."""

from procsock.errors import (
    AccessDenied,
    BackendUnavailable,
    NoSuchProcess,
    NotASocket,
    ParseError,
    ProcsockError,
    SocketNotFound,
)
from procsock.hookspecs import hookimpl
from procsock.model import (
    BackendInfo,
    Collected,
    Family,
    InetAddress,
    NetlinkAddress,
    Owner,
    PacketAddress,
    Socket,
    SocketKind,
    SocketRecord,
    SockType,
    Source,
    State,
    UnixAddress,
)
