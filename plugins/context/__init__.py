"""The built-in owner context: user name, command line, cgroup, systemd unit, container, pod.

A plugin like any other (entry point `context`, disable it with ``--disable-plugin context``): it
implements only ``procsock_owner_context``. Everything comes from what the fd walk read of the
process (its cgroup and cmdline files) and, on the live host, the cgroup2 mount (the cgroup id is
the inode of the process's v2 directory) and the user database; a captured tree's user names come
from the `etc/passwd` beside it (PROC_ROOT/../etc/passwd) when there is one. Parsing is pure, in
`parse`.
"""

import functools
import os
import pwd
from typing import Dict, Optional

from procsock.plugin import InputError, Process, Source, hookimpl, read_tree

from procsock_plugins.context import parse

NAME = "context"


@hookimpl
def procsock_owner_context(process: Process, source: Source) -> Optional[dict]:
    answer: Dict[str, object] = {}
    if process.uid is not None:
        answer["user"] = _user_name(process.uid, source)
    if process.cmdline is not None:
        answer["cmdline"] = parse.command_line(process.cmdline)
    if process.cgroup is None:
        return answer
    answer.update(_cgroup_fields(process.cgroup))
    if answer["cgroup"] is not None and _live(source):
        answer["cgroup_id"] = _cgroup_id(answer["cgroup"])
    return answer


@functools.lru_cache(maxsize=1024)
def _cgroup_fields(cgroup: bytes) -> Dict[str, Optional[str]]:
    """What a cgroup file's paths say (pure, so remembered: the processes of one service, one
    container, share one text). The v2 path's answer stands; the v1 name=systemd path fills in."""
    v2, v1 = parse.cgroup_paths(cgroup)
    answer = {"cgroup": v2, "cgroup_v1": v1}
    for path in (v2, v1):
        if path is None:
            continue
        for fields, parser in ((("unit", "slice"), parse.systemd_unit),
                               (("container_runtime", "container_id"), parse.container),
                               (("pod_uid", "pod_qos"), parse.kubernetes_pod)):
            if all(answer.get(field) is None for field in fields):
                values = parser(path)
                if any(value is not None for value in values):
                    answer.update(zip(fields, values))
    return answer


def _live(source: Source) -> bool:
    return source.kernel and source.proc_root is not None


def _user_name(uid: int, source: Source) -> Optional[str]:
    if _live(source):
        return _live_user_name(uid)
    return _captured_user_names(source).get(uid)


@functools.lru_cache(maxsize=4096)
def _live_user_name(uid: int) -> Optional[str]:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


@functools.lru_cache(maxsize=8)
def _captured_user_names(source: Source) -> Dict[int, str]:
    """The user names of the etc/passwd beside a captured tree, read as every file of a tree is
    (no link followed out of it, no FIFO, bounded); none when absent or unreadable."""
    if source.proc_root is None:
        return {}
    beside = os.path.dirname(os.path.abspath(source.proc_root))
    try:
        return parse.user_names(read_tree(beside, ("etc", "passwd"), True, source.max_input_bytes))
    except (InputError, OSError):
        return {}


def _cgroup_id(path: str) -> Optional[int]:
    """The inode of the v2 directory `path` under the cgroup2 mount (what sock_diag reports)."""
    mount = _cgroup2_mount()
    if mount is None or "/.." in path + "/":
        return None
    try:
        return os.stat(mount + path.rstrip("/"), follow_symlinks=False).st_ino
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def _cgroup2_mount() -> Optional[str]:
    """Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        mount, _, rest = line.partition(b" - ")
        fields = mount.split()
        if rest.split()[:1] == [b"cgroup2"] and len(fields) > 4:
            where = fields[4]
            for code in (b"\\040", b"\\011", b"\\012", b"\\134"):  # mountinfo's octal escapes
                where = where.replace(code, bytes((int(code[1:], 8),)))
            return os.fsdecode(where)
    return None
