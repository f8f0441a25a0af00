"""Each one-half project `copier copy` makes passes its own suite, as its team's CI runs it:
`CI=true bash .ci/run` in the generated project, which builds its own virtualenv, lints, and runs
every test the project has (no list of test names here: the project's tests are the files its
parts gave it). Left out, and run by this repository's own suite, which is the default variant's:
the faults repeated over several runs or loads (marker `repeated`).

The two halves cover both monitoring answers; the default variant with every part is this
repository (tests/test_template.py shows it), and the file lists of the others are
tests/test_template.py's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.parts import commit, generate, snapshot
from tests.support import ROOT

# The project's own runner, at half this machine's test processes: it shares the machine with
# the rest of this suite (and with the other half's project).
INNER_WORKERS = "2"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot(tmp_path_factory.mktemp("template"))


def passes_its_own_ci(template: Path, dest: Path, **answers: object) -> None:
    project = generate(template, dest, project_name="shop-api", lab=False, **answers)
    commit(project, "generated")  # a team's first commit (tests/test_paths.py reads its files from git)
    # checkov's virtualenv is this repository's (its requirements are the same file): a project
    # builds its own the same way, but it takes a minute, and the suite's time is counted.
    (project / ".venv-checkov").symlink_to(ROOT / ".venv-checkov")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINSTACK_", "VIRTUAL_ENV", "PYTEST_"))}
    env |= {"PYTHON": sys.executable, "TEST_WORKERS": INNER_WORKERS, "TEST_MARKERS": "not repeated"}
    run = subprocess.run(
        ["bash", ".ci/run"], cwd=project, env=env, capture_output=True, text=True, timeout=1500
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-3000:]
    # Not vacuous: the project ran its tests (under CI=true a skip fails them).
    assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout[-2000:]


# One class a half: `make test` hands each class to a process of its own (--dist loadscope).
@pytest.mark.integration
@pytest.mark.timeout(1500)
class TestAsyncProject:
    def test_an_async_project_with_monitoring_passes_its_own_ci(self, template: Path, tmp_path: Path):
        passes_its_own_ci(template, tmp_path / "project", halves="async", monitoring=True)


@pytest.mark.integration
@pytest.mark.timeout(1500)
class TestSyncProject:
    def test_a_sync_project_without_monitoring_passes_its_own_ci(self, template: Path, tmp_path: Path):
        passes_its_own_ci(template, tmp_path / "project", halves="sync", monitoring=False)
