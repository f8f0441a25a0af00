"""native/ by concern: one module a concern, a command table that ``python -m native --help``
prints one line a command, each "not installed" sentence written once, and no import cycle."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from native.cli import COMMANDS
from tests.support import ROOT, imports_of, modules
from tests.support import native_cli as native

NATIVE = ROOT / "native"


def test_help_lists_every_command_on_one_line_at_80_columns():
    result = native("--help")
    assert result.returncode == 0, result.stderr
    for name, command in COMMANDS.items():
        assert re.search(rf"^ +{re.escape(name)} +{re.escape(command.help)}$", result.stdout, re.M), name


def test_every_native_command_the_makefiles_run_is_in_the_table():
    text = "".join(path.read_text() for path in (ROOT / "Makefile", *ROOT.glob("*/*.mk")))
    used = set(re.findall(r"-m native ([a-z][a-z-]*)", text))
    assert {"up", "down", "status"} <= used and used <= set(COMMANDS), used - set(COMMANDS)


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (module -> the modules it imports), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if found := visit(nxt, [*path, node]):
                return found
        done.add(node)
        return None

    return next((found for node in sorted(graph) if (found := visit(node, []))), None)


def test_the_cycle_check_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_native_modules_import_one_another_without_a_cycle():
    names = {f"native.{path.stem}" for path in modules("native")}
    # A lazy import inside a function counts too: ast sees it (tests/support.py's imported).
    graph = {f"native.{path.stem}": imports_of(path) & names for path in modules("native")}
    assert sum(map(len, graph.values())) > 5  # not vacuous: the modules do import one another
    assert cycle(graph) is None, cycle(graph)


@pytest.mark.parametrize(("command", "what", "variable"), [
    ("up", "nginx", "TWINSTACK_NGINX_BIN"),
    ("check", "nginx", "TWINSTACK_NGINX_BIN"),
    ("render-nginx", "nginx", "TWINSTACK_NGINX_BIN"),
    ("cluster", "PostgreSQL", "TWINSTACK_PG_BIN_DIR"),
])  # fmt: skip
def test_a_missing_program_is_the_same_sentence_whichever_command_needs_it(
    tmp_path: Path, command: str, what: str, variable: str
):
    args = {"render-nginx": [str(tmp_path / "prefix")], "cluster": [str(tmp_path / "pg"), "--port=1"]}
    result = native(
        command, *args.get(command, []),
        TWINSTACK_RUN_DIR=str(tmp_path / "run"), TWINSTACK_LOG_DIR=str(tmp_path / "logs"),
        TWINSTACK_NGINX_BIN=str(tmp_path / "no-nginx"), TWINSTACK_PG_BIN_DIR=str(tmp_path / "no-postgres"),
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {what} is not installed" in result.stderr
    assert "sudo apt-get install" in result.stderr and f"or set {variable}." in result.stderr
    said = [
        path for path in modules("native") if f'"{what}",' in path.read_text() and "_not_installed" in path.read_text()
    ]
    assert [path.name for path in said] == ["preflight.py"]
