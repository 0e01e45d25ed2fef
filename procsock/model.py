"""Value classes: what a socket is, who holds it, and where procsock reads from.

Everything here is a frozen, slotted attrs class or an enum, so records are cheap to build in bulk
(100k sockets), hashable, and safe to share between threads. Addresses are kept as the packed bytes
the kernel holds; conversions to text happen only when something is displayed.
"""

import enum
import socket
from typing import TYPE_CHECKING, FrozenSet, Mapping, Optional, Sequence, Tuple, Union

import attrs

from procsock.text import escape_bytes

if TYPE_CHECKING:
    import ipaddress

    from procsock.details import Extended


class Family(enum.IntEnum):
    """Address families (AF_*), with the kernel's numbers."""

    UNIX = 1
    INET = 2
    INET6 = 10
    NETLINK = 16
    PACKET = 17
    TIPC = 30
    BLUETOOTH = 31
    VSOCK = 40
    SMC = 43
    XDP = 44


class SockType(enum.IntEnum):
    """Socket types (SOCK_*)."""

    STREAM = 1
    DGRAM = 2
    RAW = 3
    RDM = 4
    SEQPACKET = 5
    DCCP = 6
    PACKET = 10


class State(enum.IntEnum):
    """Socket states, in the kernel's TCP numbering that inet_diag and unix_diag share.

    Unix and UDP sockets use the same numbers: ESTABLISHED (connected), CLOSE (unconnected), LISTEN.
    """

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    NEW_SYN_RECV = 12
    BOUND_INACTIVE = 13

    @property
    def label(self) -> str:
        """The short name `ss` prints (ESTAB, UNCONN, TIME-WAIT, ...)."""
        return _STATE_LABELS[self]


_STATE_LABELS = {
    State.ESTABLISHED: "ESTAB",
    State.SYN_SENT: "SYN-SENT",
    State.SYN_RECV: "SYN-RECV",
    State.FIN_WAIT1: "FIN-WAIT-1",
    State.FIN_WAIT2: "FIN-WAIT-2",
    State.TIME_WAIT: "TIME-WAIT",
    State.CLOSE: "UNCONN",
    State.CLOSE_WAIT: "CLOSE-WAIT",
    State.LAST_ACK: "LAST-ACK",
    State.LISTEN: "LISTEN",
    State.CLOSING: "CLOSING",
    State.NEW_SYN_RECV: "NEW-SYN-RECV",
    State.BOUND_INACTIVE: "BOUND-INACTIVE",
}


@attrs.frozen
class SocketKind:
    """One family/protocol pair that a backend serves and the resolver picks a backend for.

    `name` is unique among kinds (the built-ins are named after their /proc/net files: tcp, tcp6,
    udp, ..., unix); `protocol` is the name users filter by (tcp, udp, udplite, raw, unix, ...).
    `kernel_names` are the kernel's names for it in a socket fd's `system.sockprotoname` xattr
    (TCP, UDPv6, PING...): they let a lookup of one fd ask only this kind. Plugins may define
    kinds of their own.
    """

    name: str
    family: Family
    protocol: str
    kernel_names: Tuple[str, ...] = attrs.field(default=(), eq=False)


TCP = SocketKind("tcp", Family.INET, "tcp", ("TCP",))
TCP6 = SocketKind("tcp6", Family.INET6, "tcp", ("TCPv6",))
UDP = SocketKind("udp", Family.INET, "udp", ("UDP",))
UDP6 = SocketKind("udp6", Family.INET6, "udp", ("UDPv6",))
UDPLITE = SocketKind("udplite", Family.INET, "udplite", ("UDP-Lite",))
UDPLITE6 = SocketKind("udplite6", Family.INET6, "udplite", ("UDPLITEv6",))
RAW = SocketKind("raw", Family.INET, "raw", ("RAW",))
RAW6 = SocketKind("raw6", Family.INET6, "raw", ("RAWv6",))
UNIX = SocketKind("unix", Family.UNIX, "unix", ("UNIX", "UNIX-STREAM"))
PACKET = SocketKind("packet", Family.PACKET, "packet", ("PACKET",))
NETLINK = SocketKind("netlink", Family.NETLINK, "netlink", ("NETLINK",))

