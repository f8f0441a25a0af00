"""A half is a set of files: delete one half's files from a copy of the project, and `make up`
starts what is left, which answers through nginx, and the tests of what is left pass.

The copies get a virtualenv of their own, not this checkout's (whose editable install would
answer imports of the deleted package): the first copy's Makefile builds it from nothing, the
way a user's project would, and the second copy's installs itself into it again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from native.settings import HALVES, deployed
from tests.parts import RENDERED, commit, copy_project, generate, half_files, project_files, running, snapshot, tree
from tests.support import ROOT

# What the copy runs after `make up`: every test of the parts that stand alone, checked
# without the private stacks the integration tests start (tests/integration runs them here).
COPY_TESTS = ["tests/docker", "tests/nginx/test_config.py", "tests/test_timeouts.py", "tests/test_paths.py"]


def without(half: str, dest: Path) -> Path:
    """A copy of the project without one half: its files deleted, its include: line removed."""
    copy_project(dest)
    for name in half_files(half):
        path = dest / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (package,) = [h.package for h in HALVES if h.prefix == half]
    compose = dest / "docker-compose.yml"
    line = f"  - {package}/compose.yaml\n"
    assert line in compose.read_text()
    compose.write_text(compose.read_text().replace(line, ""))
    # And the lines that name its files in the Kubernetes kustomizations (README, "Start your own project").
    (program,) = [h.program for h in HALVES if h.prefix == half]
    base = [
        f"  - {program}.yaml\n",
        f"  - {{name: twinstack-{program}, newTag: 0.1.0}}\n",
        f"      - ../../../nginx/templates/{half}.conf.template\n",
        f"      - ../../../nginx/locations/{half}.conf\n",
    ]
    for kustomization, lines in (
        ("deploy/kubernetes/base/kustomization.yaml", base),
        ("deploy/kubernetes/overlays/production/kustomization.yaml", [f"  - {program}.yaml\n"]),
    ):
        path = dest / kustomization
        text = path.read_text()
        for line in lines:
            assert line in text, (kustomization, line)
            text = text.replace(line, "")
        path.write_text(text)
    # A project of its own, under version control as a user's would be.
    commit(dest, f"without the {half} half")
    return dest


def test_the_files_listed_are_every_file_of_each_half():
    """copier.yml's list is the half: every file named after the half's package or program
    elsewhere in the tree is on it, and every entry exists."""
    for half in deployed():
        for name in half_files(half.prefix):
            assert (ROOT / name).exists(), name
        listed = tuple(half_files(half.prefix))
        strays = [
            name
            for name in project_files()
            if (f"/{half.program}." in f"/{name}" or f"{half.package}/" in name or f"/{half.prefix}.conf" in name)
            and not name.startswith(listed)
        ]
        assert not strays, strays


@pytest.fixture(scope="module")
def copies_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One virtualenv for both copies (make VENV=...), built from nothing by the first."""
    return tmp_path_factory.mktemp("halves") / "venv"


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("half", ["async", "sync"])
def test_a_project_without_one_half_starts_and_passes_its_tests(
    tmp_path: Path, half: str, nginx_bin: str, page: Page, copies_venv: Path
):
    project = without(half, tmp_path / "project")
    # A copy keeps its files' times, older than the virtualenv's stamp: made newer, so this
    # copy's Makefile installs this copy (its editable install replaces the other copy's).
    (project / "pyproject.toml").touch()
    kept = [h for h in HALVES if h.prefix != half]
    # The very tree `copier copy` makes with the other half kept (tests/test_template.py shows
    # each variant's files), but for the files it renders the answers into.
    generated = generate(snapshot(tmp_path / "template"), tmp_path / "generated", halves=kept[0].prefix)
    template_only = {"copier.yml", *(name for name in tree(project) if name.endswith(".jinja"))}
    assert tree(generated) - RENDERED == tree(project) - RENDERED - template_only
    with running(project, venv=copies_venv) as stack:
        base = stack.base_url
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/").status_code == 200
            for other in kept:
                assert client.get(f"/{other.prefix}/ready").status_code == 200
                assert client.get(f"/{other.prefix}/io?delay_ms=5").status_code == 200
            gone = client.get(f"/{half}/health")
            assert gone.status_code == 404 and gone.json()["error"]["status"] == 404
        # The landing page shows what is deployed: the lifted-out half's cells are hidden, and
        # every link still shown resolves.
        page.goto(base + "/")
        expect(page.locator(f'th[data-half="{half}"]')).to_be_hidden()
        for other in kept:
            expect(page.locator(f'th[data-half="{other.prefix}"]')).to_be_visible()
        shown = page.eval_on_selector_all("a[href]", "els => els.filter(e => e.offsetParent).map(e => e.href)")
        assert shown and all(f"/{half}/" not in href for href in shown), shown
        # Not checked: /locust (a redirect to the UI's own port), the lab's routes (404 in a
        # deployment, as the page says: TWINSTACK_LAB_ROUTES is off by default).
        for href in sorted(h for h in set(shown) if h != base + "/locust" and "/async/lab/" not in h):
            assert page.request.get(href).status == 200, href
        tests = [f"tests/{h.package}" for h in kept] + ["tests/twinstack_runtime", *COPY_TESTS]
        # .env.example documents both halves' variables (to be rendered per project by Copier):
        # in a project without one, the check that each documented variable is read fails.
        deselect = ["--deselect", "tests/docker/test_compose.py::test_same_variable_names"]
        run = stack.pytest(*deselect, *tests)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
