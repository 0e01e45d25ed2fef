"""The backend hookspec: what a procsock backend plugin is.

A backend is one plugin object (usually a module) registered under its entry-point name in the
`procsock` group. It implements these hooks with `@procsock.hookimpl`. The resolver calls each
backend's hooks on that backend alone, so a backend never sees another's answers. Hooks are called
once per kind (family/protocol) and per snapshot, never per socket. A plugin that is not a
backend may implement ``procsock_owner_context`` alone (called once per process holding sockets).
"""

from typing import FrozenSet, Mapping, Optional, Sequence, Union

import pluggy

from procsock.model import BackendInfo, Collected, Netns, Owner, Process, SocketKind, SocketRecord, Source

hookspec = pluggy.HookspecMarker("procsock")
hookimpl = pluggy.HookimplMarker("procsock")


@hookspec(firstresult=True)
def procsock_backend_info() -> BackendInfo:
    """Return a ``BackendInfo`` describing this backend: its name, priority and the socket kinds
    it serves (``SocketKind`` values; a plugin may define new ones), whether it is
    ``lookup_only``, and what its source ``leaves_out``: ``(kind name, what)`` pairs, e.g.
    ``("tcp", "TCP sockets in state CLOSE: ... (in no /proc/net table)")``. When this backend
    answered a kind and a held socket of that kind went unreported (and no backend said what it is
    from its fd, ``Collected.deferred``), the unresolved reason and ``SocketNotFound`` say "<name>
    does not list <what>" instead of only guessing it closed; declare only what is true of every
    such socket (test each with a real one).

    Called once, when plugins are loaded (at the first snapshot, not at ``import procsock``). Must
    be cheap and must not touch the system. An exception here, a value that is not a
    BackendInfo, a malformed ``leaves_out`` (not pairs of strings, a kind it does not serve, a text
    that is not one printable line of at most 200 characters) or a kind whose name another backend
    of higher priority (or loaded first) gives to a different family or protocol marks the plugin
    as broken: ``--list-backends`` shows it with the reason, and it is never used.
    """


@hookspec(firstresult=True)
def procsock_unavailable(source: Source) -> Optional[str]:
    """Say why this backend cannot read `source` here, or return None if it can.

    Called once per snapshot before any collection, e.g. a kernel interface returns a reason for a
    captured /proc tree (``source.kernel`` is false) and a file reader for a saved sock_diag file.
    Should be cheap (no dump); failures found later are raised from ``procsock_collect``. An
    exception here counts as the reason the backend is unavailable.
    """


@hookspec(firstresult=True)
def procsock_collect(
    kind: SocketKind,
    source: Source,
    inodes: Optional[FrozenSet[int]],
    details: bool,
    netns: Netns,
    holders: Mapping[int, Sequence[Owner]],
    raw: bool,
) -> Collected:
    """Return the records of every socket of `kind` that `source` shows.

    Called once per kind per snapshot, only for kinds listed in ``procsock_backend_info`` and only
    when ``procsock_unavailable`` returned None. When `inodes` is not None the caller needs only
    those sockets: a backend may use it to do less work (an exact lookup), and may still return
    others, which the resolver drops. Records carry this backend's name in ``backend``. When
    `details` is true the caller wants ``SocketRecord.extended`` filled where the backend can
    (tcp_info, memory, ...); when false, a backend should not spend time on it. Each record is a
    ``SocketRecord`` or a row: the same fields as a plain tuple in field order (``procsock.plugin.Row``;
    an endpoint of procsock's class for the family as the tuple of its fields, ``row_from_record``
    shows the form). Rows cost a tenth of a record to build: the built-in backends answer with them,
    the resolver, the join and the writers work on them, and ``Snapshot.sockets`` builds records only
    when read. A backend of a few sockets gains nothing from rows; one listing thousands does. A tuple
    of any other shape makes the whole answer a plugin error.

    `netns` names the network namespace to read: the resolver calls once per kind for its own
    namespace (``netns.pid`` None) and once per kind for each other namespace whose processes hold
    sockets (through ``netns.pid``, a process inside it). Records carry ``netns.inode`` in
    ``netns``. A backend that cannot enter that namespace raises BackendUnavailable. A saved source
    (``source.diag_file``) is read once per kind with ``Netns()``: its records carry the namespace
    the file names for them (None when it names none).

    `holders` maps socket inodes to the fds that hold them (from the fd walk), for backends that
    read a socket through its holder (pidfd: the fd is /proc/TASK/fd/FD with ``owner.task``, a thread's
    id when the fd is in that thread's own table). A backend that only answers some shapes of request
    raises ``procsock.errors.NotApplicable`` for the others: the next backend answers, silently.
    A backend that can answer a held socket only incompletely (a connecting TCP socket has no peer
    address to read yet; a socket in no kernel table has no row to give) leaves its record out and
    lists ``(inode, reason)`` in ``Collected.deferred``, the reason saying what the socket is: the
    next backend serving `kind` is asked for those inodes, and if none reports one, the socket is
    unresolved with that reason. A socket no table lists at all (an unbound UDP socket) goes in
    ``Collected.settled`` the same way instead: no other backend is asked for it (a whole-table dump
    would find nothing at a great cost), and it is unresolved with the reason at once.

    `raw` true means the caller keeps the answer's wire form too, to save it (``procsock capture``
    saves the replies its snapshot was read from, asking the source once): a backend that has one
    (``procsock_raw_dump``) reads its source with details whatever `details` says, decodes them only
    as `details` says, and returns in ``Collected.raw`` what ``procsock_raw_dump`` would have. A
    backend without a wire form ignores `raw`, and any may for a lookup (`inodes` given): the caller
    then asks ``procsock_raw_dump``. A ``raw`` returned when `raw` is false is dropped.

    Raise ``procsock.BackendUnavailable`` (or any ``ProcsockError``) when the kind cannot be read
    (refused, not built into this kernel, file missing): the resolver then asks the next backend for
    this kind and reports why. Any other exception is treated the same way and reported as a bug
    of the plugin. Lines or messages the backend could not decode go in ``Collected.skipped``.
    """


