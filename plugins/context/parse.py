"""Pure parsers for owner context: a process's cgroup file, and what its cgroup path says by the
naming conventions of systemd, container runtimes and the kubelet; /etc/passwd for user names.

Every function takes text and returns values or None; none touches the system. An identifier is
reported only when a path component matches a convention exactly (a container id is 64 lowercase
hex digits, a pod UID a UUID or a static pod's 32 hex digits): a near miss gives None, never a
guess. Paths are text as the kernel wrote them (surrogateescape): a cgroup name may hold any byte
but "/" and a newline, so nothing here assumes it is printable; callers escape what they show.
"""

import re
from typing import Dict, Optional, Tuple

_HEX64 = "[0-9a-f]{64}"
_POD_UID = "[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}"
_CGROUP_LINE = re.compile(r"(\d+):([^:\n]*):(/[^\n]*)\Z")

# systemd: a unit name is at most 255 characters of [A-Za-z0-9:_.@\-] (escapes as \xNN), with a suffix
UNIT = re.compile(r"(?:[A-Za-z0-9:_.@-]|\\x[0-9a-f]{2}){1,247}\.(service|scope|slice|socket|mount|swap)\Z")

# container runtimes: (runtime, one path component's exact shape, or a parent component and the id's shape)
CONTAINER_SCOPES = (
    ("docker", re.compile(r"docker-(%s)\.scope\Z" % _HEX64)),
    ("containerd", re.compile(r"cri-containerd-(%s)\.scope\Z" % _HEX64)),
    ("cri-o", re.compile(r"crio-(%s)\.scope\Z" % _HEX64)),
    ("podman", re.compile(r"libpod-(%s)\.scope\Z" % _HEX64)),
    ("lxc", re.compile(r"lxc\.payload\.([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\Z")),
    ("systemd-nspawn", re.compile(r"machine-((?:[A-Za-z0-9_.:-]|\\x[0-9a-f]{2}){1,64})\.scope\Z")),
)
CONTAINER_DIRS = (  # cgroupfs drivers: PARENT/ID
    ("docker", "docker", re.compile(r"(%s)\Z" % _HEX64)),
    ("lxc", "lxc", re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\Z")),
)
_KUBE_ID = re.compile(r"(%s)\Z" % _HEX64)  # a container under a pod's cgroup (cgroupfs driver)

# Kubernetes: systemd driver kubepods[-QOS]-podUID.slice (UID with "_"), cgroupfs kubepods/[QOS/]podUID
KUBE_SLICE = re.compile(r"(?:[A-Za-z0-9_]+-)*kubepods(?:-(burstable|besteffort))?-pod(%s)\.slice\Z" % _POD_UID)
KUBE_DIR = re.compile(r"pod(%s)\Z" % _POD_UID)
_QOS_DIRS = ("burstable", "besteffort")


def cgroup_paths(text: bytes) -> Tuple[Optional[str], Optional[str]]:
    """The cgroup v2 path (the `0::` line) and the v1 `name=systemd` path of a PROC/PID/cgroup
    text; each None when absent, malformed or given twice (a forged line, a captured file edited)."""
    v2 = v1 = None
    seen_v2 = seen_v1 = 0
    for line in text.decode("utf-8", "surrogateescape").split("\n"):
        match = _CGROUP_LINE.match(line)
        if match is None:
            continue
        ident, controllers, path = match.groups()
        if ident == "0" and controllers == "":
            v2, seen_v2 = path, seen_v2 + 1
        elif "name=systemd" in controllers.split(","):
            v1, seen_v1 = path, seen_v1 + 1
    return (v2 if seen_v2 == 1 else None), (v1 if seen_v1 == 1 else None)


def _parts(path: str):
    return [part for part in path.split("/") if part]


def systemd_unit(path: str) -> Tuple[Optional[str], Optional[str]]:
    """(unit, slice) of a cgroup path by systemd's layout: the innermost unit (a .service or
    .scope) and the innermost slice holding it ("-.slice" at the root: init.scope); components
    below the unit (a service's own sub-cgroups) are the unit's. (None, None) when no component
    is a unit."""
    unit = slice_ = None
    current_slice = "-.slice"
    for part in _parts(path):
        match = UNIT.match(part)
        if match is None:
            if unit is None:  # above any unit, a non-unit directory (cgroupfs drivers): not systemd's
                current_slice = None
            continue
        if match.group(1) == "slice":
            current_slice = part
        else:
            unit, slice_ = part, current_slice
    return unit, slice_


def container(path: str) -> Tuple[Optional[str], Optional[str]]:
    """(runtime, container id or name) of the innermost container a cgroup path names: docker,
    containerd (CRI), CRI-O, podman scopes (systemd driver), docker and LXC cgroupfs directories,
    LXC/LXD payloads, systemd-nspawn machines, and a container directory under a Kubernetes pod
    (cgroupfs driver: runtime None). (None, None) when none matches exactly."""
    found: Tuple[Optional[str], Optional[str]] = (None, None)
    parts = _parts(path)
    for index, part in enumerate(parts):
        parent = parts[index - 1] if index else None
        for runtime, shape in CONTAINER_SCOPES:
            match = shape.match(part)
            if match is not None:
                found = (runtime, match.group(1))
                break
        else:
            for runtime, parent_name, shape in CONTAINER_DIRS:
                match = shape.match(part) if parent == parent_name else None
                if match is not None:
                    found = (runtime, match.group(1))
                    break
            else:
                if parent is not None and KUBE_DIR.match(parent) and _KUBE_ID.match(part):
                    found = (None, part)
    return found


def kubernetes_pod(path: str) -> Tuple[Optional[str], Optional[str]]:
    """(pod UID, QoS class) of a cgroup path under kubepods, by either kubelet cgroup driver:
    systemd `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podUID.slice` (UID with
    "_" for "-") or cgroupfs `kubepods/burstable/podUID`; a pod with no QoS level is "guaranteed".
    (None, None) elsewhere."""
    parts = _parts(path)
    for index, part in enumerate(parts):
        match = KUBE_SLICE.match(part)
        if match is not None and any(p == "kubepods.slice" or p.endswith("-kubepods.slice") for p in parts[:index]):
            return match.group(2).replace("_", "-"), match.group(1) or "guaranteed"
        match = KUBE_DIR.match(part)
        if match is not None and index and "_" not in match.group(1):
            qos = parts[index - 1]
            if qos in _QOS_DIRS and index > 1 and parts[index - 2] == "kubepods":
                return match.group(1), qos
            if qos == "kubepods":
                return match.group(1), "guaranteed"
    return None, None


def command_line(text: bytes) -> Optional[str]:
    """A PROC/PID/cmdline text as one string: its NUL-separated words joined by spaces (None when
    empty: a kernel thread, a zombie)."""
    words = text.rstrip(b"\0").split(b"\0")
    joined = b" ".join(words)
    return joined.decode("utf-8", "surrogateescape") if joined else None


def user_names(passwd: bytes) -> Dict[int, str]:
    """uid -> user name from an /etc/passwd text (the first name given to each uid); lines that
    are not `name:password:uid:...` are skipped."""
    names: Dict[int, str] = {}
    for line in passwd.split(b"\n"):
        fields = line.split(b":")
        if len(fields) < 4 or not fields[0] or not fields[2].isdigit() or len(fields[2]) > 10:
            continue
        names.setdefault(int(fields[2]), fields[0].decode("utf-8", "surrogateescape"))
    return names
