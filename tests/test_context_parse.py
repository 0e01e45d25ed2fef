"""The context plugin's parsers, on real path strings of each convention (as systemd, docker,
containerd, CRI-O, podman, LXC/LXD, systemd-nspawn and the kubelet name cgroups), and on near
misses and hostile text: an id only when the shape matches exactly, never a traceback."""

import pytest

from procsock_plugins.context import parse

DOCKER_ID = "7be92808767a667f35c8505cbf40d14e931ef6db5b0210329cf193b15ba9d605"
CONTAINERD_ID = "f2d1b6c6b8b3b0e2ac81a4d1a1f9b4b2a8c6e4f1d9c5b7a3e2f1d0c9b8a7f6e5"
POD = "3e2b1c0d-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
STATIC_POD = "5b6f1d3e9c8a7b6f5e4d3c2b1a0f9e8d"


@pytest.mark.parametrize("path, unit, slice_", [
    ("/system.slice/nginx.service", "nginx.service", "system.slice"),
    # a user's manager lays out its own units: qualified, never a system unit's name
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope", "user@1000.service/app.slice/x.scope",
     "user-1000.slice"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service",
     "user@1000.service/app.slice/sshd.service", "user-1000.slice"),
    ("/user.slice/user-1000.slice/user@1000.service/init.scope", "user@1000.service/init.scope", "user-1000.slice"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/docker/%s" % DOCKER_ID, "user@1000.service",
     "user-1000.slice"),
    ("/user.slice/user-1000.slice/user@1000.service", "user@1000.service", "user-1000.slice"),
    # below the outermost unit is the unit's own (a delegate, a container's tree)
    ("/system.slice/docker-%s.scope/sshd.service" % DOCKER_ID, "docker-%s.scope" % DOCKER_ID, "system.slice"),
    ("/system.slice/x.service/y.slice/z.service", "x.service", "system.slice"),
    ("/mine/system.slice/sshd.service", None, None),  # not under slices from the root: not systemd's
    ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", "user-1000.slice"),
    ("/init.scope", "init.scope", "-.slice"),
    ("/system.slice/run-u123.scope", "run-u123.scope", "system.slice"),
    ("/system.slice/nginx.service/worker", "nginx.service", "system.slice"),  # a service's own sub-cgroup
    ("/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service", "system-getty.slice"),
    ("/system.slice/dev-disk-by\\x2duuid-x.swap", "dev-disk-by\\x2duuid-x.swap", "system.slice"),
    ("/system.slice/docker-%s.scope" % DOCKER_ID, "docker-%s.scope" % DOCKER_ID, "system.slice"),
    ("/docker/%s" % DOCKER_ID, None, None),  # cgroupfs driver: no systemd unit
    ("/", None, None),
    ("/system.slice/ngi\x1bnx.service", None, None),  # not a unit name: control byte
    ("/system.slice/" + "a" * 300 + ".service", None, None),  # longer than a unit name may be
])
def test_systemd_unit(path, unit, slice_):
    assert parse.systemd_unit(path) == (unit, slice_)


@pytest.mark.parametrize("path, runtime, ident", [
    ("/system.slice/docker-%s.scope" % DOCKER_ID, "docker", DOCKER_ID),
    ("/docker/%s" % DOCKER_ID, "docker", DOCKER_ID),
    ("/system.slice/containerd.service/kubepods-besteffort-pod%s.slice:cri-containerd:%s" % (POD, CONTAINERD_ID),
     None, None),  # containerd's cgroupfs-with-systemd form is not a cgroup directory of the container
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-%s.scope"
     % (POD.replace("-", "_"), CONTAINERD_ID), "containerd", CONTAINERD_ID),
    ("/kubepods.slice/kubepods-pod%s.slice/crio-%s.scope" % (POD.replace("-", "_"), CONTAINERD_ID),
     "cri-o", CONTAINERD_ID),
    ("/machine.slice/libpod-%s.scope" % DOCKER_ID, "podman", DOCKER_ID),
    ("/machine.slice/libpod-%s.scope/container" % DOCKER_ID, "podman", DOCKER_ID),
    ("/machine.slice/machine-debian\\x2d12.scope", "systemd-nspawn", "debian\\x2d12"),
    ("/lxc.payload.web1", "lxc", "web1"),
    ("/lxc/web1", "lxc", "web1"),
    ("/kubepods/burstable/pod%s/%s" % (POD, CONTAINERD_ID), None, CONTAINERD_ID),
    # near misses: no id is better than a wrong one
    ("/system.slice/docker-%s.scope" % DOCKER_ID[:63], None, None),
    ("/system.slice/docker-%s.scope" % DOCKER_ID.upper(), None, None),
    ("/system.slice/crio-conmon-%s.scope" % CONTAINERD_ID, None, None),  # CRI-O's monitor, not the container
    ("/lxc.monitor.web1", None, None),
    ("/docker/%s\x1b[31m" % DOCKER_ID, None, None),
    ("/system.slice/docker.service", None, None),
    ("/", None, None),
    # hostile: the outermost container stands, cgroupfs shapes count at the root only
    ("/system.slice/docker-%s.scope/docker-%s.scope" % (DOCKER_ID, CONTAINERD_ID), "docker", DOCKER_ID),
    ("/system.slice/docker-%s.scope/lxc.payload.web1" % DOCKER_ID, "docker", DOCKER_ID),
    ("/docker/%s/docker/%s" % (DOCKER_ID, CONTAINERD_ID), "docker", DOCKER_ID),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/docker/%s" % DOCKER_ID, None, None),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/docker-%s.scope" % DOCKER_ID, None, None),
    ("/system.slice/sshd.service/docker-%s.scope" % DOCKER_ID, None, None),
    ("/system.slice/lxc.payload.web1", None, None),
    ("/mine/lxc/web1", None, None),
    ("/mine/kubepods/pod%s/%s" % (POD, CONTAINERD_ID), None, None),
])
def test_container(path, runtime, ident):
    assert parse.container(path) == (runtime, ident)