@hookspec(firstresult=True)
def procsock_raw_dump(kind: SocketKind, source: Source, netns: Netns) -> Optional[bytes]:
    """Return this backend's raw wire answer for `kind` in `netns`, for saving and replaying later.

    Only backends with a wire format implement it (the netlink backend returns sock_diag replies
    in the format `ss -D` writes: netlink messages back to back, ended by NLMSG_DONE, each naming
    its kind in nlmsg_seq and the namespace's inode in nlmsg_pid). Called by
    ``procsock --save-diag FILE`` once per kind and per network namespace: ours first
    (``netns.pid`` None), then each other namespace whose processes hold sockets, reached as for
    ``procsock_collect``; the bytes are written in that order. ``procsock capture`` calls it only
    for an answer that kept no wire form (``procsock_collect``'s `raw`). None means "no raw form". An
    exception is handled as for ``procsock_collect``: the next backend with a raw form is asked,
    and the reason is noted.
    """


@hookspec(firstresult=True)
def procsock_explain_difference(
    field: Optional[str], mine: Optional[SocketRecord], other: Optional[SocketRecord]
) -> Optional[str]:
    """Return why this backend's view of a socket differs from another backend's, when the cause
    is a known trait of what this backend reads (one line, e.g. "/proc/net/unix prints the NUL
    bytes of an abstract name as '@'"); None when it knows no such cause.

    Called by ``compare_backends`` (``procsock compare``) after both backends were read, once per
    difference on each of the two backends, until one returns a reason; then the core's generic
    causes (queues that move between the two reads, a socket a backend deferred) apply. `mine` is
    this backend's record, `other` the other backend's. For a field both report differently,
    `field` names it (a ``SocketRecord`` attribute: ``local``, ``tx_queue``...). For a socket only
    one of the two listed, `field` is None and the backend that did not list it gets `mine` None.
    A reason explains the difference (``Comparison.agree`` stays true), so give one only for a
    cause that holds for every such socket, never a guess. Must be cheap and must not touch the
    system. An exception, or a value that is not a non-empty str, counts as no reason: the
    difference stays unexplained.
    """


@hookspec
def procsock_owner_context(process: Process, source: Source) -> Optional[Mapping[str, Union[str, int, None]]]:
    """Return what this plugin knows of a process holding sockets, as a mapping of field names
    to values (str, int or None), or None for nothing.

    Called once per process holding sockets and per snapshot, only when context was asked for
    (``snapshot(context=True)``, ``-C``, a context filter, ``--summary``), on every plugin that
    implements it, in load order; the built-in ``context`` plugin (cgroup, systemd unit,
    container, pod, user name, command line) is one of them. `process` is a ``Process``: pid,
    name, uid and the raw texts of its ``cgroup`` and ``cmdline`` files as the fd walk read them
    (None when unreadable; a process may have exited since). Keys named like a ``Context`` field
    (``unit``, ``pod_name``, ...) fill that field when no earlier plugin did (``cgroup_id`` takes
    an int, the others str); any other key (a CMDB name, a team) goes to ``Context.extra``. Must
    not be slow: it runs for every process holding sockets.

    An exception, an answer that is not such a mapping, a key that is not a name of at most 64
    characters ([A-Za-z0-9_.-], starting with a letter) or a value of another type (bool is not
    an int here; a text longer than 4096 characters) drops that plugin's answer for the process
    and is reported once per plugin as a note (code ``context-failed``), never raised. Text is
    shown escaped: it need not be printable.
    """


@hookspec(firstresult=True)
def procsock_destroy_listener(source: Source, netns: Netns) -> Optional[object]:
    """Return a listener of the kernel's socket destroy notifications in `netns`, or None when
    this backend has none (a saved or captured source, a kernel interface without them).

    Called by ``procsock watch`` once per network namespace it watches: ours (``netns.pid``
    None), then each other namespace whose processes hold sockets, reached through ``netns.pid``
    as for ``procsock_collect``. The listener has ``fileno()`` (readable when notifications are
    waiting), ``read()`` returning a ``procsock.plugin.Destroyed`` with what is waiting now,
    without blocking, and ``close()``; the caller closes it when done. A read returns soon
    however fast notifications come (a bounded part of them; the caller reads again while
    the listener stays readable). Believe only the kernel:
    what any other process sends to the listener goes in ``Destroyed.skipped``, never in its
    records. Raise BackendUnavailable when the namespace cannot be entered or listened to: the
    next backend is asked, and the watch says it may miss those closes.
    """
