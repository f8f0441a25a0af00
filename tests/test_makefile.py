"""The Makefile is the user's interface: `make` alone explains it, and `down` is harmless.

Every make here goes through ``make()``, which runs the native runner only: on a machine with
a Docker engine, make's default runner is Docker Compose, and a `make down` from the tests
would stop the user's own Compose stack. Only a dry run (``-n``: the commands printed, none
executed) may name the Docker runner, or let make choose one.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

PUBLIC = ["up", "down", "restart", "reload", "status", "logs", "test", "lint", "check", "clean"]
DRY_RUN = "-n"
# Inherited from a make that runs these tests (`make test STACK=docker`), they would reach the
# make started here: MAKEFLAGS carries the caller's command-line variables.
INHERITED = ("STACK", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def make(*args: str, stack: str | None = "native", **env: str) -> subprocess.CompletedProcess[str]:
    """``make -s ARGS STACK=native``; another ``stack`` (or None: make's own choice) only with -n."""
    assert not any(arg.startswith("STACK=") for arg in args) and "STACK" not in env, "pass stack=, not STACK="
    assert stack == "native" or DRY_RUN in args, f"only a dry run (-n) may run make with STACK={stack}"
    argv = ["make", "-s", *args, *([f"STACK={stack}"] if stack else [])]
    environ = {k: v for k, v in os.environ.items() if k not in INHERITED}
    result = subprocess.run(argv, cwd=ROOT, env={**environ, **env}, capture_output=True, text=True)
    # Optional arguments leave double spaces in a dry run's commands: compare words.
    result.stdout = "\n".join(" ".join(line.split()) for line in result.stdout.splitlines())
    return result


def test_make_is_only_ever_run_through_the_helper():
    """No call in this file but make()'s own starts make: a new test cannot run a target
    without STACK=native by calling subprocess (or a shell) itself."""
    tree = ast.parse(Path(__file__).read_text())
    helper = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "make")
    inside = {id(node) for node in ast.walk(helper)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args or id(node) in inside:
            continue
        command = node.args[0]
        if isinstance(command, ast.Constant) and isinstance(command.value, str):
            words = command.value.split()  # a shell command line
        else:
            words = [e.value for e in getattr(command, "elts", []) if isinstance(e, ast.Constant)]
        assert "make" not in words, f"line {node.lineno}: run make through make(), which adds STACK=native"


# A harmless target: were the guard broken, these would only print the help.
@pytest.mark.parametrize(
    "call",
    [lambda: make("help", stack="docker"), lambda: make("help", stack=None), lambda: make("help", "STACK=docker"),
     lambda: make("help", STACK="docker")],
    ids=["docker", "make-chooses", "stack-in-args", "stack-in-env"],
)  # fmt: skip
def test_the_helper_refuses_to_run_a_target_on_another_stack(call):
    with pytest.raises(AssertionError, match="STACK"):
        call()


def test_make_alone_prints_help_for_every_public_target():
    out = make().stdout
    for target in PUBLIC:
        assert re.search(rf"^make {target} \S", out, re.M), target


def test_every_target_with_a_recipe_is_documented_or_hidden():
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", text, re.M))
    documented = set(re.findall(r"^([a-z][a-z-]*):.*## ", text, re.M))
    assert targets == documented


@pytest.fixture
def docker_machine(tmp_path: Path) -> dict[str, str]:
    """A PATH on which `docker info` succeeds, as on a machine with a Docker engine (where make
    would pick the Compose runner), and any other docker command is only written down, never
    run: whatever a test gets wrong, the user's real stack is out of its reach."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path / "docker-calls"}"\nexit 0\n')
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "calls": str(tmp_path / "docker-calls")}


def docker_calls(machine: dict[str, str]) -> list[str]:
    calls = Path(machine["calls"])
    return calls.read_text().splitlines() if calls.exists() else []


def test_on_a_docker_machine_make_would_choose_compose_but_the_tests_run_native(docker_machine):
    assert "(runner: docker)" in make(DRY_RUN, "help", stack=None, PATH=docker_machine["PATH"]).stdout
    down = make(DRY_RUN, "down", PATH=docker_machine["PATH"]).stdout
    assert "-m native down" in down and "docker" not in down


def test_down_when_nothing_runs_is_harmless(tmp_path, docker_machine):
    result = make(
        "down",
        TWINSTACK_RUN_DIR=str(tmp_path / "run"),
        TWINSTACK_LOG_DIR=str(tmp_path / "logs"),
        PATH=docker_machine["PATH"],
    )
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout
    assert not [call for call in docker_calls(docker_machine) if call != "info"]


def test_stack_choice_drives_every_lifecycle_target():
    for target, docker_cmd in (
        ("up", "docker compose up -d --build --wait"),
        ("down", "docker compose --profile loadtest --profile monitoring down"),
        ("status", "docker compose --profile loadtest --profile monitoring ps"),
        ("logs", "docker compose --profile loadtest --profile monitoring logs -f"),
    ):
        assert docker_cmd in make(DRY_RUN, target, stack="docker").stdout, target
        native = make(DRY_RUN, target).stdout
        assert "docker compose" not in native and "native" in native, target
        kubernetes = make(DRY_RUN, target, "OVERLAY=production", stack="kubernetes").stdout
        assert f"OVERLAY=production scripts/kubernetes.sh {target}" in kubernetes, target


@pytest.mark.parametrize(("engine_answers", "expected"), [(True, "docker"), (False, "native")])
def test_make_picks_docker_when_an_engine_answers_and_native_mode_otherwise(
    tmp_path: Path, engine_answers: bool, expected: str
):
    """Whatever this machine has: a `docker` first on the PATH whose `docker info` succeeds, or
    fails (a client without an engine), decides the runner. Dry run: nothing runs."""
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\n[ "$1" = info ] && exit {0 if engine_answers else 1}\nexit 2\n')
    docker.chmod(0o755)
    result = make(DRY_RUN, "help", stack=None, PATH=f"{tmp_path}:{os.environ['PATH']}")
    assert f"(runner: {expected})" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("stack", ["podman", "k8s", "Native"])
def test_an_unknown_stack_is_a_clear_error(stack):
    result = make(DRY_RUN, "up", stack=stack)  # refused while the Makefile is read
    assert result.returncode != 0
    assert f"STACK must be docker, native or kubernetes, not '{stack}'" in result.stderr


def test_monitoring_switch():
    assert (
        "docker compose --profile monitoring up -d --build --wait"
        in make(DRY_RUN, "up", "MONITORING=1", stack="docker").stdout
    )
    native = make(DRY_RUN, "up", "MONITORING=1").stdout
    assert "prometheus prometheus-nginx-exporter" in native and "TWINSTACK_MONITORING=1" in native


def test_tls_switch():
    """make up TLS=1: HTTPS natively (TWINSTACK_TLS=true), the certificate made first if there
    is none; under Compose the TLS override. TLS=0 turns a .env's TWINSTACK_TLS=true off."""
    certificate = ROOT / "nginx" / "tls" / "certs" / "tls.crt"
    native = make(DRY_RUN, "up", "TLS=1").stdout
    assert "TWINSTACK_TLS=true" in native and " -m native up" in native
    assert ("-m native tls-cert" in native) == (not certificate.exists())
    assert "TWINSTACK_TLS=false" in make(DRY_RUN, "up", "TLS=0").stdout
    assert "TWINSTACK_TLS" not in make(DRY_RUN, "up").stdout
    for target in ("status", "reload", "loadtest"):
        assert "TWINSTACK_TLS=true" in make(DRY_RUN, target, "TLS=1").stdout, target
    docker = make(DRY_RUN, "up", "TLS=1", stack="docker").stdout
    assert "docker compose -f docker-compose.yml -f docker-compose.tls.yml up -d --build --wait" in docker
