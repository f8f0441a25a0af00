"""Each one-half project `copier copy` makes passes its own CI, as its team's runs it:
`CI=true bash .ci/run` in the generated project builds its own virtualenv, lints, and runs its
tests (no list of test names here: the project's tests are the files its parts gave it), then
`make up` starts it and it answers through nginx for its half only.

The project's runs here leave out its `integration` tests (each starts stacks of its own) and
the faults repeated over runs or loads (`repeated`): with them, the two projects double this
suite's time on a 2-CPU machine. This repository's own suite runs every integration test, on
each half, from the same files. The two halves cover both monitoring answers; the default
variant is this repository (tests/test_template.py shows it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.parts import commit, generate, running, snapshot
from tests.support import ROOT
from tests.test_template import RUN_VARIANTS, holds_the_files_of_its_parts

# The project's own runner, on one test process: it shares the machine with the rest of this
# suite (and with the other half's project), which keeps both CPUs busy; a second process
# would only collect the project's tests once more.
INNER_WORKERS = "1"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot(tmp_path_factory.mktemp("template"))


def passes_its_own_ci(template: Path, dest: Path, answers: dict) -> None:
    project = generate(template, dest, project_name="shop-api", **answers)
    holds_the_files_of_its_parts(project, answers)  # tests/test_template.py's check of every variant
    commit(project, "generated")  # a team's first commit (tests/test_paths.py reads its files from git)
    # checkov's virtualenv is this repository's (its requirements are the same file): a project
    # builds its own the same way, but it takes a minute, and the suite's time is counted.
    (project / ".venv-checkov").symlink_to(ROOT / ".venv-checkov")
    requirements = project / "deploy/kubernetes/requirements-checkov.txt"  # the same as ours: up to date
    stamp = (ROOT / ".venv-checkov/bin/checkov").stat().st_mtime
    os.utime(requirements, (stamp - 1, stamp - 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINSTACK_", "VIRTUAL_ENV", "PYTEST_"))}
    env |= {"PYTHON": sys.executable, "TEST_WORKERS": INNER_WORKERS, "TEST_MARKERS": "not integration and not repeated"}
    run = subprocess.run(
        ["bash", ".ci/run"], cwd=project, env=env, capture_output=True, text=True, timeout=540
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-3000:]
    # Not vacuous: the project ran its tests (under CI=true a skip fails them).
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]
    half = answers["halves"]
    with running(project) as stack, httpx.Client(base_url=stack.base_url, timeout=10) as client:
        assert client.get("/").status_code == 200
        for prefix in ("async", "sync"):
            expected = 200 if prefix == half else 404
            assert client.get(f"/{prefix}/ready").status_code == expected, prefix
            assert client.get(f"/{prefix}/orders?limit=1").status_code == expected, prefix


# One class a half: `make test` hands each class to a process of its own (--dist loadscope).
@pytest.mark.integration
@pytest.mark.timeout(600)
class TestAsyncProject:
    def test_an_async_project_with_monitoring_passes_its_own_ci(self, template: Path, tmp_path: Path):
        assert RUN_VARIANTS[0]["halves"] == "async"
        passes_its_own_ci(template, tmp_path / "project", RUN_VARIANTS[0])


@pytest.mark.integration
@pytest.mark.timeout(600)
class TestSyncProject:
    def test_a_sync_project_without_monitoring_passes_its_own_ci(self, template: Path, tmp_path: Path):
        assert RUN_VARIANTS[1]["halves"] == "sync"
        passes_its_own_ci(template, tmp_path / "project", RUN_VARIANTS[1])
