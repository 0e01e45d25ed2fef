"""Value classes: what a socket is, who holds it, and where procsock reads from.

Everything here is a frozen, slotted attrs class or an enum, so records are cheap to build in bulk
(100k sockets), hashable, and safe to share between threads. Addresses are kept as the packed bytes
the kernel holds; conversions to text happen only when something is displayed.
"""

import collections.abc
import enum
import socket
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import attrs

from procsock.limits import DEFAULT_MAX_INPUT_BYTES
from procsock.text import escape_bytes, escape_text

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
    kinds of their own. `supersedes` names kinds whose tables also list this kind's sockets
    (the kernel lists an MPTCP listener's TCP subflow under the MPTCP socket's inode): when one
    inode is reported as both, this kind's record stands (see "One inode, two kinds" in
    docs/plugins.md for the whole rule).
    """

    name: str
    family: Family
    protocol: str
    kernel_names: Tuple[str, ...] = attrs.field(default=(), eq=False)
    supersedes: Tuple[str, ...] = attrs.field(default=(), eq=False)


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
# Kinds only sock_diag lists (no /proc/net table of that name): served by the netlink backend (and SCTP's
# /proc/net/sctp tables by procnet). The kernel lists an MPTCP listener's TCP subflow under the MPTCP inode.
MPTCP = SocketKind("mptcp", Family.INET, "mptcp", ("MPTCP",), supersedes=("tcp",))
MPTCP6 = SocketKind("mptcp6", Family.INET6, "mptcp", ("MPTCPv6",), supersedes=("tcp6",))
SCTP = SocketKind("sctp", Family.INET, "sctp", ("SCTP",))
SCTP6 = SocketKind("sctp6", Family.INET6, "sctp", ("SCTPv6",))

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
        return self.host_of(self.packed)

    @property
    def is_wildcard(self) -> bool:
        return not any(self.packed)

    @staticmethod
    def host_of(packed: bytes, _ntop=socket.inet_ntop, _v4=socket.AF_INET, _v6=socket.AF_INET6) -> str:
        """The address as text: dotted quad, or RFC 5952 IPv6 (IPv4-mapped kept as ::ffff:a.b.c.d);
        a value that is not 4 or 16 bytes (a plugin's mistake) as "invalid:" and its escaped repr."""
        try:
            return _ntop(_v4 if len(packed) == 4 else _v6, packed)
        except (TypeError, ValueError):
            return "invalid:" + escape_text(repr(packed))

    @staticmethod
    def text(packed: bytes, port: int, host: Optional[str] = None) -> str:
        """Like `ss -n`: 127.0.0.1:22, [::1]:22, 0.0.0.0:* (port 0 shows as *). `host` is
        host_of(packed) when the caller has it already."""
        form = "%s:%s" if len(packed) == 4 else "[%s]:%s"
        return form % (InetAddress.host_of(packed) if host is None else host, port or "*")

    @staticmethod
    def fields_dict(packed: bytes, port: int) -> dict:
        return {"address": InetAddress.host_of(packed), "port": port}

    def __str__(self) -> str:
        return self.text(self.packed, self.port)

    def as_dict(self) -> dict:
        return self.fields_dict(self.packed, self.port)


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
        return self.text(self.name)

    @staticmethod
    def text(name: bytes) -> str:
        """A one-line, control-free form: `@` + escaped bytes for abstract names, `*` when unbound."""
        if not name:
            return "*"
        if name[:1] == b"\0":
            return "@" + escape_bytes(name[1:])
        return escape_bytes(name)

    @staticmethod
    def fields_dict(name: bytes) -> dict:
        return {"name": UnixAddress.text(name), "name_hex": name.hex(), "abstract": name[:1] == b"\0"}

    def __str__(self) -> str:
        return self.text(self.name)

    def as_dict(self) -> dict:
        return self.fields_dict(self.name)


@attrs.frozen
class PacketAddress:
    """An AF_PACKET binding: interface index (0 = any) and ethertype (host order)."""

    ifindex: int
    ethertype: int

    @staticmethod
    def text(ifindex: int, ethertype: int) -> str:
        """`ETH_P_ALL@2`, `ETH_P_IP@*` (any interface), `0x88b5@2` (an ethertype without a name)."""
        name = ETHERTYPE_NAMES.get(ethertype) or "0x%04x" % ethertype
        return "%s@%s" % (name, "*" if ifindex == 0 else ifindex)

    @staticmethod
    def fields_dict(ifindex: int, ethertype: int) -> dict:
        return {"ifindex": ifindex, "ethertype": ethertype}

    def __str__(self) -> str:
        return self.text(self.ifindex, self.ethertype)

    def as_dict(self) -> dict:
        return self.fields_dict(self.ifindex, self.ethertype)


@attrs.frozen
class NetlinkAddress:
    """An AF_NETLINK endpoint: netlink protocol, port id and multicast groups bitmap (group N is
    bit N-1; a remote endpoint's bitmap holds its one destination group)."""

    protocol: int
    portid: int
    groups: int

    @staticmethod
    def text(protocol: int, portid: int, groups: int) -> str:
        """Like `ss --netlink`: the protocol's name and the port id, `rtnl:1234`; port id 0 is the kernel."""
        name = NETLINK_PROTOCOL_NAMES.get(protocol) or str(protocol)
        return "%s:%s" % (name, portid or "kernel")

    @staticmethod
    def group_list(groups: int) -> Tuple[int, ...]:
        """The multicast group numbers of a bitmap (group N is bit N-1)."""
        return tuple(bit + 1 for bit in range(groups.bit_length()) if groups >> bit & 1)

    @staticmethod
    def fields_dict(protocol: int, portid: int, groups: int) -> dict:
        return {"protocol": protocol, "portid": portid, "groups": groups}

    def __str__(self) -> str:
        return self.text(self.protocol, self.portid, self.groups)

    def as_dict(self) -> dict:
        return self.fields_dict(self.protocol, self.portid, self.groups)


Endpoint = Union[InetAddress, UnixAddress, PacketAddress, NetlinkAddress]

# Names as `ss` prints them: ethertypes (linux/if_ether.h, host order) and netlink protocols (linux/netlink.h).
ETHERTYPE_NAMES = {
    0x0001: "ETH_P_802_3", 0x0003: "ETH_P_ALL", 0x0004: "ETH_P_802_2", 0x0800: "ETH_P_IP", 0x0806: "ETH_P_ARP",
    0x8035: "ETH_P_RARP", 0x8100: "ETH_P_8021Q", 0x86DD: "ETH_P_IPV6", 0x8847: "ETH_P_MPLS_UC",
    0x8863: "ETH_P_PPP_DISC", 0x8864: "ETH_P_PPP_SES", 0x888E: "ETH_P_PAE", 0x88A8: "ETH_P_8021AD",
    0x88CC: "ETH_P_LLDP", 0x88F7: "ETH_P_1588",
}
NETLINK_PROTOCOL_NAMES = {
    0: "rtnl", 1: "unused", 2: "usersock", 3: "fw", 4: "tcpdiag", 5: "nflog", 6: "xfrm", 7: "selinux",
    8: "iscsi", 9: "audit", 10: "fiblookup", 11: "connector", 12: "nft", 13: "ip6fw", 14: "dec-rt",
    15: "uevent", 16: "genl", 18: "scsi-trans", 19: "ecryptfs", 20: "rdma", 21: "crypto", 22: "smc",
}

# procsock.details: created on first use
DETAIL_CLASSES = ("Extended", "MemInfo", "NetlinkInfo", "PacketInfo", "PacketRing", "TcpInfo")


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
        return netid(self.kind, self.type)

    @property
    def identity(self) -> "SocketIdentity":
        """Which socket this is, across moments and backends (SocketIdentity)."""
        return identity_of_row(row_from_record(self))


def netid(kind: SocketKind, sock_type: SockType) -> str:
    """The short protocol column `ss` prints: tcp, udp, raw, u_str, u_dgr, u_seq, p_raw, nl ..."""
    family = kind.family
    if family is Family.UNIX:
        return _UNIX_NETIDS.get(sock_type, "u_???")
    if family is Family.PACKET:
        return "p_raw" if sock_type is SockType.RAW else "p_dgr"
    if family is Family.NETLINK:
        return "nl"
    return kind.protocol


_UNIX_NETIDS = {SockType.STREAM: "u_str", SockType.DGRAM: "u_dgr", SockType.SEQPACKET: "u_seq"}


@attrs.frozen
class Context:
    """Who a process is beyond its pid: user name, command line, cgroup, and what the cgroup path
    says (systemd unit and slice, container, Kubernetes pod), from /proc alone; one value per
    process, shared by its owners. Every field is None when unknown; `extra` holds site plugins'
    fields (procsock_owner_context). Text is kept as read (surrogateescape): escape to show it.
    `cgroup` is the v2 path, `cgroup_v1` the name=systemd path of a v1/hybrid host, `cgroup_id`
    the inode of the v2 directory (what sock_diag reports as the socket's cgroup).
    """

    user: Optional[str] = None
    cmdline: Optional[str] = None
    cgroup: Optional[str] = None
    cgroup_v1: Optional[str] = None
    cgroup_id: Optional[int] = None
    unit: Optional[str] = None
    slice: Optional[str] = None
    container_id: Optional[str] = None
    container_runtime: Optional[str] = None
    pod_uid: Optional[str] = None
    pod_qos: Optional[str] = None
    pod_name: Optional[str] = None
    pod_namespace: Optional[str] = None
    # read-only (FrozenDict: defined below, hence the lambdas)
    extra: Mapping[str, Union[str, int, None]] = attrs.field(
        factory=lambda: FrozenDict(), converter=lambda value: _frozen(value))

    def as_dict(self) -> dict:
        return {**attrs.asdict(self, recurse=False), "extra": dict(self.extra)}


def unit_and_manager(unit: Optional[str]) -> Tuple[str, ...]:
    """The unit names a Context's `unit` answers to: itself and, for a unit of a user's manager
    (`user@1000.service/app.slice/x.scope`), that manager's system unit (user@1000.service)."""
    if unit is None:
        return ()
    manager = unit.split("/", 1)[0]
    return (unit,) if manager == unit else (unit, manager)


CONTEXT_FIELDS = tuple(f.name for f in attrs.fields(Context) if f.name != "extra")


@attrs.frozen
class Process:
    """What a context plugin is told of one process holding sockets: pid, name (comm), real uid,
    the raw text of PROC/PID/cgroup and PROC/PID/cmdline (None when unreadable) and the source
    read (live host or captured tree: `source.proc_root`)."""

    pid: int
    name: str
    uid: Optional[int]
    cgroup: Optional[bytes]
    cmdline: Optional[bytes]
    source: "Source"


@attrs.frozen
class Owner:
    """One file descriptor that holds a socket: process id, fd number, process name (comm) and uid.

    The process name is decoded with surrogateescape, so it round-trips through os.fsencode.
    `tid` is None when the fd is in the process's fd table (the one its threads share); a thread
    that made a table of its own (unshare(CLONE_FILES)) holds fds there, and its owners carry
    that thread's id as `tid` (pid stays the process's). `context` is the process's Context
    when asked for (snapshot(context=True)), else None.
    """

    pid: int
    fd: int
    name: str
    uid: Optional[int]
    tid: Optional[int] = None
    context: Optional[Context] = None

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

    `leaves_out` says, as data, which sockets its source does not list: (kind name, what) pairs,
    `what` one line naming them, e.g. ("tcp", "TCP sockets neither listening nor connected (in no
    /proc/net table)"). When this backend answered a kind and a held socket of it went unreported
    (and no backend deferred it saying what it is), the unresolved reason (and SocketNotFound) says
    "<name> does not list <what>" rather than only guessing the socket closed. A malformed
    declaration makes the plugin broken, with the reason.
    """

    name: str
    priority: int
    kinds: Tuple[SocketKind, ...]
    description: str = ""
    lookup_only: bool = False
    leaves_out: Tuple[Tuple[str, str], ...] = ()


@attrs.frozen
class Collected:
    """A backend's answer for one kind: its records (each a SocketRecord, or the same as a plain
    tuple, a row: see `Row`; rows cost a tenth of a record to build), lines it skipped with the reason, how
    many times it read the table again because the kernel said it changed mid-read
    (NLM_F_DUMP_INTR), and the inodes it `deferred`: (inode, reason) for sockets of this kind it
    holds but cannot answer completely (a connecting socket has no peer address yet, one in no
    kernel table has nothing to list). The next backend is asked for those; the reason, which says
    what the socket is, stays the unresolved reason if none reports it. `settled` holds the same
    pairs for held sockets that no table lists at all (an unbound UDP socket): no other backend
    is asked for them (a dump of a whole table would find nothing), they are unresolved with the
    reason at once. `raw` is the wire form the records were decoded from (`procsock_raw_dump`'s
    format), when the caller asked to keep it (a capture saves it), else None."""

    records: Tuple[Union[SocketRecord, tuple], ...]
    skipped: Tuple[str, ...] = ()
    retries: int = 0
    deferred: Tuple[Tuple[int, str], ...] = ()
    settled: Tuple[Tuple[int, str], ...] = ()
    raw: Optional[bytes] = None

    def rows(self, checked: Optional[Dict[int, tuple]] = None) -> Tuple[tuple, ...]:
        """The records as rows (`Row`), whichever form the backend gave; ValueError naming the
        first that is neither a SocketRecord nor a row. A row that is the very object of
        `checked` (by id: rows this checked before, held there) is not checked again."""
        rows = []
        for record in self.records:
            if checked is not None and checked.get(id(record)) is record:
                pass
            elif type(record) is not tuple:
                if not isinstance(record, SocketRecord):
                    raise ValueError("answered %s, neither a SocketRecord nor a row" % type(record).__name__)
                record = row_from_record(record)
                if not is_row(record):
                    raise ValueError("answered a SocketRecord with fields of wrong types: %s"
                                     % escape_text(repr(record)[:200]))
            elif not is_row(record):
                raise ValueError("answered a tuple that is not a row: %s" % escape_text(repr(record)[:200]))
            rows.append(record)
        return tuple(rows)

    def socket_records(self) -> Tuple[SocketRecord, ...]:
        """The records as SocketRecords, whichever form the backend gave."""
        return tuple([record_from_row(r) if type(r) is tuple else r for r in self.records])


@attrs.frozen
class Destroyed:
    """What a destroy listener read (``procsock_destroy_listener``): a row (`Row`) per socket the
    kernel said it destroyed (state CLOSE, inode 0 once released: its cookie says which socket),
    `lost` saying what may have been missed (messages dropped by the kernel: ENOBUFS), and
    `skipped` saying what was not believed or not decoded (datagrams not from the kernel)."""

    records: Tuple[tuple, ...] = ()
    lost: Tuple[str, ...] = ()
    skipped: Tuple[str, ...] = ()


# --- What a snapshot answers: the query, the notes, the sockets no backend reported -------------


def _one_or_set(value) -> Optional[FrozenSet[int]]:
    return None if value is None else frozenset((value,) if isinstance(value, int) else value)


@attrs.frozen
class Query:
    """Which sockets to list. Each filter is None (no restriction) or a set of accepted values
    (`pid` and `port` also take one number); `details` asks backends for
    ``SocketRecord.extended`` (tcp_info, memory, ...); `context` asks for each owner's Context,
    and the context filters (`units`, `containers`, `pods`, `cgroups`, `users`) keep a socket one
    of whose owners matches every one given (they imply context). Values are not checked here:
    make_query checks what users give."""

    kinds: Optional[FrozenSet[str]] = None
    families: Optional[FrozenSet[Family]] = None
    protocols: Optional[FrozenSet[str]] = None
    states: Optional[FrozenSet[State]] = None
    pid: Optional[FrozenSet[int]] = attrs.field(default=None, converter=_one_or_set)
    port: Optional[FrozenSet[int]] = attrs.field(default=None, converter=_one_or_set)
    netns: Optional[FrozenSet[int]] = None
    details: bool = False
    context: bool = False
    units: Optional[FrozenSet[str]] = None
    containers: Optional[FrozenSet[str]] = None
    pods: Optional[FrozenSet[str]] = None
    cgroups: Optional[FrozenSet[str]] = None
    users: Optional[FrozenSet[str]] = None
    filter: Optional[Any] = None  # a procsock.filter.Filter: ss's filter expression, on rows and owners

    @property
    def filters_context(self) -> bool:
        """Whether a filter selects sockets by their owners' context (--unit, --container, ...)."""
        return not (self.units is None and self.containers is None and self.pods is None
                    and self.cgroups is None and self.users is None)

    @property
    def wants_context(self) -> bool:
        """Whether owners' context must be computed: asked for, or a context filter needs it."""
        return self.context or self.filters_context

    def wants_owners(self, owners: Sequence[tuple], contexts: "Contexts") -> bool:
        """Whether one of these owner rows (with their processes' `contexts`) meets every context filter."""
        return any(self._owner_matches(owner, contexts.get(owner[OWNER_PID]) or Context()) for owner in owners)

    def _owner_matches(self, owner: tuple, context: Context) -> bool:
        if self.units is not None and not any(name in self.units for unit in unit_and_manager(context.unit)
                                              for name in (unit, unit.rsplit(".", 1)[0])):
            return False
        if self.containers is not None and not any(
                context.container_id is not None and context.container_id.startswith(c) for c in self.containers):
            return False
        if self.pods is not None and not {context.pod_uid, context.pod_name,
                                          "%s/%s" % (context.pod_namespace, context.pod_name)} & self.pods:
            return False
        if self.cgroups is not None and not any(
                path is not None and (path == prefix or path.startswith(prefix.rstrip("/") + "/"))
                for path in (context.cgroup, context.cgroup_v1) for prefix in self.cgroups):
            return False
        if self.users is not None and str(owner[OWNER_UID]) not in self.users and (
                context.user is None or context.user.isdigit() or context.user not in self.users):
            return False  # a user name of digits only (a hostile passwd line) never stands for another uid
        return True

    def wants_kind(self, kind: SocketKind) -> bool:
        return (
            (self.kinds is None or kind.name in self.kinds)
            and (self.families is None or kind.family in self.families)
            and (self.protocols is None or kind.protocol in self.protocols)
        )

    @property
    def filters_records(self) -> bool:
        return self.states is not None or self.port is not None or self.netns is not None or self.filter is not None

    def wants(self, record: SocketRecord, owners: Sequence[tuple] = (), contexts: Optional["Contexts"] = None) -> bool:
        return self.wants_row(row_from_record(record), owners, contexts)

    def wants_row(self, row: tuple, owners: Sequence[tuple] = (), contexts: Optional["Contexts"] = None) -> bool:
        """Whether the query keeps the socket of this row (see `Row`), held by `owners` (owner rows)
        whose processes have `contexts` (pid → Context, when computed)."""
        if self.filter is not None and not self.filter.wants(row, owners, contexts):
            return False
        if self.netns is not None and row[Row.NETNS] not in self.netns:
            return False
        if self.states is not None and row[Row.STATE] not in self.states:
            return False
        if self.port is not None:
            ports = self.port
            family = row[Row.KIND].family
            local, remote = endpoint_port(family, row[Row.LOCAL]), endpoint_port(family, row[Row.REMOTE])
            if local not in ports and remote not in ports:
                return False
        return True

    @property
    def selects_all(self) -> bool:
        """True when no filter drops sockets by what they are (only then is "unresolved" meaningful)."""
        narrowed = self.kinds is not None or self.families is not None or self.protocols is not None
        return not narrowed and not self.filters_records and not self.filters_context