INET_KINDS = (TCP, TCP6, UDP, UDP6, UDPLITE, UDPLITE6, RAW, RAW6)
BUILTIN_KINDS = INET_KINDS + (UNIX, PACKET, NETLINK)


@attrs.frozen
class InetAddress:
    """An IPv4 or IPv6 address (packed, network order: 4 or 16 bytes) and port.

    For raw sockets the port is the IP protocol number, as the kernel reports it.
    """

    packed: bytes
    port: int

    @property
    def ip(self) -> "Union[ipaddress.IPv4Address, ipaddress.IPv6Address]":
        import ipaddress  # only here: nothing else needs it

        return ipaddress.ip_address(self.packed)

    @property
    def host(self) -> str:
        """The address as text: dotted quad, or RFC 5952 IPv6 (IPv4-mapped kept as ::ffff:a.b.c.d)."""
        if len(self.packed) == 4:
            return socket.inet_ntop(socket.AF_INET, self.packed)
        return socket.inet_ntop(socket.AF_INET6, self.packed)

    @property
    def is_wildcard(self) -> bool:
        return not any(self.packed)

    def __str__(self) -> str:
        """Like `ss -n`: 127.0.0.1:22, [::1]:22, 0.0.0.0:* (port 0 shows as *)."""
        if len(self.packed) == 4:
            return "%s:%s" % (socket.inet_ntop(socket.AF_INET, self.packed), self.port or "*")
        return "[%s]:%s" % (socket.inet_ntop(socket.AF_INET6, self.packed), self.port or "*")

    def as_dict(self) -> dict:
        return {"address": self.host, "port": self.port}


@attrs.frozen
class UnixAddress:
    """A unix socket name: the exact bytes of sun_path the kernel holds.

    An abstract name starts with a NUL byte and may hold further NULs; a filesystem name has no
    trailing NUL; an unbound socket has the empty name. Nothing is decoded: names may hold newlines,
    control characters or bytes that are not UTF-8.
    """

    name: bytes

    @property
    def abstract(self) -> bool:
        return self.name[:1] == b"\0"

    @property
    def display(self) -> str:
        """A one-line, control-free form: `@` + escaped bytes for abstract names, `*` when unbound."""
        if not self.name:
            return "*"
        if self.abstract:
            return "@" + escape_bytes(self.name[1:])
        return escape_bytes(self.name)

    def __str__(self) -> str:
        return self.display

    def as_dict(self) -> dict:
        return {"name": self.display, "name_hex": self.name.hex(), "abstract": self.abstract}


@attrs.frozen
class PacketAddress:
    """An AF_PACKET binding: interface index (0 = any) and ethertype (host order)."""

    ifindex: int
    ethertype: int

    def __str__(self) -> str:
        iface = "*" if self.ifindex == 0 else str(self.ifindex)
        return "%s:0x%04x" % (iface, self.ethertype)

    def as_dict(self) -> dict:
        return {"ifindex": self.ifindex, "ethertype": self.ethertype}


@attrs.frozen
class NetlinkAddress:
    """An AF_NETLINK endpoint: netlink protocol, port id and multicast groups bitmap."""

    protocol: int
    portid: int
    groups: int

    def __str__(self) -> str:
        return "%d:%d" % (self.protocol, self.portid)

    def as_dict(self) -> dict:
        return {"protocol": self.protocol, "portid": self.portid, "groups": self.groups}


Endpoint = Union[InetAddress, UnixAddress, PacketAddress, NetlinkAddress]

DETAIL_CLASSES = ("Extended", "MemInfo", "TcpInfo")  # procsock.details: created on first use


