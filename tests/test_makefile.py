"""The Makefile is the user's interface: `make` alone explains it, and `down` is harmless."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.support import ROOT

PUBLIC = ["up", "down", "restart", "reload", "status", "logs", "test", "lint", "check", "clean"]


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["make", "-s", *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    # Optional arguments leave double spaces in a dry run's commands: compare words.
    result.stdout = "\n".join(" ".join(line.split()) for line in result.stdout.splitlines())
    return result


def test_make_alone_prints_help_for_every_public_target():
    out = make().stdout
    for target in PUBLIC:
        assert re.search(rf"^make {target} \S", out, re.M), target


def test_every_target_with_a_recipe_is_documented_or_hidden():
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", text, re.M))
    documented = set(re.findall(r"^([a-z][a-z-]*):.*## ", text, re.M))
    assert targets == documented


def test_down_when_nothing_runs_is_harmless(tmp_path):
    result = make("down", TWINSTACK_RUN_DIR=str(tmp_path / "run"), TWINSTACK_LOG_DIR=str(tmp_path / "logs"))
    assert result.returncode == 0
    assert "not running" in result.stdout


def test_stack_choice_drives_every_lifecycle_target():
    for target, docker_cmd in (
        ("up", "docker compose up -d --build --wait"),
        ("down", "docker compose --profile loadtest --profile monitoring down"),
        ("status", "docker compose --profile loadtest --profile monitoring ps"),
        ("logs", "docker compose --profile loadtest --profile monitoring logs -f"),
    ):
        assert docker_cmd in make("-n", target, "STACK=docker").stdout, target
        native = make("-n", target, "STACK=native").stdout
        assert "docker compose" not in native and "native" in native, target


def test_without_a_docker_engine_make_uses_native_mode():
    # This machine has the docker client at most, no engine: `docker info` fails.
    engine = (
        subprocess.run(["docker", "info"], capture_output=True).returncode == 0 if shutil.which("docker") else False
    )
    expected = "docker" if engine else "native"
    assert f"(runner: {expected})" in make("help").stdout


def test_an_unknown_stack_is_a_clear_error():
    result = make("up", "STACK=kubernetes")
    assert result.returncode != 0
    assert "STACK must be docker or native" in result.stderr


def test_monitoring_switch():
    assert (
        "docker compose --profile monitoring up -d --build --wait"
        in make("-n", "up", "STACK=docker", "MONITORING=1").stdout
    )
    native = make("-n", "up", "STACK=native", "MONITORING=1").stdout
    assert "prometheus prometheus-nginx-exporter" in native and "TWINSTACK_MONITORING=1" in native