class NoteCode(str, enum.Enum):
    """What a note is about, for code that acts on notes (the CLI's exit status, tests).

    A kind's table read by no backend (``UNREADABLE_TABLE``), a backend that failed while a later one
    answered (``FALLBACK``), input entries a backend skipped (``SKIPPED_ENTRIES``), a plugin that
    could not load (``BROKEN_PLUGIN``), processes or fds the walk could not read
    (``UNREADABLE_PROCESSES``, ``HIDDEN_PROCESSES``, ``DENIED_FDS``, ``MALFORMED_FDS``), sockets a
    namespace reported that another one's processes hold (``CLAIMED_ELSEWHERE``) or that several
    reported (``CONTESTED``), namespaces asked for that a capture does not show (``NETNS_MISSING``), and a
    context plugin that failed or answered what it may not (``CONTEXT_FAILED``).
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
    CONTEXT_FAILED = "context-failed"


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


def _as_sockets(found) -> Sequence[Socket]:
    return found if isinstance(found, Sockets) else tuple(found)


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

    sockets: Sequence[Socket] = attrs.field(converter=_as_sockets)
    answered_by: Mapping[str, str] = attrs.field(converter=_frozen)
    notes: Tuple[Note, ...] = ()
    skipped: Tuple[str, ...] = ()
    unreadable_processes: Tuple[int, ...] = ()
    unresolved: Mapping[int, Unresolved] = attrs.field(factory=FrozenDict, converter=_frozen)
    netns_names: Mapping[int, str] = attrs.field(factory=FrozenDict, converter=_frozen)
    retries: int = 0


def _maker(cls, replaced: Tuple[int, ...] = ()):
    """A function building an instance of the frozen, slotted attrs class `cls` from a tuple of
    its field values in field order, without running __init__ (3x faster: a frozen class's
    __init__ sets each field through object.__setattr__). The values at the positions
    `replaced` are given as further arguments instead, in order. For classes whose fields have no
    converter, validator or default factory, so that __init__ would do nothing more."""
    fields = attrs.fields(cls)
    if any(f.converter is not None or f.validator is not None or isinstance(f.default, attrs.Factory)
           for f in fields) or hasattr(cls, "__attrs_post_init__"):
        raise TypeError("%s runs code in __init__: build it by calling it" % cls.__name__)
    # one call of each slot's member descriptor, unrolled (as attrs writes its own __init__)
    names = {"cls": cls, "new": object.__new__}
    names.update(("set_%d" % i, getattr(cls, f.name).__set__) for i, f in enumerate(fields))
    lines = ["def make(values%s):" % "".join(", value_%d" % i for i in replaced), "    made = new(cls)"]
    lines += ["    set_%d(made, %s)" % (i, "value_%d" % i if i in replaced else "values[%d]" % i)
              for i in range(len(fields))]
    exec("\n".join(lines + ["    return made"]), names)
    return names["make"]


# --- Rows: records and owners as plain tuples, for the paths where no caller sees objects ---------


class Row:
    """Positions in a socket row: a SocketRecord's fields as a plain tuple, in field order.

    Backends may answer with rows (the built-ins do), and the resolver, the join and the writers
    work on rows: a tuple costs a tenth of a record. Endpoints are in compact form: the fields of
    an InetAddress, UnixAddress, PacketAddress or NetlinkAddress as a tuple ((packed, port),
    (name,), ...); an endpoint of another class (a plugin's family) is the object itself. A row
    and the record built from it cannot disagree: `record_from_row` and `row_from_record` are
    the one definition of the form.
    """

    (KIND, INODE, TYPE, PROTOCOL, STATE, LOCAL, REMOTE, RX_QUEUE, TX_QUEUE, UID, BACKEND, PEER_INODE, NETNS,
     INTERFACE, COOKIE, EXTENDED) = range(16)


ROW_FIELDS = tuple(field.name for field in attrs.fields(SocketRecord))
ROW_SIZE = len(ROW_FIELDS)
_ENDPOINT_CLASSES = {
    Family.INET: InetAddress, Family.INET6: InetAddress, Family.UNIX: UnixAddress,
    Family.PACKET: PacketAddress, Family.NETLINK: NetlinkAddress,
}
_ENDPOINT_MAKERS = {family: _maker(cls) for family, cls in _ENDPOINT_CLASSES.items()}
_make_full_owner, _make_socket = _maker(Owner), _maker(Socket)


def _make_owner(row: tuple, context: Optional[Context]) -> Owner:
    """The Owner of an owner row, with its process's Context (None when not computed)."""
    return _make_full_owner(row + (context,))


def compact_endpoint(family: Family, endpoint):
    """The row form of an endpoint: its fields as a tuple when it is of the class procsock has for
    `family`, else the object itself (a plugin's own endpoint class, None)."""
    if type(endpoint) is _ENDPOINT_CLASSES.get(family):
        return attrs.astuple(endpoint, recurse=False)
    return endpoint


def endpoint_of(family: Family, value):
    """The endpoint object of a row's compact endpoint (None stays None)."""
    make = _ENDPOINT_MAKERS.get(family)
    return make(value) if make is not None and type(value) is tuple else value


def endpoint_text(family: Family, value, _classes=_ENDPOINT_CLASSES) -> str:
    """A row's endpoint as people read it (control-free, like str() of the endpoint object)."""
    cls = _classes.get(family)
    if cls is not None and type(value) is tuple:
        return cls.text(*value)
    try:  # a plugin's own endpoint class: its text, escaped
        return escape_text(str(value))
    except Exception:
        return "<%s>" % escape_text(type(value).__name__)


def endpoint_dict(family: Family, value) -> Optional[dict]:
    """A row's endpoint as JSON fields (None stays None)."""
    if value is None:
        return None
    cls = _ENDPOINT_CLASSES.get(family)
    if cls is not None and type(value) is tuple:
        return cls.fields_dict(*value)
    try:  # a plugin's own endpoint class: its fields, or at least its text
        fields = value.as_dict()
    except Exception:
        fields = None
    return fields if isinstance(fields, dict) else {"text": endpoint_text(family, value)}


def endpoint_port(family: Family, value) -> Optional[int]:
    """The port of a row's endpoint, where it has one."""
    if type(value) is tuple:
        return value[1] if _ENDPOINT_CLASSES.get(family) is InetAddress else None
    return getattr(value, "port", None)


def row_from_record(record: SocketRecord) -> tuple:
    """The row of a record (what a backend that answers with records gives the resolver)."""
    values = attrs.astuple(record, recurse=False)
    family = record.kind.family
    endpoints = (compact_endpoint(family, record.local), compact_endpoint(family, record.remote))
    return values[:Row.LOCAL] + endpoints + values[Row.RX_QUEUE:]


def record_from_row(row: tuple) -> SocketRecord:
    """The SocketRecord of a row."""
    family = row[Row.KIND].family
    return _make_record(row, endpoint_of(family, row[Row.LOCAL]), endpoint_of(family, row[Row.REMOTE]))


_make_record = _maker(SocketRecord, replaced=(Row.LOCAL, Row.REMOTE))


def is_row(value) -> bool:
    """Whether `value` is a row the writers can trust: its shape, a SocketKind, SockType and
    State, ints (or None) for every number, and each endpoint in the compact form of its family
    (or an object that is no tuple: a plugin's own endpoint class). A plugin's answer is checked
    here before anything uses it: a value of another type could crash a writer or carry control
    bytes to a terminal."""
    if type(value) is not tuple or len(value) != ROW_SIZE:
        return False
    (kind, inode, sock_type, protocol, state, local, remote, rx_queue, tx_queue, uid, _backend, peer_inode, netns,
     interface, cookie, extended) = value  # unpacked once: this runs for every row a backend gives
    if not (isinstance(kind, SocketKind) and type(inode) is int and isinstance(sock_type, SockType)
            and isinstance(state, State)):
        return False
    for number in (protocol, rx_queue, tx_queue, uid, peer_inode, netns, interface, cookie):
        if number is not None and type(number) is not int:
            return False
    shape = _COMPACT_SHAPES.get(kind.family)
    for endpoint in (local, remote):
        if type(endpoint) is tuple and (shape is None or tuple(map(type, endpoint)) != shape):
            return False
    return extended is None or isinstance(extended, __getattr__("Extended"))


# The types of each family's compact endpoint: its class's fields.
_COMPACT_SHAPES = {
    Family.INET: (bytes, int), Family.INET6: (bytes, int), Family.UNIX: (bytes,),
    Family.PACKET: (int, int), Family.NETLINK: (int, int, int),
}


# An owner row: an Owner's fields but its context (pid, fd, name, uid, tid) as a plain tuple, as the fd
# walk makes them. The context is one per process: `Contexts` maps each pid to it, when it was asked for.
OWNER_PID, OWNER_FD, OWNER_NAME, OWNER_UID, OWNER_TID = range(5)
Contexts = Mapping[int, Context]
NO_CONTEXTS: Contexts = FrozenDict()


def owner_row(owner: Owner) -> tuple:
    """The row form of an Owner (its context is kept by pid: see `Sockets.contexts`)."""
    return (owner.pid, owner.fd, owner.name, owner.uid, owner.tid)


def owner_contexts(owners: Sequence[tuple], contexts: Optional[Contexts]) -> List[Context]:
    """The Contexts of these owner rows' processes that are known, each process's once, in order."""
    if not contexts:
        return []
    found = {}
    for owner in owners:
        context = contexts.get(owner[OWNER_PID])
        if context is not None:
            found[owner[OWNER_PID]] = context
    return list(found.values())


@attrs.frozen
class SocketIdentity:
    """Which socket a record describes, across moments, backends and saved output.

    The namespace inode, kind name and sockfs inode name a socket while it lives; an inode is
    reused once it is closed, the kernel's cookie never is (within a boot), so the cookie is part
    of the identity where the backend knows it. An inode 0 socket (TIME_WAIT, embryonic) has no
    inode to go by: without a cookie its endpoints stand in (`endpoints`, else None). Two
    identities are of the same socket when `same_socket` says so: equal `key`, and cookies that
    do not disagree (an unknown cookie agrees with any).
    """

    netns: Optional[int]
    kind: str
    inode: int
    cookie: Optional[int] = None
    endpoints: Optional[str] = None

    @property
    def key(self) -> tuple:
        """What must be equal for two identities to be of one socket, the cookie aside."""
        return (self.netns, self.kind, self.inode, self.endpoints)

    def same_socket(self, other: "SocketIdentity") -> bool:
        return self.key == other.key and (self.cookie is None or other.cookie is None or self.cookie == other.cookie)

    @property
    def text(self) -> str:
        """`NETNS/KIND/INODE[@COOKIE-HEX][/LOCAL-REMOTE]` ("-" for an unknown namespace): the
        identity as a string, for JSON and logs."""
        return identity_text(self.netns, self.kind, self.inode, self.cookie, self.endpoints)


def identity_text(netns: Optional[int], kind: str, inode: int, cookie: Optional[int] = None,
                  endpoints: Optional[str] = None) -> str:
    """`SocketIdentity(...).text` without the object (the JSON writers need one per socket)."""
    text = "%s/%s/%d" % ("-" if netns is None else netns, kind, inode)
    if cookie is not None:
        text += "@%x" % cookie
    if endpoints is not None:
        text += "/" + endpoints
    return text


def _identity_endpoints(row: tuple) -> Optional[str]:
    """The endpoints that stand in an identity for a socket with neither inode nor cookie."""
    if row[Row.INODE] or row[Row.COOKIE] is not None:
        return None
    family, remote = row[Row.KIND].family, row[Row.REMOTE]
    return endpoint_text(family, row[Row.LOCAL]) + "-" + ("*" if remote is None else endpoint_text(family, remote))


def identity_of_row(row: tuple) -> SocketIdentity:
    """The identity of the socket a row describes."""
    return SocketIdentity(row[Row.NETNS], row[Row.KIND].name, row[Row.INODE], row[Row.COOKIE], _identity_endpoints(row))


def identity_text_of_row(row: tuple) -> str:
    """`identity_of_row(row).text`, without the object."""
    return identity_text(row[Row.NETNS], row[Row.KIND].name, row[Row.INODE], row[Row.COOKIE], _identity_endpoints(row))


def cgroup_moved(row: tuple, owners: Sequence[tuple], contexts: Optional[Contexts]) -> Optional[bool]:
    """Whether the cgroup the kernel says a socket was created in (sock_diag's cgroup id, in its
    details) is none of its owners' cgroups now: passed over a unix socket or inherited, then held
    only by a process of another cgroup (or every holder moved). None when either side is unknown
    (no details, no context, a kind sock_diag gives no cgroup for)."""
    extended = row[Row.EXTENDED]
    created = None if extended is None else extended.cgroup_id
    if not created:
        return None
    held = {c.cgroup_id for c in owner_contexts(owners, contexts) if c.cgroup_id is not None}
    return None if not held else created not in held


def owner_task(owner: tuple) -> int:
    """The id under /proc whose fd table holds the fd of an owner row (Owner.task)."""
    tid = owner[OWNER_TID]
    return owner[OWNER_PID] if tid is None else tid


class Sockets(collections.abc.Sequence):
    """`Snapshot.sockets`: the Socket objects of the joined rows, built all at once on first access.

    Writers read `entries` instead: (row, owner rows, peer owner rows) per socket, in order, and
    `contexts`: pid → its process's Context, when computed (one per process, not per owner).
    Compares, hashes and pickles as the tuple of its Sockets.
    """

    __slots__ = ("entries", "contexts", "_built")

    def __init__(self, entries: Sequence[Tuple[tuple, Tuple[tuple, ...], Tuple[tuple, ...]]],
                 contexts: Contexts = NO_CONTEXTS) -> None:
        self.entries = tuple(entries)
        self.contexts = contexts
        self._built: Optional[Tuple[Socket, ...]] = None

    @classmethod
    def of(cls, sockets: Iterable[Socket]) -> "Sockets":
        """`sockets` as Sockets: a snapshot's as they are, other Socket objects as rows, their
        owners' contexts by pid (a process's first one, should objects made by hand disagree)."""
        if isinstance(sockets, Sockets):
            return sockets
        found, contexts = [], {}
        for sock in sockets:
            for owner in sock.owners + sock.peer_owners:
                if owner.context is not None:
                    contexts.setdefault(owner.pid, owner.context)
            row = row_from_record(sock.record)
            if not is_row(row):  # attrs does not check types: the writers trust a row's (NUL in a cell, ...)
                raise ValueError("a Socket with fields of wrong types: %s" % escape_text(repr(sock.record)[:200]))
            found.append((row, tuple(map(owner_row, sock.owners)), tuple(map(owner_row, sock.peer_owners))))
        return cls(found, FrozenDict(contexts))

    def _sockets(self) -> Tuple[Socket, ...]:
        if self._built is None:
            owners: Dict[tuple, Owner] = {}  # one Owner per holder, shared by its socket and the peer's
            contexts = self.contexts

            def made(held):
                if not held:
                    return ()
                return tuple([owners.get(o) or owners.setdefault(o, _make_owner(o, contexts.get(o[0]))) for o in held])

            self._built = tuple([
                _make_socket((record_from_row(row), made(held), made(peer_held)))
                for row, held, peer_held in self.entries
            ])
        return self._built

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index):
        return self._sockets()[index]

    def __iter__(self):
        return iter(self._sockets())

    def __eq__(self, other) -> bool:
        if isinstance(other, Sockets):
            return (self.entries == other.entries and self.contexts == other.contexts
                    or self._sockets() == other._sockets())
        return isinstance(other, tuple) and self._sockets() == other

    def __add__(self, other):
        return self._sockets() + other

    def __radd__(self, other):
        return other + self._sockets()

    def __hash__(self) -> int:
        return hash(self._sockets())

    def __reduce__(self):
        return (tuple, (self._sockets(),))

    def __repr__(self) -> str:
        return repr(self._sockets())


class Holders(collections.abc.Mapping):
    """Socket inode → the Owners holding it, read from owner rows (with their processes' `contexts`,
    when computed); each tuple is built on first access (backends that look sockets up through
    their fds ask for a few of them)."""

    __slots__ = ("rows", "contexts", "_built")

    def __init__(self, rows: Mapping[int, Tuple[tuple, ...]], contexts: Contexts = NO_CONTEXTS) -> None:
        self.rows = rows
        self.contexts = contexts
        self._built: Dict[int, Tuple[Owner, ...]] = {}

    def __getitem__(self, inode: int) -> Tuple[Owner, ...]:
        built = self._built.get(inode)
        if built is None:
            get = self.contexts.get
            built = self._built[inode] = tuple([_make_owner(row, get(row[0])) for row in self.rows[inode]])
        return built

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, inode) -> bool:
        return inode in self.rows