def __getattr__(name: str):
    """The detail classes, imported when first asked for (most runs never need them)."""
    if name in DETAIL_CLASSES:
        from procsock import details

        return getattr(details, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


@attrs.frozen(kw_only=True)
class SocketRecord:
    """What one backend knows of one socket (16 fields: built by keyword only, never by position).

    `inode` is the sockfs inode, unique host-wide; 0 for sockets that have none (TIME_WAIT, embryonic
    connections), so never key records by inode alone. Fields a backend cannot know are None:
    `peer_inode` (unix peer), `netns` (namespace inode), `interface` (bound ifindex, 0 = any) and
    `cookie` (the kernel's 64-bit socket cookie); `extended` only when details were asked for.
    """

    kind: SocketKind
    inode: int
    type: SockType
    protocol: int
    state: State
    local: Endpoint
    remote: Optional[Endpoint]
    rx_queue: Optional[int]
    tx_queue: Optional[int]
    uid: Optional[int]
    backend: str
    peer_inode: Optional[int] = None
    netns: Optional[int] = None
    interface: Optional[int] = None
    cookie: Optional[int] = None
    extended: Optional["Extended"] = None  # procsock.details, made on first use

    @property
    def family(self) -> Family:
        return self.kind.family

    @property
    def netid(self) -> str:
        """The short protocol column `ss` prints: tcp, udp, raw, u_str, u_dgr, u_seq, p_raw, nl ..."""
        if self.kind.family is Family.UNIX:
            return _UNIX_NETIDS.get(self.type, "u_???")
        if self.kind.family is Family.PACKET:
            return "p_raw" if self.type is SockType.RAW else "p_dgr"
        if self.kind.family is Family.NETLINK:
            return "nl"
        return self.kind.protocol


_UNIX_NETIDS = {SockType.STREAM: "u_str", SockType.DGRAM: "u_dgr", SockType.SEQPACKET: "u_seq"}


@attrs.frozen
class Owner:
    """One file descriptor that holds a socket: process id, fd number, process name (comm) and uid.

    The process name is decoded with surrogateescape, so it round-trips through os.fsencode.
    `tid` is None when the fd is in the process's fd table (the one its threads share); a thread
    that made a table of its own (unshare(CLONE_FILES)) holds fds there, and its owners carry
    that thread's id as `tid` (pid stays the process's).
    """

    pid: int
    fd: int
    name: str
    uid: Optional[int]
    tid: Optional[int] = None

    @property
    def task(self) -> int:
        """The id under /proc whose fd table holds this fd (/proc/TASK/fd/FD): tid, else pid."""
        return self.pid if self.tid is None else self.tid


@attrs.frozen
class Socket:
    """A socket record joined with every fd that holds it (several after fork, dup or SCM_RIGHTS).

    `peer_owners` lists who holds the other end of a connected unix socket, when a backend knows the
    peer and a process holds it.
    """

    record: SocketRecord
    owners: Tuple[Owner, ...]
    peer_owners: Tuple[Owner, ...] = ()


# The default bound on one captured or saved file: far above any real socket table.
DEFAULT_MAX_INPUT_BYTES = 256 * 1024 * 1024


@attrs.frozen
class Source:
    """Where sockets are read from.

    The live host reads /proc and may ask this kernel (netlink, pidfd). A captured /proc tree
    (sosreport, copy of a broken host) is read from files only: this kernel knows nothing of it. A
    saved sock_diag file replaces the kernel for netlink backends; owners come from `proc_root` if set.

    `max_input_bytes` bounds each file read from a capture or a saved file (`procsock.inputs`):
    a larger one is refused rather than read into memory.
    """

    proc_root: Optional[str] = "/proc"
    kernel: bool = True
    diag_file: Optional[str] = None
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES

    @classmethod
    def live(cls) -> "Source":
        return cls()

    @classmethod
    def capture(cls, proc_root: str) -> "Source":
        return cls(proc_root=str(proc_root), kernel=False)

    @classmethod
    def saved_diag(cls, diag_file: str, proc_root: Optional[str] = None) -> "Source":
        return cls(
            proc_root=None if proc_root is None else str(proc_root),
            kernel=False,
            diag_file=str(diag_file),
        )


@attrs.frozen
class Netns:
    """A network namespace to read sockets in.

    `inode` is its nsfs inode (what `/proc/PID/ns/net` links to; None when unknown, e.g. in a
    captured tree). `pid` is a process inside it through which to reach it; None means the
    namespace procsock itself runs in (the one `/proc/net` and a fresh netlink socket see).
    """

    inode: Optional[int] = None
    pid: Optional[int] = None


@attrs.frozen
class BackendInfo:
    """What a backend plugin declares about itself.

    `priority` orders backends serving the same kind (higher is tried first). The built-ins use
    150 (pidfd), 100 (netlink sock_diag) and 50 (/proc/net text). A `lookup_only` backend answers
    only for given inodes (describe_fd, snapshot(pid=...)), never whole tables.
    """

    name: str
    priority: int
    kinds: Tuple[SocketKind, ...]
    description: str = ""
    lookup_only: bool = False


@attrs.frozen
class Collected:
    """A backend's answer for one kind: its records, lines it skipped with the reason, how
    many times it read the table again because the kernel said it changed mid-read
    (NLM_F_DUMP_INTR), and the inodes it `deferred`: (inode, reason) for sockets of this kind it
    holds but cannot answer completely (a connecting socket has no peer address yet, one in no
    kernel table has nothing to list). The next backend is asked for those; the reason, which says
    what the socket is, stays the unresolved reason if none reports it."""

    records: Tuple[SocketRecord, ...]
    skipped: Tuple[str, ...] = ()
    retries: int = 0
    deferred: Tuple[Tuple[int, str], ...] = ()


# --- What a snapshot answers: the query, the notes, the sockets no backend reported -------------


def _one_or_set(value) -> Optional[FrozenSet[int]]:
    return None if value is None else frozenset((value,) if isinstance(value, int) else value)


@attrs.frozen
class Query:
    """Which sockets to list. Each filter is None (no restriction) or a set of accepted values
    (`pid` and `port` also take one number); `details` asks backends for
    ``SocketRecord.extended`` (tcp_info, memory, ...). Values are not checked here: make_query
    checks what users give."""

    kinds: Optional[FrozenSet[str]] = None
    families: Optional[FrozenSet[Family]] = None
    protocols: Optional[FrozenSet[str]] = None
    states: Optional[FrozenSet[State]] = None
    pid: Optional[FrozenSet[int]] = attrs.field(default=None, converter=_one_or_set)
    port: Optional[FrozenSet[int]] = attrs.field(default=None, converter=_one_or_set)
    netns: Optional[FrozenSet[int]] = None
    details: bool = False

    def wants_kind(self, kind: SocketKind) -> bool:
        return (
            (self.kinds is None or kind.name in self.kinds)
            and (self.families is None or kind.family in self.families)
            and (self.protocols is None or kind.protocol in self.protocols)
        )

    @property
    def filters_records(self) -> bool:
        return self.states is not None or self.port is not None or self.netns is not None

    def wants(self, record: SocketRecord) -> bool:
        if self.netns is not None and record.netns not in self.netns:
            return False
        if self.states is not None and record.state not in self.states:
            return False
        if self.port is not None:
            ports = self.port
            local, remote = getattr(record.local, "port", None), getattr(record.remote, "port", None)
            if local not in ports and remote not in ports:
                return False
        return True

    @property
    def selects_all(self) -> bool:
        """True when no filter drops sockets by what they are (only then is "unresolved" meaningful)."""
        narrowed = self.kinds is not None or self.families is not None or self.protocols is not None
        return not narrowed and not self.filters_records


class NoteCode(str, enum.Enum):
    """What a note is about, for code that acts on notes (the CLI's exit status, tests).

    A kind's table read by no backend (``UNREADABLE_TABLE``), a backend that failed while a later one
    answered (``FALLBACK``), input entries a backend skipped (``SKIPPED_ENTRIES``), a plugin that
    could not load (``BROKEN_PLUGIN``), processes or fds the walk could not read
    (``UNREADABLE_PROCESSES``, ``HIDDEN_PROCESSES``, ``DENIED_FDS``, ``MALFORMED_FDS``), sockets a
    namespace reported that another one's processes hold (``CLAIMED_ELSEWHERE``) or that several
    reported (``CONTESTED``), and namespaces asked for that a capture does not show (``NETNS_MISSING``).
    """

    UNREADABLE_TABLE = "unreadable-table"
    FALLBACK = "fallback"
    SKIPPED_ENTRIES = "skipped-entries"
    BROKEN_PLUGIN = "broken-plugin"
    UNREADABLE_PROCESSES = "unreadable-processes"
    HIDDEN_PROCESSES = "hidden-processes"
    DENIED_FDS = "denied-fds"
    MALFORMED_FDS = "malformed-fds"
    CLAIMED_ELSEWHERE = "claimed-elsewhere"
    CONTESTED = "contested"
    NETNS_MISSING = "netns-missing"


@attrs.frozen
class Note:
    """One thing the user should know about a snapshot: a `code` to act on, the one-line `text` to
    show (raw: renderers escape it), and where it applies when it is one place: the `kind` name
    (with " (netns INODE)" for another namespace), the `backend`, the namespace inode `netns`."""

    code: NoteCode = attrs.field(converter=NoteCode)
    text: str
    kind: Optional[str] = None
    backend: Optional[str] = None
    netns: Optional[int] = None

    def __str__(self) -> str:
        return self.text

    def as_dict(self) -> dict:
        return {"code": self.code.value, "text": self.text, "kind": self.kind, "backend": self.backend,
                "netns": self.netns}


class FrozenDict(dict):
    """A dict that refuses changes and hashes by its items, so the values holding one stay
    hashable; still a dict for JSON, equality and users' code."""

    __slots__ = ("_hash",)

    def _refuse(self, *args, **kwargs):
        raise TypeError("%s is read-only" % type(self).__name__)

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            object.__setattr__(self, "_hash", hash(frozenset(self.items())))
            return self._hash

    def __reduce__(self):
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)


