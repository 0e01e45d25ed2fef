"""The commands of `procsock`: each listed by --help with its own --help, the default command,
shared options before or after the command name, and the option spellings of commands."""

import os
import re
import subprocess
import sys

import pytest

from procsock.cli import COMMANDS, DEFAULT
from procsock.cli.options import GROUPS

CAPTURE = os.path.join(os.path.dirname(__file__), "fixtures", "capture")


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "procsock", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_help_lists_every_command_with_its_help():
    helped = run("--help")
    assert helped.returncode == 0 and helped.stderr == ""
    for name, module in COMMANDS.items():
        assert re.search(r"^  %s +%s$" % (re.escape(name), re.escape(module.HELP)), helped.stdout, re.M), name
    assert "default: %s" % DEFAULT in helped.stdout


def _flags(takes):
    return {flag for name, group in GROUPS.items() if name in takes for option in group.options
            if takes[name] is None or option.dest in takes[name] for flag in option.flags}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_a_help_with_the_options_it_takes_and_no_other(name):
    helped = run(name, "--help")
    assert helped.returncode == 0 and helped.stderr == ""
    assert helped.stdout.startswith("usage: procsock %s " % name)
    shown = set(re.findall(r"(?<![\w-])(--?[\w-]+)", helped.stdout))
    taken = _flags(COMMANDS[name].OPTIONS)
    every = _flags({group: None for group in GROUPS})
    assert taken and taken <= shown and not (every - taken) & shown
    assert {"-h", "--help", "--debug"} <= shown


def test_help_is_as_wide_as_argparse_makes_it(monkeypatch):
    """procsock finds the terminal's width without shutil: its help is the text argparse's own
    formatter (which asks shutil) writes, for any $COLUMNS."""
    import argparse

    from procsock.cli import _main_parser, command_parser
    from procsock.cli.options import Parser

    parsers = (_main_parser(), command_parser("compare"))
    ours, argparses = {}, {}
    for columns in (None, "52", "131", "0", "wide"):
        if columns is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", columns)
        ours[columns] = [parser.format_help() for parser in parsers]
        with monkeypatch.context() as patched:
            patched.setattr(Parser, "_get_formatter", argparse.ArgumentParser._get_formatter)
            argparses[columns] = [parser.format_help() for parser in parsers]
    assert ours == argparses
    assert len({tuple(texts) for texts in ours.values()}) == 3  # 52, 131, and 80 for the others


def test_the_default_commands_options_are_the_top_levels():
    assert _flags(COMMANDS[DEFAULT].OPTIONS) <= set(re.findall(r"(?<![\w-])(--?[\w-]+)", run("--help").stdout))


@pytest.mark.parametrize("argv", [
    ["-tl", "--pid", "PID"],
    ["list", "-tl", "--pid", "PID"],
    ["-t", "list", "-l", "--pid", "PID"],
    ["--pid", "PID", "-tl", "list"],
    ["--pid=PID", "-lt"],
])
def test_the_default_command_is_list_wherever_its_word_is_and_without_it(zoo, argv):
    proc = run(*[a.replace("PID", str(os.getpid())) for a in argv])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:2] == ["Netid", "State"]
    listeners = [i for i in zoo.expected if i.kind.startswith("tcp") and i.state.name == "LISTEN"]
    assert listeners and sorted(int(row.split()[6]) for row in lines[1:]) == sorted(i.inode for i in listeners)


@pytest.mark.parametrize("argv, code, says", [
    (["--pid", "compare"], 2, "argument --pid: invalid int value: 'compare'"),
    (["--kind", "backends"], 2, "bad kind 'backends'"),
    (["--proc-root", "compare"], 1, "proc root compare is not a directory"),
    (["nosuch"], 2, "'nosuch' is neither a command (list, backends, compare, "),
])
def test_a_command_name_as_an_options_value_is_that_value(argv, code, says):
    proc = run(*argv)
    assert (proc.returncode, proc.stdout) == (code, "")
    assert proc.stderr.splitlines() == [proc.stderr.splitlines()[0]] and says in proc.stderr


@pytest.mark.parametrize("argv", [
    ["--debug", "compare", "nope"],
    ["compare", "--debug", "nope"],
    ["compare", "nope", "--debug"],
    ["--debug", "save-diag", "/nonexistent/dir/saved.diag", "-x"],
    ["save-diag", "/nonexistent/dir/saved.diag", "--debug"],
    ["--proc-root", CAPTURE, "--debug", "save-diag", "/nonexistent/dir/saved.diag"],
])
def test_shared_options_count_before_and_after_the_command_name(argv):
    failed = run(*argv)
    assert failed.returncode == 1 and "Traceback (most recent call last)" in failed.stderr


