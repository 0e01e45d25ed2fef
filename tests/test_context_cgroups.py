"""Owner context on the live host, with real cgroups: directories named exactly as systemd,
docker, containerd, CRI-O, podman, LXC, systemd-nspawn and the kubelet name them (under a
test-owned directory of the cgroup2 mount, removed afterwards), a real process holding real
sockets moved into each (its pid written to cgroup.procs), and what procsock says of it; hostile
directory names; sock_diag's cgroup id against the holders' (cgroup_moved)."""

import json
import os
import subprocess
import sys

import pytest

import procsock
from procsock.render import entries, table_lines

HEX = "0123456789abcdef" * 4
UID = "3e2b1c0d-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
HOLDER = """
import os, socket, sys
keep = []
for line in sys.stdin:  # one listener (any address) and a unix pair per line, made in the cgroup it is in now
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    keep += [s, *socket.socketpair()]
    print(os.fstat(s.fileno()).st_ino, flush=True)
"""


def cgroup2_mount():
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mount, _, rest = line.partition(b" - ")
            if rest.split()[:1] == [b"cgroup2"]:
                return os.fsdecode(mount.split()[4])
    return None


@pytest.fixture
def cgroups():
    """make(relative path) -> the new cgroup directory under a test-owned parent of the cgroup2
    mount; everything made is emptied (its processes moved back to the root) and removed after."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates cgroups and moves processes into them")
    mount = cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount here")
    parent = os.path.join(mount, "procsock-test-%d" % os.getpid())
    try:
        os.mkdir(parent)
    except OSError as exc:
        pytest.skip("cgroup2 at %s is not writable: %s" % (mount, exc))
    made = [parent]

    def make(relative):
        path = parent
        for part in relative.split("/"):
            path = os.path.join(path, part)
            if path not in made:
                os.mkdir(path)
                made.append(path)
        return path

    try:
        yield make
    finally:
        for path in reversed(made):
            with open(os.path.join(path, "cgroup.procs")) as f:
                for pid in f.read().split():
                    try:
                        with open(os.path.join(mount, "cgroup.procs"), "w") as root:
                            root.write(pid)
                    except OSError:  # exited meanwhile
                        pass
            os.rmdir(path)


class Holder:
    """A real process holding real sockets; `more()` makes another set where it is now."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid
        self.listeners = [self.more()]

    def more(self) -> int:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def move(self, cgroup: str) -> None:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write(str(self.pid))

    def context(self, **asked):
        snap = procsock.snapshot(pid=self.pid, context=True, **asked)
        found = {o.context for s in snap.sockets for o in s.owners}
        assert len(found) == 1, found  # one Context per process
        return snap, found.pop()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def holder():
    made = Holder()
    yield made
    made.close()


CONVENTIONS = [  # (path under the test's parent, expected fields)
    ("system.slice/nginx.service", {"unit": "nginx.service", "slice": "system.slice", "container_id": None}),
    ("user.slice/user-1000.slice/user@1000.service/app.slice/x.scope", {"unit": "x.scope", "slice": "app.slice"}),
    ("system.slice/run-u42.scope", {"unit": "run-u42.scope", "slice": "system.slice"}),
    ("init.scope", {"unit": "init.scope"}),
    ("system.slice/docker-%s.scope" % HEX, {"container_runtime": "docker", "container_id": HEX}),
    ("docker/%s" % HEX, {"container_runtime": "docker", "container_id": HEX, "unit": None}),
    ("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-%s.scope"
     % (UID.replace("-", "_"), HEX),
     {"container_runtime": "containerd", "container_id": HEX, "pod_uid": UID, "pod_qos": "burstable"}),
    ("kubepods.slice/kubepods-pod%s.slice/crio-%s.scope" % (UID.replace("-", "_"), HEX),
     {"container_runtime": "cri-o", "container_id": HEX, "pod_uid": UID, "pod_qos": "guaranteed"}),
    ("kubepods/besteffort/pod%s/%s" % (UID, HEX),
     {"container_runtime": None, "container_id": HEX, "pod_uid": UID, "pod_qos": "besteffort"}),
    ("machine.slice/libpod-%s.scope" % HEX, {"container_runtime": "podman", "container_id": HEX}),
    ("machine.slice/machine-web1.scope", {"container_runtime": "systemd-nspawn", "container_id": "web1"}),
    ("lxc.payload.web1", {"container_runtime": "lxc", "container_id": "web1"}),
    # near misses: no id rather than a wrong one
    ("system.slice/docker-%s.scope" % HEX[:63], {"container_id": None}),
    ("system.slice/crio-conmon-%s.scope" % HEX, {"container_id": None}),
]


@pytest.mark.parametrize("path, expected", CONVENTIONS, ids=[c[0].split("/")[-1][:40] for c in CONVENTIONS])
def test_real_cgroup_of_each_convention(cgroups, holder, path, expected):
    where = cgroups(path)
    holder.move(where)
    _, context = holder.context()
    assert context.cgroup.endswith("/" + path)
    assert context.cgroup_id == os.stat(where).st_ino  # the inode sock_diag would report
    assert context.user == "root" and context.cmdline.startswith(sys.executable)
    assert {key: getattr(context, key) for key in expected} == expected


