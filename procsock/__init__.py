"""procsock: what is socket:[56789]? Every socket a process holds, resolved to its endpoints.

This is the user's face of the library: ``snapshot()``, ``describe_fd()``, ``describe_inode()``,
the values they return and the errors they raise. Plugin authors import from ``procsock.plugin``.
Names are imported on first use (module ``__getattr__``), so ``import procsock`` costs almost
nothing and a program pays only for what it touches.
"""

import importlib

__version__ = "0.2.0"

_HOMES = {
    "procsock.api": ("describe_fd", "describe_inode", "make_query", "snapshot"),
    "procsock.backends": ("Registry",),
    "procsock.changes": ("Change", "Diff", "diff"),
    "procsock.compare": ("Comparison", "Comparisons", "compare_backends"),
    "procsock.errors": (
        "AccessDenied", "BackendUnavailable", "BadArgument", "InputError", "NoSuchProcess", "NotApplicable",
        "NotASocket", "ParseError", "ProcsockError", "SocketNotFound",
    ),
    "procsock.hookspecs": ("hookimpl",),
    "procsock.saved": ("load",),
    "procsock.watcher": ("Event", "watch"),
    "procsock.model": (
        "BUILTIN_KINDS", "INET_KINDS", "NETLINK", "PACKET", "RAW", "RAW6", "TCP", "TCP6", "UDP", "UDP6", "UDPLITE",
        "UDPLITE6", "UNIX", "BackendInfo", "Collected", "Extended", "Family", "InetAddress", "MemInfo",
        "NetlinkAddress", "Netns", "Owner", "PacketAddress", "Socket", "SocketKind", "SocketRecord", "SockType",
        "SocketIdentity", "Source", "State", "TcpInfo", "UnixAddress",
        "Note", "NoteCode", "Query", "Snapshot", "Unresolved", "Context", "Process",
    ),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_HOME_OF) + ["__version__"]


def __getattr__(name: str):
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError("module 'procsock' has no attribute %r" % name)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__():
    return __all__
