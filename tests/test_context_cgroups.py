"""Owner context on the live host, with real cgroups: directories named exactly as systemd,
docker, containerd, CRI-O, podman, LXC, systemd-nspawn and the kubelet name them (under a
test-owned directory of the cgroup2 mount, removed afterwards), a real process holding real
sockets moved into each (its pid written to cgroup.procs), and what procsock says of it; hostile
directory names; sock_diag's cgroup id against the holders' (cgroup_moved)."""

import json
import os
import secrets
import subprocess
import sys
import uuid

import pytest

import procsock
from procsock.render import table_lines

HEX = secrets.token_hex(32)  # container ids of this run, so no test uses a directory it did not make
HEX_B, HEX_C = secrets.token_hex(32), secrets.token_hex(32)
TOKEN = "pstest%d" % os.getpid()  # in the name of every unit this run makes
UID = str(uuid.uuid4())
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
    """make(path) -> the cgroup directory `path` under the cgroup2 mount's root (where systemd,
    runtimes and the kubelet put theirs, and where procsock reads conventions from), made as
    needed: the last component must be new (every test names its own with TOKEN or a random id);
    what exists is used as is. Everything made is emptied (its processes moved back to the root)
    and removed after."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates cgroups and moves processes into them")
    mount = cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup2 mount here")
    if not os.access(mount, os.W_OK):
        pytest.skip("cgroup2 at %s is not writable" % mount)
    made = []

    def make(relative):
        path = mount
        parts = relative.split("/")
        for index, part in enumerate(parts):
            path = os.path.join(path, part)
            if index == len(parts) - 1 or not os.path.isdir(path):
                os.mkdir(path)  # the leaf existing already is an error: never a directory not ours
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


USER = "user.slice/user-%d.slice/user@%d.service" % (3000000000 + os.getpid(), 3000000000 + os.getpid())
MANAGER = USER.rsplit("/", 1)[1]  # a user's systemd manager, a uid no one has
CONVENTIONS = [  # (path under the cgroup2 root, expected fields)
    ("system.slice/%s.service" % TOKEN, {"unit": TOKEN + ".service", "slice": "system.slice", "container_id": None}),
    (USER + "/app.slice/%s.scope" % TOKEN, {"unit": "%s/app.slice/%s.scope" % (MANAGER, TOKEN),
                                           "slice": USER.split("/")[1]}),
    ("system.slice/run-%s.scope" % TOKEN, {"unit": "run-%s.scope" % TOKEN, "slice": "system.slice"}),
    ("%s.scope" % TOKEN, {"unit": TOKEN + ".scope", "slice": "-.slice"}),
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
    ("machine.slice/machine-%s.scope" % TOKEN, {"container_runtime": "systemd-nspawn", "container_id": TOKEN}),
    ("lxc.payload.%s" % TOKEN, {"container_runtime": "lxc", "container_id": TOKEN}),
    # near misses: no id rather than a wrong one
    ("system.slice/docker-%s.scope" % HEX[:63], {"container_id": None}),
    ("system.slice/crio-conmon-%s.scope" % HEX, {"container_id": None}),
    # hostile: what lies below a unit or a container is its own (a delegate names it), and a user's
    # manager lays out its units itself: neither may pass for a container or a system unit
    ("system.slice/docker-%s.scope/docker-%s.scope" % (HEX, HEX_B),
     {"container_runtime": "docker", "container_id": HEX, "unit": "docker-%s.scope" % HEX}),
    ("system.slice/docker-%s.scope/sshd.service" % HEX,
     {"container_id": HEX, "unit": "docker-%s.scope" % HEX, "slice": "system.slice"}),
    (USER + "/app.slice/docker/%s" % HEX_C, {"container_id": None, "container_runtime": None, "unit": MANAGER}),
    (USER + "/app.slice/sshd.service", {"unit": MANAGER + "/app.slice/sshd.service", "container_id": None}),
    (USER + "/kubepods/pod%s/%s" % (UID, HEX_C), {"pod_uid": None, "container_id": None, "unit": MANAGER}),
]


def _case_id(path):
    return path.replace(HEX, "A").replace(HEX_B, "B").replace(HEX_C, "C").replace(TOKEN, "T").replace(
        USER, "USER").replace(UID, "UID")


@pytest.mark.parametrize("path, expected", CONVENTIONS, ids=[_case_id(c[0]) for c in CONVENTIONS])
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
    for asked in ({"container": HEX[:12]}, {"pod": UID}, {"cgroup": where[len(cgroup2_mount()):]}):
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


def test_filters_and_summary_believe_no_delegate(cgroups, holder):
    """--container, --unit and -s on the hostile layouts: a container's own sub-cgroup named as
    another container, a user's cgroups named as a docker container and as a system unit."""
    nested, user = holder, Holder()
    try:
        nested.move(cgroups("system.slice/docker-%s.scope/docker-%s.scope" % (HEX, HEX_B)))
        user.move(cgroups(USER + "/app.slice/%s.service" % TOKEN))
        system = Holder()
        try:
            system.move(cgroups("system.slice/%s.service" % TOKEN))
            for asked, pids in (({"container": HEX_B}, set()), ({"container": HEX[:12]}, {nested.pid}),
                                ({"unit": TOKEN}, {system.pid}), ({"unit": TOKEN + ".service"}, {system.pid}),
                                ({"unit": MANAGER}, {user.pid})):
                found = {o.pid for s in procsock.snapshot(**asked).sockets for o in s.owners}
                assert found & {nested.pid, user.pid, system.pid} == pids, asked
            out = subprocess.run([sys.executable, "-m", "procsock", "-s", "--unit", TOKEN, "--unit", MANAGER],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            user_unit = "%s/app.slice/%s.service" % (MANAGER, TOKEN)
            lines = out.stdout.splitlines()
            assert [line for line in lines if user_unit in line]  # the user's own, qualified
            held = len(procsock.snapshot(pid=system.pid).sockets)  # the system unit's, not the user's too
            counted = [line.split()[1] for line in lines if line.split()[:1] == [TOKEN + ".service"] and
                       "tcp" not in line.split()]
            assert counted == [str(held)], lines
        finally:
            system.close()
    finally:
        user.close()


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
    gone.move(cgroups("system.slice/%s-gone.service" % TOKEN))
    snap = procsock.snapshot(context=True, unit="%s-gone.service" % TOKEN)
    assert {o.pid for s in snap.sockets for o in s.owners} == {gone.pid}
    gone.close()
    snap = procsock.snapshot(context=True, unit="%s-gone.service" % TOKEN)
    assert not snap.sockets


def test_cgroup_moved_flags_a_socket_created_in_another_cgroup(cgroups, holder):
    first, second = cgroups("system.slice/%s-1.service" % TOKEN), cgroups("system.slice/%s-2.service" % TOKEN)
    holder.move(first)
    made_here = holder.more()  # created in first.service
    snap = procsock.snapshot(pid=holder.pid, context=True, details=True, kind="tcp")
    moved = {row[1]: procsock.model.cgroup_moved(row, owners, snap.sockets.contexts)
             for row, owners, _ in snap.sockets.entries}
    if moved.get(made_here) is None:
        pytest.skip("this kernel's sock_diag gives no cgroup id (INET_DIAG_CGROUP_ID)")
    assert moved[made_here] is False
    assert moved[holder.listeners[0]] is True  # created in the cgroup the holder started in
    holder.move(second)
    snap = procsock.snapshot(pid=holder.pid, context=True, details=True, kind="tcp")
    assert {row[1]: procsock.model.cgroup_moved(row, owners, snap.sockets.contexts)
             for row, owners, _ in snap.sockets.entries}[
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


FORKER = """
import os, socket, sys
shared = socket.create_server(("127.0.0.1", 0))  # one listener every child holds
pids = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os.read(0, 1)  # until the test closes stdin
        os._exit(0)
    pids.append(pid)
print(*pids, flush=True)
os.read(0, 1)
for pid in pids:
    os.waitpid(pid, 0)
"""


def test_metrics_context_series_are_capped_however_many_cgroups_a_user_makes(cgroups):
    """Processes in more cgroups than CONTEXT_SERIES_MAX: at most that many context series, the
    rest summed into unit="other" and counted by procsock_context_series_dropped."""
    pytest.importorskip("prometheus_client")
    from procsock import metrics
    from procsock.api import default_registry, make_query
    from procsock.model import Source

    many = metrics.CONTEXT_SERIES_MAX + 5
    forker = subprocess.Popen([sys.executable, "-c", FORKER, str(many)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        children = forker.stdout.readline().split()
        assert len(children) == many
        for index, pid in enumerate(children):
            with open(os.path.join(cgroups("%s.slice/%s-%d.service" % (TOKEN, TOKEN, index)), "cgroup.procs"),
                      "w") as f:
                f.write(pid)
        query = make_query(cgroup="/%s.slice" % TOKEN)
        snap = procsock.snapshot(cgroup="/%s.slice" % TOKEN)
        held = {metrics.context_labels(snap.sockets.contexts.get(o[0]))
                for _, owners, _ in snap.sockets.entries for o in owners} - {None}
        assert len(held) > metrics.CONTEXT_SERIES_MAX  # more label sets than a scrape may show
        collector = metrics.SnapshotCollector(default_registry(), Source.live(), query)
        families = {f.name: f for f in collector.collect()}
        by_context = {tuple(s.labels[k] for k in ("unit", "container", "pod")): s.value
                      for s in families["procsock_sockets_by_context"].samples}
        dropped = families["procsock_context_series_dropped"].samples[0].value
        assert len(by_context) == metrics.CONTEXT_SERIES_MAX
        assert dropped == len(held) - (metrics.CONTEXT_SERIES_MAX - 1)
        assert by_context[metrics.OTHER_CONTEXT] == dropped  # each of them holds the one socket
        assert set(by_context) - {metrics.OTHER_CONTEXT} < held
    finally:
        forker.stdin.close()
        forker.wait(timeout=60)