def test_filters_select_the_moved_process_on_every_path(cgroups, holder):
    where = cgroups("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice/cri-containerd-%s.scope"
                    % (UID.replace("-", "_"), HEX))
    holder.move(where)
    listener = holder.listeners[0]
    for asked in ({"container": HEX[:12]}, {"pod": UID}, {"cgroup": where[where.index("/procsock-test-"):]}):
        full = procsock.snapshot(**asked)  # the whole walk (in a forked child)
        assert {o.pid for s in full.sockets for o in s.owners} == {holder.pid}, asked
        assert listener in {s.record.inode for s in full.sockets}
        by_pid = procsock.snapshot(pid=holder.pid, **asked)
        assert {s.record.inode for s in by_pid.sockets} == {s.record.inode for s in full.sockets}
    out = subprocess.run([sys.executable, "-m", "procsock", "--jsonl", "--container", HEX[:12]],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    owners = [o for line in out.stdout.splitlines() for o in json.loads(line)["owners"]]
    assert owners and {o["pid"] for o in owners} == {holder.pid}
    assert {o["context"]["container_id"] for o in owners} == {HEX}


def test_hostile_cgroup_name_is_kept_exact_and_shown_escaped(cgroups, holder):
    name = "evil\x1b[31m\t\u202e" + "x" * 200 + "-docker-%s.scope" % HEX
    where = cgroups("system.slice/" + name)
    holder.move(where)
    snap, context = holder.context()
    assert context.cgroup.endswith("/" + name) and context.container_id is None and context.unit is None
    lines = list(table_lines(snap.sockets, context=True))
    assert not any(ch in line for line in lines for ch in "\x1b\t\u202e")
    out = subprocess.run([sys.executable, "-m", "procsock", "-C", "--pid", str(holder.pid)],
                         capture_output=True, timeout=60)
    assert out.returncode == 0 and b"\x1b" not in out.stdout + out.stderr


def test_process_that_exits_has_no_context_and_no_traceback(cgroups):
    gone = Holder()
    gone.move(cgroups("system.slice/gone.service"))
    snap = procsock.snapshot(context=True, unit="gone.service")
    assert {o.pid for s in snap.sockets for o in s.owners} == {gone.pid}
    gone.close()
    snap = procsock.snapshot(context=True, unit="gone.service")
    assert not snap.sockets


def test_cgroup_moved_flags_a_socket_created_in_another_cgroup(cgroups, holder):
    first, second = cgroups("system.slice/first.service"), cgroups("system.slice/second.service")
    holder.move(first)
    made_here = holder.more()  # created in first.service
    snap = procsock.snapshot(pid=holder.pid, context=True, details=True, kind="tcp")
    moved = {row[1]: procsock.model.cgroup_moved(row, owners) for row, owners, _ in entries(snap.sockets)}
    if moved.get(made_here) is None:
        pytest.skip("this kernel's sock_diag gives no cgroup id (INET_DIAG_CGROUP_ID)")
    assert moved[made_here] is False
    assert moved[holder.listeners[0]] is True  # created in the cgroup the holder started in
    holder.move(second)
    snap = procsock.snapshot(pid=holder.pid, context=True, details=True, kind="tcp")
    assert {row[1]: procsock.model.cgroup_moved(row, owners) for row, owners, _ in entries(snap.sockets)}[
        made_here] is True
    jsonl = subprocess.run([sys.executable, "-m", "procsock", "--jsonl", "-C", "-e", "-t", "--pid", str(holder.pid)],
                           capture_output=True, text=True, timeout=60).stdout
    doc = {json.loads(line)["inode"]: json.loads(line) for line in jsonl.splitlines()}[made_here]
    assert doc["cgroup_moved"] is True
    table = subprocess.run([sys.executable, "-m", "procsock", "-C", "-e", "-t", "--pid", str(holder.pid)],
                           capture_output=True, text=True, timeout=60).stdout
    assert "cgroup_moved" in table


def test_diff_names_a_process_moved_between_real_cgroups(cgroups, holder, tmp_path):
    """Two saved snapshots of a real process, before and after it moved from one real cgroup to
    another: each socket it holds changed in its owners' context alone, in the library, the table
    and the JSON; a side without context says nothing of it."""
    from procsock.render import json_document
    from procsock.saved import load

    first, second = cgroups("system.slice/first.service"), cgroups("system.slice/second.service")
    saved = {}
    for name, where in (("before", first), ("after", second)):
        holder.move(where)
        saved[name] = tmp_path / (name + ".json")
        saved[name].write_text("".join(json_document(procsock.snapshot(pid=holder.pid, context=True))))
    plain = tmp_path / "plain.json"
    plain.write_text("".join(json_document(procsock.snapshot(pid=holder.pid))))
    old, new = load(saved["before"]), load(saved["after"])
    held = {s.record.identity.text for s in new.sockets}
    assert len(held) >= 3 and {o.pid for s in new.sockets for o in s.owners} == {holder.pid}
    changes = procsock.diff(old, new)
    assert not changes.added and not changes.removed
    assert {c.identity.text for c in changes.changed} == held
    assert {c.fields for c in changes.changed} == {("context",)}
    assert {o.context.unit for c in changes.changed for o in c.new.owners} == {"second.service"}
    assert procsock.diff(new, load(saved["after"])).same  # the same moment: nothing changed
    assert procsock.diff(load(plain), new).same  # no context on one side: nothing to compare

    def diff(*argv):
        done = subprocess.run([sys.executable, "-m", "procsock", "diff", *map(str, argv)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1, done.stderr  # something differs
        return done.stdout

    table = diff(saved["before"], saved["after"]).splitlines()
    assert table.count("\t context %d first.service->second.service" % holder.pid) == len(held)
    assert table[-1] == "0 added, 0 removed, %d changed" % len(held)
    shown = json.loads(diff("--json", saved["before"], saved["after"]))
    assert [c["fields"] for c in shown["changed"]] == [["context"]] * len(held)
    assert {o["context"]["unit"] for c in shown["changed"] for o in c["old"]["owners"]} == {"first.service"}