def _frozen(value) -> FrozenDict:
    return value if isinstance(value, FrozenDict) else FrozenDict(value)


@attrs.frozen
class Unresolved:
    """A socket inode that processes hold but no backend reported, and the likely reason."""

    inode: int
    owners: Tuple[Owner, ...]
    reason: str


@attrs.frozen(kw_only=True)
class Snapshot:
    """The sockets of one moment, and how they were found (built by keyword: its fields may grow).

    `sockets` is a sequence of Socket (read it as one: it may later be built on access).
    `answered_by` maps kind name → backend name. `notes` are Notes for the user (fallbacks,
    skipped lines, unreadable processes); `skipped` holds every skipped input line with its reason.
    `unresolved` maps inodes that processes hold but no backend reported (a namespace that could
    not be read, a family no backend serves) to an Unresolved with the reason; it is filled only
    when no filter narrows the kinds. `netns_names` names the namespaces of the sockets listed
    that `ip netns add` named (live host). `retries` counts the tables read again because the
    kernel flagged them changed mid-dump (NLM_F_DUMP_INTR). The mappings are read-only dicts, so
    a Snapshot is hashable like every value here.
    """

    sockets: Sequence[Socket]
    answered_by: Mapping[str, str] = attrs.field(converter=_frozen)
    notes: Tuple[Note, ...] = ()
    skipped: Tuple[str, ...] = ()
    unreadable_processes: Tuple[int, ...] = ()
    unresolved: Mapping[int, Unresolved] = attrs.field(factory=FrozenDict, converter=_frozen)
    netns_names: Mapping[int, str] = attrs.field(factory=FrozenDict, converter=_frozen)
    retries: int = 0