@pytest.mark.parametrize("argv", [
    ["--disable-plugin", "netlink", "backends"],
    ["backends", "--disable-plugin", "netlink"],
    ["--disable-plugin", "netlink", "--list-backends"],
])
def test_backends_takes_disable_plugin_before_and_after_its_name(argv):
    listed = run(*argv)
    assert listed.returncode == 0 and listed.stdout
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert "netlink" not in names and "netlink" in [line.split()[0] for line in run("backends").stdout.splitlines()]


@pytest.mark.parametrize("before", [True, False])
def test_compare_takes_disable_plugin(zoo, before):
    disable = ["--disable-plugin", "netlink"]
    proc = run(*(disable + ["compare"] if before else ["compare"] + disable), "netlink", "procnet", "--kind", "tcp")
    assert proc.returncode == 1 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("procsock: backend netlink unavailable: no such backend (installed: ")
    assert "netlink" not in line.split("installed: ")[1]
    # without the option the same comparison runs: the option, not the name, made netlink absent
    assert run("compare", "netlink", "procnet", "--kind", "tcp", "--pid", os.getpid()).stdout


@pytest.mark.parametrize("argv, says", [
    (["backends", "-t"], "unrecognized arguments: -t"),
    (["-t", "backends"], "unrecognized arguments: -t"),
    (["backends", "--backend", "netlink"], "unrecognized arguments: --backend netlink"),
    (["compare", "--port", "22"], "unrecognized arguments: --port"),
    (["--jsonl", "compare"], "unrecognized arguments: --jsonl"),
    (["save-diag", "F", "--json"], "unrecognized arguments: --json"),
    (["compare", "--list-backends"], "--list-backends is the backends command: give no other command"),
    (["--save-diag", "F", "compare"], "unrecognized arguments: compare"),
    (["backends", "--save-diag", "F"], "--save-diag is the save-diag command: give no other command"),
    (["--list-backends", "--list-backends"], "--list-backends is the backends command: give no other command"),
])
def test_an_option_a_command_would_ignore_is_refused(argv, says):
    proc = run(*argv)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == ["procsock: " + says]


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "host.diag"
    path.write_bytes(b"what was saved before")
    return path


@pytest.mark.parametrize("alias, command", [
    (["--list-backends"], ["backends"]),
    (["--proc-root", CAPTURE, "--list-backends"], ["backends", "--proc-root", CAPTURE]),
    (["--list-backends", "--disable-plugin", "pidfd"], ["--disable-plugin", "pidfd", "backends"]),
    (["--proc-root", CAPTURE, "--save-diag", "SAVED"], ["save-diag", "SAVED", "--proc-root", CAPTURE]),
    (["--save-diag=SAVED", "--proc-root", CAPTURE], ["--proc-root", CAPTURE, "save-diag", "SAVED"]),
    (["--diag-file", "SAVED", "--save-diag", "SAVED"], ["save-diag", "--diag-file", "SAVED", "SAVED"]),
    (["--save-diag", "/nonexistent/dir/x.diag", "-t"], ["save-diag", "-t", "/nonexistent/dir/x.diag"]),
    (["--save-diag", "SAVED", "--kind", "nosuch"], ["save-diag", "SAVED", "--kind", "nosuch"]),
])
def test_the_option_spellings_of_commands_do_what_the_commands_do(saved, alias, command):
    spelled, named = ([a.replace("SAVED", str(saved)) for a in argv] for argv in (alias, command))
    by_alias, by_name = run(*spelled), run(*named)
    assert (by_alias.returncode, by_alias.stdout, by_alias.stderr) == (by_name.returncode, by_name.stdout,
                                                                     by_name.stderr)
    assert by_alias.stdout or by_alias.returncode != 0
    assert saved.read_bytes() == b"what was saved before"


def test_a_save_by_either_spelling_says_what_it_saved(tmp_path):
    said = []
    for argv in (["--save-diag", tmp_path / "a.diag", "-x"], ["-x", "save-diag", tmp_path / "b.diag"]):
        proc = run(*argv)
        assert proc.returncode == 0 and proc.stdout == "", proc.stderr
        said.append(re.sub(r"\d+ network|\S+\.diag", "X", proc.stderr.splitlines()[-1]))  # after any notes
    assert said[0] == said[1] and said[0].startswith("procsock: saved unix")
    assert (tmp_path / "a.diag").stat().st_size and (tmp_path / "b.diag").stat().st_size


def test_a_file_after_double_dash_is_a_file_even_if_it_looks_like_an_option(tmp_path):
    proc = run("-x", "save-diag", "--", "-x.diag", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "-x.diag").stat().st_size and sorted(os.listdir(tmp_path)) == ["-x.diag"]


def test_the_readme_lists_every_command():
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8") as f:
        listed = re.findall(r"^\| `procsock \[?([a-z][a-z-]*)", f.read(), re.M)  # command words, not options
    assert listed == list(COMMANDS)
