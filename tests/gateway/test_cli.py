"""The ``schakel`` command as operators use it: help everywhere, completion, a closed pipe."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import EXIT_BROKEN_PIPE, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"}


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command that runs something, with its words after ``schakel``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from leaves(sub, (*path, name))
    if parser.get_default("func") is not None:
        yield " ".join(path), parser


def test_every_command_has_a_description_examples_and_help_on_every_option() -> None:
    found = dict(leaves(build_parser()))
    assert len(found) == 37, sorted(found)
    for name, parser in found.items():
        assert parser.description, f"schakel {name}: no description"
        assert parser.epilog and parser.epilog.startswith("examples:\n  "), name
        assert f"schakel {name}" in parser.epilog.replace("  ", " "), name
        assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, name
        assert max(len(line) for line in parser.epilog.splitlines()) <= 100, name
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"schakel {name}: {action.dest} has no help"


def test_options_say_their_format() -> None:
    found = dict(leaves(build_parser()))
    collect = found["signals collect"].format_help()
    assert "YYYY-MM-DD (inclusive)" in collect and "YYYY-MM-DD (exclusive)" in collect
    query = found["audit query"].format_help()
    assert "sqlite:///path/node.db" in query and "ISO 8601" in query and "10,000" in query
    assert "its folder is created" in found["certs pep domain"].format_help()


@pytest.mark.parametrize(
    ("argv", "shows"),
    [
        ([], "usage: schakel [-h] [--version] AREA"),
        (["audit"], "usage: schakel audit [-h] COMMAND"),
    ],
)
def test_a_command_line_without_a_command_prints_help_and_exits_2(
    argv: list[str], shows: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert out.startswith(shows)
    assert "-h, --help" in out


def test_a_closed_pipe_ends_quietly() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, like `| head -0`
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "policy",
                "validate",
                str(ROOT / "policy" / "bundles" / "baseline" / "bundle.yaml"),
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            env=ENV,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.stderr.decode() == ""
    assert done.returncode == EXIT_BROKEN_PIPE


def test_tab_completion_offers_the_areas_and_commands(tmp_path: Path) -> None:
    pytest.importorskip("argcomplete")
    out = tmp_path / "completions"
    line = "schakel audit ve"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli"],
        env=ENV
        | {
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
        },
        cwd=ROOT,
        timeout=60,
        check=False,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_text().split() == ["verify"]
