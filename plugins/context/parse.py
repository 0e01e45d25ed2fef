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

USER_MANAGER = re.compile(r"user@\d{1,10}\.service\Z")  # a user's systemd, which lays out its own units

# container runtimes: (runtime, the exact shape of a unit) under systemd
CONTAINER_SCOPES = (
    ("docker", re.compile(r"docker-(%s)\.scope\Z" % _HEX64)),
    ("containerd", re.compile(r"cri-containerd-(%s)\.scope\Z" % _HEX64)),
    ("cri-o", re.compile(r"crio-(%s)\.scope\Z" % _HEX64)),
    ("podman", re.compile(r"libpod-(%s)\.scope\Z" % _HEX64)),
    ("systemd-nspawn", re.compile(r"machine-((?:[A-Za-z0-9_.:-]|\\x[0-9a-f]{2}){1,64})\.scope\Z")),
)
LXC_PAYLOAD = re.compile(r"lxc\.payload\.([A-Za-z0-9][A-Za-z0-9_.-]{0,62})\Z")  # LXC 4+, at the root
CONTAINER_DIRS = (  # cgroupfs drivers: /PARENT/ID
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


def _first_unit(parts) -> Tuple[Optional[int], Optional[str]]:
    """(index of the outermost unit that is not a slice, the slice holding it: "-.slice" at the
    root) when `parts` is slices from the root down to that unit; (None, None) when a component
    that is not a unit name comes first (not systemd's layout) or no unit is there. What lies
    below that unit is the unit's own (a delegate names it): nothing there is read as systemd's."""
    slice_ = "-.slice"
    for index, part in enumerate(parts):
        match = UNIT.match(part)
        if match is None:
            return None, None
        if match.group(1) != "slice":
            return index, slice_
        slice_ = part
    return None, None


def systemd_unit(path: str) -> Tuple[Optional[str], Optional[str]]:
    """(unit, slice) of a cgroup path by systemd's layout: the outermost unit (a .service, .scope,
    ...) under slices from the root, and the slice holding it; components below it are the unit's
    (its sub-cgroups, a container's own tree). A unit of a user's manager (user@UID.service, which
    the user lays out) is given qualified, `user@1000.service/app.slice/x.scope`, so that no user
    can name a system unit; its slice is the system's (user-1000.slice). (None, None) elsewhere."""
    parts = _parts(path)
    index, slice_ = _first_unit(parts)
    if index is None:
        return None, None
    unit = parts[index]
    if USER_MANAGER.match(unit):
        inner, _ = _first_unit(parts[index + 1:])
        if inner is not None:
            unit = "/".join(parts[index:index + inner + 2])
    return unit, slice_


def container(path: str) -> Tuple[Optional[str], Optional[str]]:
    """(runtime, container id or name) of the container a cgroup path names, read from the root
    only (what lies below a container is its own, named by whoever runs in it): a docker,
    containerd (CRI), CRI-O or podman scope or a systemd-nspawn machine as the outermost unit
    (systemd driver); `/docker/ID`, `/lxc/NAME`, `/lxc.payload.NAME` (cgroupfs, LXC/LXD) and a
    container directory of a Kubernetes pod under `/kubepods` (cgroupfs driver: runtime None).
    (None, None) when none matches exactly."""
    parts = _parts(path)
    if len(parts) >= 2:
        for runtime, parent_name, shape in CONTAINER_DIRS:
            match = shape.match(parts[1]) if parts[0] == parent_name else None
            if match is not None:
                return runtime, match.group(1)
    if parts:
        match = LXC_PAYLOAD.match(parts[0])
        if match is not None:
            return "lxc", match.group(1)
    pod = _kube_dir_pod(parts)
    if pod is not None:
        return (None, parts[pod + 1]) if len(parts) > pod + 1 and _KUBE_ID.match(parts[pod + 1]) else (None, None)
    index, _ = _first_unit(parts)
    if index is not None:
        for runtime, shape in CONTAINER_SCOPES:
            match = shape.match(parts[index])
            if match is not None:
                return runtime, match.group(1)
    return None, None


def _kube_dir_pod(parts) -> Optional[int]:
    """The index of the pod directory of a cgroupfs-driver path `/kubepods/[QOS/]podUID`, else None."""
    if parts[:1] != ["kubepods"]:
        return None
    index = 2 if len(parts) > 1 and parts[1] in _QOS_DIRS else 1
    if len(parts) > index and KUBE_DIR.match(parts[index]) and "_" not in parts[index]:
        return index
    return None


def kubernetes_pod(path: str) -> Tuple[Optional[str], Optional[str]]:
    """(pod UID, QoS class) of a cgroup path under kubepods, read from the root, by either kubelet
    cgroup driver: systemd `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podUID.slice`
    (slices from the root; UID with "_" for "-") or cgroupfs `/kubepods/burstable/podUID`; a pod
    with no QoS level is "guaranteed". (None, None) elsewhere."""
    parts = _parts(path)
    pod = _kube_dir_pod(parts)
    if pod is not None:
        return KUBE_DIR.match(parts[pod]).group(1), parts[1] if pod == 2 else "guaranteed"
    for index, part in enumerate(parts):
        match = UNIT.match(part)
        if match is None or match.group(1) != "slice":
            break  # only the slices from the root down to the first unit are the kubelet's
        match = KUBE_SLICE.match(part)
        if match is not None and any(p == "kubepods.slice" or p.endswith("-kubepods.slice") for p in parts[:index]):
            return match.group(2).replace("_", "-"), match.group(1) or "guaranteed"
    return None, None


def command_line(text: bytes) -> Optional[str]:
    """A PROC/PID/cmdline text as one string: its NUL-separated words joined by spaces (None when
    empty: a kernel thread, a zombie)."""
    words = text.rstrip(b"\0").split(b"\0")
    joined = b" ".join(words)
    return joined.decode("utf-8", "surrogateescape") if joined else None


def user_names(passwd: bytes) -> Dict[int, str]:
    """uid -> user name from an /etc/passwd text (the first name given to each uid); lines that
    are not `name:password:uid:...` are skipped, and so are names of digits only (`0:x:1000:...`
    would show uid 1000 as user 0)."""
    names: Dict[int, str] = {}
    for line in passwd.split(b"\n"):
        fields = line.split(b":")
        if len(fields) < 4 or not fields[0] or fields[0].isdigit() or not fields[2].isdigit() or len(fields[2]) > 10:
            continue
        names.setdefault(int(fields[2]), fields[0].decode("utf-8", "surrogateescape"))
    return names
