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
    Netns,
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
from procsock.api import describe_fd, describe_inode, make_query, snapshot
from procsock.resolver import Query, Snapshot

__all__ = [
    "AccessDenied",
    "BackendInfo",
    "BackendUnavailable",
    "Collected",
    "Family",
    "InetAddress",
    "Netns",
    "NetlinkAddress",
    "NoSuchProcess",
    "NotASocket",
    "Owner",
    "PacketAddress",
    "ParseError",
    "ProcsockError",
    "Query",
    "Snapshot",
    "Socket",
    "SocketKind",
    "SocketNotFound",
    "SocketRecord",
    "SockType",
    "Source",
    "State",
    "UnixAddress",
    "describe_fd",
    "describe_inode",
    "hookimpl",
    "make_query",
    "snapshot",
]
