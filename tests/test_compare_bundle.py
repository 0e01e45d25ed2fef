"""`procsock compare --from BUNDLE`: a capture bundle's two raw parts compared, netlink reading its
sock_diag and procnet its proc/ tree (each namespace's own tables); a bundle whose tables were
edited disagrees naming the socket; a hostile one is refused in one line; the temporary directory
it is unpacked into is gone afterwards, on success and on error."""

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from procsock.api import default_registry, make_query
from procsock.capture import capture
from procsock.compare import compare_backends
from procsock.errors import BadArgument, InputError
from procsock.model import Source
import test_bundle
from test_bundle import bundle, good_snapshot

ME = os.getpid()
other_namespace = test_bundle.other_namespace  # the fixture: a process in another network namespace


def compare(*args, tmpdir):
    """`procsock compare ARGS` with its temporary files under `tmpdir` (to see that none is left)."""
    os.makedirs(tmpdir, exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmpdir))
    return subprocess.run([sys.executable, "-m", "procsock", "compare", *map(str, args)], capture_output=True,
                          text=True, env=env)


def held_by_me(snap, kinds):
    """The sockets of `kinds` we held when `snap` was taken, its own sock_diag query socket too
    (the bundle's replies are those the snapshot was read from; /proc/net/netlink read later
    does not list it: the comparison explains it)."""
    return {s.record.inode for s in snap.sockets if s.record.kind.name in kinds and ME in {o.pid for o in s.owners}}


def test_compare_from_a_bundle_agrees_on_the_zoo(zoo, tmp_path):
    out = tmp_path / "host.tar.gz"
    done = capture(str(out))
    temporary = tmp_path / "tmp"
    result = compare("--from", out, "--pid", ME, "--json", tmpdir=temporary)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.listdir(temporary) == []  # the unpacked bundle is gone
    shown = json.loads(result.stdout)
    assert shown["agree"] and shown["a_read"] == "sock_diag" and shown["b_read"] == "proc/"
    assert (shown["a"], shown["b"]) == ("netlink", "procnet")
    zoo_kinds = {e.kind for e in zoo.expected} & set(shown["kinds"])
    assert {"tcp", "udp", "unix"} <= zoo_kinds  # several kinds
    # every socket of the compared kinds we held at capture time, as many as the bundle's snapshot says
    assert shown["compared"] == len(held_by_me(done.snapshot, shown["kinds"])) > len(zoo_kinds)
    text = compare("--from", out, "--pid", ME, tmpdir=temporary)
    assert text.returncode == 0 and "netlink (sock_diag) vs procnet (proc/) on " in text.stdout.splitlines()[-1]
    # the library: the same comparison, one definition
    query = make_query(pid=[ME])
    lib = compare_backends(default_registry(), None, "netlink", "procnet", query, bundle=str(out))
    assert lib.agree and lib.compared == shown["compared"] and (lib.a_read, lib.b_read) == ("sock_diag", "proc/")
    with pytest.raises(BadArgument, match="bundle"):
        compare_backends(default_registry(), Source.live(), query=query, bundle=str(out))


def test_other_namespaces_are_compared_on_their_own_tables(other_namespace, tmp_path):
    pid, held = other_namespace
    out = tmp_path / "host.tar.gz"
    capture(str(out))
    result = compare_backends(default_registry(), None, query=make_query(pid=[pid]), bundle=str(out))
    # the holder's tcp listener and unix socket: read from sock_diag and from proc/PID/net/ of its namespace
    assert result.agree and result.compared == 2, (result.only_a, result.only_b, result.not_compared)
    assert {"tcp", "unix"} <= set(result.kinds)


def rebuilt(path, out, edit):
    """The bundle `path` again as `out`, each regular member's bytes passed through edit(name, data)."""
    with tarfile.open(path) as old, tarfile.open(out, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isreg() else None
            if data is not None:
                data = edit(member.name, data)
                member.size = len(data)
            new.addfile(member, None if data is None else io.BytesIO(data))
    return out


def test_a_bundle_whose_tables_were_edited_disagrees_naming_the_socket(zoo, tmp_path):
    out = tmp_path / "host.tar.gz"
    capture(str(out))
    listener = next(e for e in zoo.expected if e.kind == "tcp" and e.label == "tcp listen")
    inode = os.fstat(listener.sock.fileno()).st_ino
    edited = []

    def edit(name, data):
        if name != "proc/net/tcp":
            return data
        lines = data.decode().split("\n")
        for index, line in enumerate(lines):
            fields = line.split()
            if len(fields) > 9 and fields[9] == str(inode):
                address, port = fields[1].split(":")
                moved = "%s:%04X" % (address, int(port, 16) ^ 1)
                lines[index] = line.replace(fields[1], moved, 1)
                edited.append(moved)
        return "\n".join(lines).encode()

    changed = rebuilt(out, tmp_path / "edited.tar.gz", edit)
    assert len(edited) == 1
    temporary = tmp_path / "tmp"
    result = compare("--from", changed, "--pid", ME, tmpdir=temporary)
    assert result.returncode == 1, result.stdout + result.stderr
    assert [line for line in result.stdout.splitlines() if line.startswith("differs:")] == [
        "differs: tcp inode %d local: netlink=127.0.0.1:%d procnet=127.0.0.1:%d"
        % (inode, listener.sock.getsockname()[1], listener.sock.getsockname()[1] ^ 1)
    ]
    assert "DISAGREE" in result.stdout.splitlines()[-1] and os.listdir(temporary) == []
    assert compare("--from", out, "--pid", ME, tmpdir=temporary).returncode == 0  # the original agrees


@pytest.mark.parametrize("member, reason", [
    ({"name": "../evil"}, "not a plain relative name"),
    ({"name": "proc/1/fd/3", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, "a link to"),
    ({"name": "proc/dev", "type": tarfile.CHRTYPE}, "neither a file"),
])
def test_hostile_bundles_are_refused_in_one_line_leaving_nothing(tmp_path, member, reason):
    data = b"x" if member.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else None
    path = bundle(tmp_path / "evil.tar.gz", [({"name": "snapshot.json"}, good_snapshot()),
                                             ({"name": "sock_diag"}, b""), (dict(member), data)])
    temporary = tmp_path / "tmp"
    result = compare("--from", path, tmpdir=temporary)
    assert result.returncode == 1 and result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert reason in result.stderr and os.listdir(temporary) == []
    assert not os.path.exists(tmp_path.parent / "evil")


def test_what_is_not_a_bundle_with_both_parts(tmp_path):
    temporary = tmp_path / "tmp"
    saved = tmp_path / "saved.json"
    saved.write_bytes(good_snapshot())
    parts_missing = bundle(tmp_path / "snapshot-only.tar.gz", [({"name": "snapshot.json"}, good_snapshot())])
    for path, reason in ((saved, "not a capture bundle"), (parts_missing, "no sock_diag in it")):
        result = compare("--from", path, tmpdir=temporary)
        assert result.returncode == 1 and result.stderr.splitlines() == [
            "procsock: %s: %s" % (path, result.stderr.split(": ", 2)[2].rstrip("\n"))
        ] and reason in result.stderr, result.stderr
        assert os.listdir(temporary) == []
    with pytest.raises(InputError, match="no sock_diag"):
        compare_backends(default_registry(), None, bundle=parts_missing)
    usage = compare("--from", saved, "--proc-root", "/proc", tmpdir=temporary)
    assert usage.returncode == 2 and "--from" in usage.stderr and "--proc-root" in usage.stderr
