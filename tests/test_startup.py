"""A light start-up: `import procsock`, `procsock --help` and the bare `procsock` command import
only what the run needs. Which modules a run imports is checked (deterministic), never how long
it takes (bench/ measures that)."""

import logging
import os
import pickle
import subprocess
import sys
import textwrap

import procsock
from procsock import log

# Not needed by a table of every socket: each would be imported for nothing (some only in rare
# cases: ctypes to compare threads' fd tables or copy an fd, threading to enter a namespace).
NOT_FOR_THE_TABLE = {
    "logging", "ipaddress", "secrets", "random", "hashlib", "tempfile", "json",
    "procsock.details", "procsock.compare", "procsock.cli.logs", "procsock.filter",
}
NOT_TO_START = NOT_FOR_THE_TABLE | {"ctypes"}
NOT_FOR_HELP = NOT_TO_START | {
    "pluggy", "procsock.api", "procsock.backends", "procsock.fdscan", "procsock.resolver", "procsock_plugins",
    # nor the model, nor what it is made with: parsing the command line (and --help) needs none of it
    "attr", "attrs", "typing", "procsock.model", "procsock.render",
    "shutil",  # argparse's way to the terminal's width, with zlib, bz2 and lzma (procsock.cli.options)
}


def imported_by(code, tmp_path, *args, forget=()):
    """The modules that running `code` (with `argv`) imports, beyond those the interpreter had
    at its start (a site hook may import some of them: they are no finding), except those named
    in `forget`, which are dropped from sys.modules first: an import of them is seen even where a
    site hook had made it already (this machine's imports typing at every start)."""
    listing = tmp_path / "modules.txt"
    program = "import sys\nfor name in %r:\n    sys.modules.pop(name, None)\nbefore = set(sys.modules)\n%s\n" \
              "with open(%r, 'w') as f:\n    f.write('\\n'.join(sorted(set(sys.modules) - before)))\n" % (
                  sorted(forget), textwrap.dedent(code), str(listing))
    subprocess.run([sys.executable, "-c", program, *args], stdout=subprocess.DEVNULL, check=True, timeout=120)
    return set(listing.read_text().split("\n"))


def test_starting_the_bare_command_imports_no_more_than_it_needs(tmp_path):
    # the command's start: its modules, its arguments, its plugins, the resolver they make
    imported = imported_by("""
        from procsock.cli import options, parse
        from procsock.resolver import Resolver
        name, args = parse([])
        Resolver(*options.resolving(args)[:2], args.backend)
    """, tmp_path)
    assert {"procsock.cli", "procsock.resolver", "procsock_plugins.netlink", "procsock_plugins.pidfd"} <= imported
    assert not imported & NOT_TO_START


def test_the_bare_command_imports_nothing_the_table_does_not_need(tmp_path):
    imported = imported_by("""
        import os, sys
        from procsock.cli import main
        sys.stdout = open(os.devnull, "w")
        assert main([]) == 0
    """, tmp_path)
    assert {"procsock.render", "procsock_plugins.netlink.transport"} <= imported
    assert not imported & NOT_FOR_THE_TABLE


def test_help_imports_neither_the_model_nor_the_plugin_machinery(tmp_path):
    imported = imported_by("""
        from procsock.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
    """, tmp_path, forget=NOT_FOR_HELP)
    assert "argparse" in imported and "procsock.cli.list" in imported
    assert not imported & NOT_FOR_HELP


def test_the_detail_classes_are_made_on_first_use_and_are_the_models(tmp_path):
    imported = imported_by("""
        import procsock.plugin
        import procsock_plugins.netlink.codec
        from procsock.model import SocketRecord
        assert "procsock.details" not in sys.modules
        procsock.plugin.Extended
    """, tmp_path)
    assert {"procsock.model", "procsock.details"} <= imported
    from procsock.model import Extended, MemInfo, TcpInfo
    from procsock.plugin import Extended as PluginExtended

    assert procsock.Extended is PluginExtended is Extended and procsock.TcpInfo is TcpInfo
    details = Extended(tcp_info=TcpInfo(rtt=120, snd_wscale=7), meminfo=MemInfo(rcvbuf=4096), pending=(5, 6))
    pickled = pickle.dumps(details)
    assert b"procsock.model" in pickled and b"procsock.details" not in pickled  # as before they moved
    again = pickle.loads(pickled)
    assert again == details and hash(again) == hash(details) and repr(again) == repr(details)


def test_debug_messages_reach_a_listener_from_where_they_were_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="procsock"):
        log.debug("backend %s failed", "x\x1b")
    (record,) = caplog.records
    assert record.name == "procsock" and record.getMessage() == "backend x\x1b failed"
    assert record.funcName == "test_debug_messages_reach_a_listener_from_where_they_were_logged"


def test_debug_messages_import_no_logging(tmp_path):
    imported = imported_by("""
        from procsock import log
        log.debug("nobody listens: %s", 1)
    """, tmp_path)
    assert "procsock.log" in imported and "logging" not in imported


def test_a_plugins_warnings_reach_stderr_escaped_without_debug(tmp_path):
    """Without --debug procsock leaves logging alone, but a plugin that imported it has its records
    go through the command's escaping handler, not raw through logging's last resort."""
    meta = tmp_path / "procsock_warner-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: procsock-warner\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[procsock]\nwarner = procsock_warner\n")
    (tmp_path / "procsock_warner.py").write_text(textwrap.dedent("""
        import logging
        from procsock.plugin import TCP, BackendInfo, hookimpl

        @hookimpl
        def procsock_backend_info():
            return BackendInfo(name="warner", priority=1, kinds=(TCP,))

        @hookimpl
        def procsock_unavailable(source):
            logging.getLogger("procsock_warner").warning("cannot read %s", source.proc_root)
            return "it only warns"
    """))
    capture = tmp_path / "cap\x1b[2Jture\nx"  # a name that came from somewhere untrusted
    capture.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "procsock", "--list-backends", "--proc-root", str(capture)], capture_output=True,
        text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(tmp_path)), check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stderr
    assert "procsock: cannot read %s/cap\\x1b[2Jture\nx\n" % tmp_path in run.stderr  # escaped line by line
