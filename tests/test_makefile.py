"""The Makefile is the user's interface: `make` alone explains it, and `down` is harmless."""

from __future__ import annotations

import os
import re
import subprocess

from tests.support import ROOT

PUBLIC = ["up", "down", "restart", "status", "logs", "test", "lint", "check", "clean"]


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)


def test_make_alone_prints_help_for_every_public_target():
    out = make().stdout
    for target in PUBLIC:
        assert re.search(rf"^  make {target}\s+\S", out, re.M), target


def test_every_target_with_a_recipe_is_documented_or_hidden():
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", text, re.M))
    documented = set(re.findall(r"^([a-z][a-z-]*):.*## ", text, re.M))
    assert targets == documented


def test_down_when_nothing_runs_is_harmless(tmp_path):
    result = make("down", TWINSTACK_RUN_DIR=str(tmp_path / "run"), TWINSTACK_LOG_DIR=str(tmp_path / "logs"))
    assert result.returncode == 0
    assert "not running" in result.stdout
