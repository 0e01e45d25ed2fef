"""Owner context from a captured tree (tests/fixtures/context: systemd, docker, containerd and
kubepods cgroups, an etc/passwd beside the tree), through every surface: the library, JSON,
the -C table, the context filters, --summary; the procsock_owner_context hook's lifecycle and
error handling; and a default snapshot that pays nothing for it."""

import json
import re
import os
import subprocess
import sys

import pytest

import procsock
from procsock import hookimpl
from procsock.api import make_query
from procsock.backends import Registry
from procsock.errors import BadArgument
from procsock.render import _SocketJson, entries, entry_dict
from procsock.summary import summarize, summary_lines

ROOT = os.path.join(os.path.dirname(__file__), "fixtures", "context")
PROC = os.path.join(ROOT, "proc")
DOCKER = "d0c1" * 16
CONTAINERD = "c0ffee00" * 8
POD = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "procsock", "--proc-root", PROC, *args],
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def contexts(**filters):
    snap = procsock.snapshot(proc_root=PROC, **filters)
    return snap, {o.pid: o.context for s in snap.sockets for o in s.owners}


def test_captured_tree_context_of_each_convention():
    snap, found = contexts(context=True)
    assert not [n for n in snap.notes if n.code == "context-failed"]
    nginx = found[101]
    assert (nginx.user, nginx.unit, nginx.slice, nginx.cgroup, nginx.cgroup_v1) == (
        "www-data", "nginx.service", "system.slice", "/system.slice/nginx.service", "/system.slice/nginx.service")
    assert nginx.cmdline == "nginx: master process /usr/sbin/nginx" and nginx.cgroup_id is None  # not this host's
    assert (found[202].container_runtime, found[202].container_id, found[202].user) == ("docker", DOCKER, "redis")
    envoy = found[303]
    assert (envoy.container_runtime, envoy.container_id, envoy.pod_uid, envoy.pod_qos) == (
        "containerd", CONTAINERD, POD, "burstable")
    assert envoy.user is None  # uid 101 is in no etc/passwd line: the number only
    pause = found[404]
    assert (pause.pod_uid, pause.pod_qos, pause.container_id, pause.container_runtime) == (
        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "besteffort", "4b1d" * 16, None)
    assert (found[505].unit, found[505].slice, found[505].user) == (
        "user@1000.service/app.slice/run-u42.scope", "user-1000.slice", "alice")
    legacy = found[606]  # v1 name=systemd line with the cgroupfs docker layout, v2 at the root
    assert (legacy.cgroup, legacy.cgroup_v1, legacy.container_id) == ("/", "/docker/" + "e5f6" * 16, "e5f6" * 16)
    # one Context per process, shared by its owners
    owners = [o for s in snap.sockets for o in s.owners if o.pid == 101]
    assert len(owners) == 2 and owners[0].context is owners[1].context


def test_no_context_unless_asked():
    snap, found = contexts()
    assert found and set(found.values()) == {None}
    doc = json.loads("".join(procsock.render.json_document(snap)))
    assert all(o["context"] is None for s in doc["sockets"] for o in s["owners"])


@pytest.mark.parametrize("filters, pids", [
    ({"unit": "nginx.service"}, {101}),
    ({"unit": "nginx"}, {101}),
    ({"container": DOCKER[:12]}, {202}),
    ({"container": CONTAINERD}, {303}),
    ({"pod": POD}, {303}),
    ({"cgroup": "/kubepods"}, {404}),
    ({"cgroup": "/kubepods.slice/"}, {303}),
    ({"cgroup": "/system.slice"}, {101, 202}),
    ({"cgroup": "/system.sl"}, set()),  # a prefix of whole path components, not of characters
    ({"user": "alice"}, {505}),
    ({"user": 33}, {101}),
    ({"user": ["0", "redis"]}, {202, 606}),
    ({"unit": "nginx", "user": "alice"}, set()),  # every filter must match one owner
])
def test_context_filters(filters, pids):
    snap, found = contexts(**filters)
    assert set(found) == pids
    assert not snap.unresolved  # a filter narrows: nothing is "unresolved" for it


def captured_with_passwd(tmp_path, passwd):
    """A copy of the captured tree whose etc/passwd is `passwd`: bytes, or a callable making it."""
    import shutil

    shutil.copytree(ROOT, tmp_path / "tree", symlinks=True)
    os.unlink(tmp_path / "tree" / "etc" / "passwd")
    passwd(tmp_path / "tree" / "etc" / "passwd")
    return str(tmp_path / "tree" / "proc")


def test_etc_passwd_beside_a_tree_is_not_followed_out_of_it(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"mallory:x:1000:1000::/:/\n")
    proc = captured_with_passwd(tmp_path, lambda path: os.symlink(outside, path))
    found = {o.pid: o.context for s in procsock.snapshot(proc_root=proc, context=True).sockets for o in s.owners}
    assert found[505].user is None and found[101].user is None  # no names rather than the link's
    assert not procsock.snapshot(proc_root=proc, user="mallory").sockets


