"""The smallest variants `copier copy` makes, started and tested: each half alone and both
together, without the optional parts (lab, monitoring). With every part, the variants are
tests/test_halves.py's copies (shown there to be the trees Copier makes) and this repository
itself (tests/test_template.py shows it is the default variant), whose full suite is this one.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.parts import commit, generate, running, snapshot


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def shared_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One virtualenv for the variants below (make VENV=...): each project's make installs
    itself and its requirements into it, which is quick once the packages are there. The
    halves' own virtualenvs, built from nothing, are tests/test_halves.py's."""
    return tmp_path_factory.mktemp("variants") / "venv"


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("halves", ["both", "async", "sync"])
def test_each_variant_without_the_optional_parts_starts_and_passes_its_tests(
    template: Path, tmp_path: Path, shared_venv: Path, nginx_bin: str, halves: str
):
    """No lab, no monitoring: `make up` in the generated project, a smoke run through nginx,
    and the project's own tests of its parts. (With every part: the halves' copies in
    tests/test_halves.py, and this repository itself, are those variants.)"""
    project = generate(
        template, tmp_path / "project", project_name="shop-api", halves=halves, lab=False, monitoring=False
    )
    commit(project, "generated")  # a project is kept in git (tests/test_paths.py reads its files from it)
    kept = ["async", "sync"] if halves == "both" else [halves]
    with running(project, venv=shared_venv) as stack:
        with httpx.Client(base_url=stack.base_url, timeout=10) as client:
            assert client.get("/").status_code == 200
            for prefix in ("async", "sync"):
                expected = 200 if prefix in kept else 404
                assert client.get(f"/{prefix}/ready").status_code == expected
                assert client.get(f"/{prefix}/io?delay_ms=5").status_code == expected
        # Without the lab, make offers no lab target; without monitoring, MONITORING=1 says so.
        assert "make bench" not in stack.make("help").stdout
        monitoring = stack.make("up", "MONITORING=1")
        assert monitoring.returncode != 0 and "no monitoring" in monitoring.stdout + monitoring.stderr
        tests = [f"tests/{package}" for package in ("fastapi_service", "flask_service", "contract")]
        tests = [name for name in tests if (project / name).is_dir()] + ["tests/twinstack_runtime", "tests/docker"]
        tests += ["tests/nginx/test_config.py", "tests/test_timeouts.py", "tests/test_paths.py"]
        run = stack.pytest(*tests)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
