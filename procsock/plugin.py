"""Everything a plugin author needs, in one module: the hook marker, the values a backend reads
and returns, the errors it raises, the safe way to read a source's files (``procsock.inputs``) and
the resources shared for one operation (``procsock.scope``).

Plugins (the built-in ones included) import from here and from nowhere else in procsock, so the
rest of the package can change without breaking them. The hooks themselves are declared and
documented in ``procsock.hookspecs``; docs/plugins.md is the guide.
"""

from typing import TYPE_CHECKING

from procsock.errors import BackendUnavailable, InputError, NotApplicable, ParseError, ProcsockError
from procsock.hookspecs import hookimpl
from procsock.inputs import decimal, hexadecimal, protocol_names, read_file, read_named_file, read_tree
from procsock import model
from procsock.model import (
    DETAIL_CLASSES,
    BUILTIN_KINDS,
    INET_KINDS,
    MPTCP,
    MPTCP6,
    NETLINK,
    PACKET,
    RAW,
    RAW6,
    SCTP,
    SCTP6,
    TCP,
    TCP6,
    UDP,
    UDP6,
    UDPLITE,
    UDPLITE6,
    UNIX,
    BackendInfo,
    Collected,
    Context,
    Destroyed,
    Endpoint,
    Family,
    InetAddress,
    NetlinkAddress,
    Netns,
    Owner,
    PacketAddress,
    Process,
    Row,
    SocketKind,
    SocketRecord,
    SockType,
    Source,
    State,
    UnixAddress,
    record_from_row,
    row_from_record,
)
from procsock.scope import kept, scope, shared

if TYPE_CHECKING:  # at run time the detail classes come from __getattr__, on first use
    from procsock.details import Extended, MemInfo, NetlinkInfo, PacketInfo, PacketRing, TcpInfo

__all__ = [
    "BUILTIN_KINDS",
    "INET_KINDS",
    "MPTCP",
    "MPTCP6",
    "NETLINK",
    "PACKET",
    "RAW",
    "RAW6",
    "SCTP",
    "SCTP6",
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
    "Context",
    "Destroyed",
    "Endpoint",
    "Extended",
    "Family",
    "InetAddress",
    "InputError",
    "MemInfo",
    "NetlinkAddress",
    "NetlinkInfo",
    "Netns",
    "NotApplicable",
    "Owner",
    "PacketAddress",
    "PacketInfo",
    "PacketRing",
    "ParseError",
    "Process",
    "ProcsockError",
    "Row",
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
    "kept",
    "protocol_names",
    "read_file",
    "read_named_file",
    "read_tree",
    "record_from_row",
    "row_from_record",
    "scope",
    "shared",
]


def __getattr__(name: str):
    """The model's detail classes (Extended, MemInfo, TcpInfo), created on first use."""
    if name in DETAIL_CLASSES:
        return getattr(model, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