def test_a_user_name_of_digits_never_stands_for_another_uid(tmp_path):
    proc = captured_with_passwd(tmp_path, lambda path: path.write_bytes(
        b"0:x:1000:1000::/:/\nroot:x:0:0::/:/\n33:x:0:0::/:/\n"))
    found = {o.pid: o.context for s in procsock.snapshot(proc_root=proc, context=True).sockets for o in s.owners}
    assert found[505].user is None and found[101].user is None
    for asked, pids in (("0", {606}), ("1000", {505}), ("33", {101})):  # by uid only
        snap = procsock.snapshot(proc_root=proc, user=asked)
        assert {o.pid for s in snap.sockets for o in s.owners} == pids, asked
    out = subprocess.run([sys.executable, "-m", "procsock", "--proc-root", proc, "-C", "--user", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "worker" not in out.stdout  # uid 1000's process is not user 0's


@pytest.mark.parametrize("argument, value", [
    ("cgroup", "system.slice"), ("unit", "a/b"), ("pod", "Bad Pod"), ("container", "x\x1b"), ("user", "-1"),
    ("user", -1), ("unit", []),
])
def test_bad_context_filters_are_refused_at_the_door(argument, value):
    with pytest.raises(BadArgument) as caught:
        make_query(**{argument: value})
    assert argument in str(caught.value) and "\x1b" not in str(caught.value)


def test_json_context_per_owner_and_fast_writer_equals_json_dumps():
    snap, _ = contexts(context=True)
    writer = _SocketJson()
    for entry in entries(snap.sockets):
        assert writer.text(entry) == json.dumps(entry_dict(entry))
    doc = json.loads(run("--json", "-C").stdout)
    envoy = {o["pid"]: o for s in doc["sockets"] for o in s["owners"]}[303]
    assert envoy["context"]["pod_uid"] == POD and envoy["context"]["extra"] == {}


def test_table_context_columns_and_cli_filters():
    lines = run("-C").stdout.splitlines()
    assert lines[0].split()[-3:] == ["User", "Context", "Process"]
    (nginx,) = [line for line in lines if line.endswith("nginx,101,3")]
    assert " www-data " in nginx and " nginx.service " in nginx
    (redis,) = [line for line in lines if line.endswith("redis-server,202,6")]
    assert " docker:%s " % DOCKER[:12] in redis
    listed = run("--container", DOCKER[:12], "-H").stdout.splitlines()
    assert len(listed) == 1 and listed[0].endswith("redis-server,202,6")
    assert run("--pod", POD, "-H").stdout.count("envoy,303") == 2
    assert run("--unit", "no.such.service", "-H").stdout == ""
    bad = run("--cgroup", "relative", check=False)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "cgroup" in bad.stderr


def test_summary_counts_and_wildcard_listeners_first():
    snap, _ = contexts(context=True)
    summary = summarize(snap)
    assert summary.total == len(snap.sockets) and summary.held == sum(1 for s in snap.sockets if s.owners)
    assert [(x.where, x.netid, x.local) for x in summary.listeners] == [
        ("docker:" + DOCKER[:12], "udp", "0.0.0.0:41934"), ("nginx.service", "tcp", "[::]:49433")]
    places = {c.name: c for c in summary.places}
    assert places["nginx.service"].total == 2 and places["nginx.service"].state("LISTEN") == 2
    assert sum(c.total for c in summary.kinds) == summary.total
    text = run("-s").stdout
    assert text == "\n".join(summary_lines(summary)) + "\n"
    assert text.index("Listening on any address") < text.index("By kind") < text.index("By unit, container, pod")


class Site:
    """A site plugin adding its own fields (a team), and one naming a pod the built-in cannot."""

    @hookimpl
    def procsock_owner_context(self, process, source):
        if process.pid == 303:
            return {"team": "edge", "pod_name": "envoy-7d9f", "pod_namespace": "mesh", "unit": "not-this.service"}
        return None


class Broken:
    def __init__(self, answer):
        self.answer = answer

    @hookimpl
    def procsock_owner_context(self, process, source):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def registry_with(*plugins, disabled=()):
    registry = Registry.from_entry_points(disabled=disabled)
    for index, plugin in enumerate(plugins):
        registry.register(plugin, "site%d" % index)
    return registry


def test_hook_extra_fields_and_fill_only_what_is_unknown():
    snap = procsock.snapshot(proc_root=PROC, context=True, registry=registry_with(Site()))
    envoy = {o.pid: o.context for s in snap.sockets for o in s.owners}[303]
    assert envoy.extra == {"team": "edge"}
    assert (envoy.pod_name, envoy.pod_namespace) == ("envoy-7d9f", "mesh")
    assert envoy.unit.startswith("cri-containerd-")  # the built-in answered first: its field stands
    snap = procsock.snapshot(proc_root=PROC, pod="mesh/envoy-7d9f", registry=registry_with(Site()))
    assert {o.pid for s in snap.sockets for o in s.owners} == {303}


@pytest.mark.parametrize("answer", [
    RuntimeError("boom \x1b[31m"), ["not", "a", "mapping"], {"bad key!": "x"}, {"team": True},
    {"cgroup_id": "12"}, {"unit": 5}, {"team": "x" * 5000}, {7: "x"},
])
def test_hook_failures_are_notes_never_tracebacks(answer):
    snap = procsock.snapshot(proc_root=PROC, context=True, registry=registry_with(Broken(answer)))
    (note,) = [n for n in snap.notes if n.code == "context-failed"]
    assert "site0" in note.text and "\x1b" not in note.text and len(note.text) < 300
    found = {o.pid: o.context for s in snap.sockets for o in s.owners}
    assert found[101].unit == "nginx.service" and found[101].extra == {}  # the built-in's answer stands


def test_builtin_context_plugin_can_be_disabled():
    registry = Registry.from_entry_points(disabled=("context",))
    assert not registry.context_hooks
    snap = procsock.snapshot(proc_root=PROC, context=True, registry=registry)
    assert {o.context for s in snap.sockets for o in s.owners} == {procsock.Context()}
    assert "context" in run("--disable-plugin", "context", "-C").stdout.splitlines()[0].lower()


def test_hostile_context_text_is_escaped_in_table_and_json():
    snap = procsock.snapshot(proc_root=PROC, context=True, registry=registry_with(
        Broken({"team": "red\x1b[2J\u202e", "pod_name": "p\nq"})))
    lines = list(procsock.render.table_lines(snap.sockets, context=True))
    assert not any(ch in line for line in lines for ch in "\x1b\n\u202e")
    text = "".join(procsock.render.json_lines(snap))
    assert "\\\\x1b" in text or "\\\\u202e" in text
    assert "\x1b" not in json.loads(text.splitlines()[0])["owners"][0]["context"]["extra"]["team"]


def test_readme_context_examples_are_real_output():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(repo, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("### Who holds it: services, containers, pods"):]
    section = section[:section.index("\n### ", 10)]
    examples = re.findall(r"```text\n\$ procsock (.*?)\n(.*?)```", section, re.S)
    assert len(examples) >= 5
    shown = " ".join(command for command, _ in examples)
    for option in ("-C", "--unit", "--container", "--summary"):
        assert option in shown.split()
    for command, output in examples:
        proc = subprocess.run([sys.executable, "-m", "procsock", *command.split()], capture_output=True, text=True,
                              timeout=60, cwd=repo)
        assert proc.returncode == 0 and proc.stdout == output, command


def test_one_truth_describe_fd_describe_inode_and_snapshots_agree():
    snap = procsock.snapshot(proc_root=PROC, context=True)
    (whole,) = [s for s in snap.sockets if s.record.inode == 7151]
    by_pid = [s for s in procsock.snapshot(proc_root=PROC, pid=101, context=True).sockets if s.record.inode == 7151]
    assert by_pid == [whole]
    assert procsock.describe_fd(101, 3, proc_root=PROC, context=True) == whole
    assert procsock.describe_inode(7151, proc_root=PROC, context=True) == whole
    assert procsock.describe_fd(101, 3, proc_root=PROC).owners[0].context is None


@pytest.mark.parametrize("expression, pids", [
    ("unit = nginx.service", {101}),
    ("unit = nginx", {101}),
    ("unit = 'user@1000.service/*run-*'", {505}),  # a unit of a user's manager: qualified
    ("unit = user@1000.service", {505}),  # or by its manager's system unit
    ("container = %s" % DOCKER[:12], {202}),
    ("pod = %s" % POD, {303}),
    ("not unit = nginx and comm = nginx", set()),
    ("unit != nginx and pid = 101", set()),
    ("unit = nginx or container = %s" % DOCKER[:12], {101, 202}),
])
def test_the_filter_language_reads_the_owners_context(expression, pids):
    """`unit`, `container` and `pod` in an ss filter ask for context themselves and select as the options do."""
    snap = procsock.snapshot(proc_root=PROC, filter=expression.replace("'", ""))
    assert {o.pid for s in snap.sockets for o in s.owners if o.pid in (101, 202, 303, 404, 505, 606)} >= pids
    held = {s.record.inode for s in snap.sockets if {o.pid for o in s.owners} & pids}
    assert all(o.context is not None for s in snap.sockets for o in s.owners)
    if pids:
        assert held
    for sock in snap.sockets:  # each socket kept is held by one of those processes
        assert {o.pid for o in sock.owners} & pids
