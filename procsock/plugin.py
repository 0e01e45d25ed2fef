"""Everything a plugin author needs, in one module: the hook marker, the values a backend reads
and returns, the errors it raises, the safe way to read a source's files (``procsock.inputs``) and
the resources shared for one operation (``procsock.scope``).

Plugins (the built-in ones included) import from here and from nowhere else in procsock, so the
rest of the package can change without breaking them. The hooks themselves are declared and
documented in ``procsock.hookspecs``; docs/plugins.md is the guide.
"""

from procsock.errors import BackendUnavailable, InputError, NotApplicable, ParseError, ProcsockError
from procsock.hookspecs import hookimpl
from procsock.inputs import decimal, hexadecimal, read_file, read_named_file
from procsock.model import (
    BUILTIN_KINDS,
    INET_KINDS,
    NETLINK,
    PACKET,
    RAW,
    RAW6,
    TCP,
    TCP6,
    UDP,
    UDP6,
    UDPLITE,
    UDPLITE6,
    UNIX,
    BackendInfo,
    Collected,
    Endpoint,
    Extended,
    Family,
    InetAddress,
    MemInfo,
    NetlinkAddress,
    Netns,
    Owner,
    PacketAddress,
    SocketKind,
    SocketRecord,
    SockType,
    Source,
    State,
    TcpInfo,
    UnixAddress,
)
from procsock.scope import scope, shared

__all__ = [
    "BUILTIN_KINDS",
    "INET_KINDS",
    "NETLINK",
    "PACKET",
    "RAW",
    "RAW6",
    "TCP",
    "TCP6",
    "UDP",
    "UDP6",
    "UDPLITE",
    "UDPLITE6",
    "UNIX",
    "BackendInfo",
    "BackendUnavailable",
    "Collected",
    "Endpoint",
    "Extended",
    "Family",
    "InetAddress",
    "InputError",
    "MemInfo",
    "NetlinkAddress",
    "Netns",
    "NotApplicable",
    "Owner",
    "PacketAddress",
    "ParseError",
    "ProcsockError",
    "SocketKind",
    "SocketRecord",
    "SockType",
    "Source",
    "State",
    "TcpInfo",
    "UnixAddress",
    "decimal",
    "hexadecimal",
    "hookimpl",
    "read_file",
    "read_named_file",
    "scope",
    "shared",
]