@pytest.mark.parametrize("path, uid, qos", [
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-%s.scope"
     % (POD.replace("-", "_"), CONTAINERD_ID), POD, "burstable"),
    ("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice" % POD.replace("-", "_"),
     POD, "besteffort"),
    ("/kubepods.slice/kubepods-pod%s.slice/crio-%s.scope" % (POD.replace("-", "_"), CONTAINERD_ID), POD, "guaranteed"),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice" % STATIC_POD, STATIC_POD, "burstable"),
    ("/kubepods/burstable/pod%s/%s" % (POD, CONTAINERD_ID), POD, "burstable"),
    ("/kubepods/besteffort/pod%s" % POD, POD, "besteffort"),
    ("/kubepods/pod%s/%s" % (POD, CONTAINERD_ID), POD, "guaranteed"),
    # not under kubepods, or not a UID: nothing
    ("/system.slice/kubepods-burstable-pod%s.slice" % POD.replace("-", "_"), None, None),
    ("/other/burstable/pod%s" % POD, None, None),
    ("/kubepods/burstable/pod%s" % POD[:-1], None, None),
    ("/kubepods/burstable/pod%s" % POD.replace("-", "_"), None, None),
    # a pod's name below a unit or under a user's tree is that tree's own
    ("/user.slice/user-1000.slice/user@1000.service/kubepods/pod%s" % POD, None, None),
    ("/system.slice/x.service/kubepods.slice/kubepods-pod%s.slice" % POD.replace("-", "_"), None, None),
    ("/mine/kubepods/pod%s" % POD, None, None),
])
def test_kubernetes_pod(path, uid, qos):
    assert parse.kubernetes_pod(path) == (uid, qos)


def test_cgroup_paths_v2_and_hybrid():
    hybrid = b"12:name=systemd:/system.slice/nginx.service\n4:memory:/system.slice/nginx.service\n0::/x\n"
    assert parse.cgroup_paths(hybrid) == ("/x", "/system.slice/nginx.service")
    assert parse.cgroup_paths(b"0::/system.slice/sshd.service\n") == ("/system.slice/sshd.service", None)
    assert parse.cgroup_paths(b"") == (None, None)


@pytest.mark.parametrize("text", [
    b"0::/a\n0::/system.slice/docker-%s.scope\n" % DOCKER_ID.encode(),  # given twice: a forged line
    b"garbage\n\x00\xff\n",
    b"0:/no-controllers-field\n",
    b"x::/a\n",
])
def test_cgroup_paths_refuses_malformed_or_doubled(text):
    v2, _ = parse.cgroup_paths(text)
    assert v2 is None


def test_cgroup_paths_keeps_hostile_bytes_as_text():
    v2, _ = parse.cgroup_paths(b"0::/evil\x1b[2J\xff\tname\n")
    assert v2 == "/evil\x1b[2J\udcff\tname"
    assert parse.container(v2) == (None, None) and parse.systemd_unit(v2) == (None, None)


def test_command_line_and_user_names():
    assert parse.command_line(b"nginx: master\0-g\0daemon off;\0") == "nginx: master -g daemon off;"
    assert parse.command_line(b"") is None
    passwd = b"root:x:0:0:root:/root:/bin/bash\nbad line\nwww-data:x:33:33::/var/www:/bin/false\nalias:x:0:0::/:/\n"
    assert parse.user_names(passwd) == {0: "root", 33: "www-data"}
    # a name of digits only would pass for a uid: uid 1000 is not user "0"
    assert parse.user_names(b"0:x:1000:1000::/:/\n1000:x:0:0::/:/\nalice:x:1000:1000::/:/\n") == {1000: "alice"}
