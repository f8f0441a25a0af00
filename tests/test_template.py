"""`copier copy` of this repository: every variant generates, holds exactly the files of the
parts it kept (each unchanged but for the few rendered from *.jinja twins), and saves its answers
so `copier update` works. The variants started and tested: tests/test_variants_run.py.
"""

from __future__ import annotations

import filecmp
import itertools
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.parts import (
    DEFAULTS,
    PARTS,
    RENDERED,
    TEMPLATE,
    commit,
    copy_project,
    excluded,
    generate,
    left_out,
    project_files,
    snapshot,
    tree,
)
from tests.support import ROOT

# Every combination of the answers: lab and monitoring with both halves, monitoring with one
# (the lab compares the two halves: it is not asked then).
BOTH = [dict(halves="both", lab=lab, monitoring=on) for lab, on in itertools.product((True, False), repeat=2)]
VARIANTS = BOTH + [dict(halves=halves, monitoring=on) for halves in ("async", "sync") for on in (True, False)]
# Generated, checked the same way and run by tests/test_variants_run.py.
RUN_VARIANTS = [dict(halves="async", monitoring=True), dict(halves="sync", monitoring=False)]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot(tmp_path_factory.mktemp("template"))


def expected_tree(**answers: object) -> set[str]:
    gone = tuple(excluded(**answers))
    files = {name for name in project_files() if not name.startswith(gone) and not name.endswith(".jinja")}
    return (files - {"copier.yml"}) | {".copier-answers.yml"}


@pytest.mark.parametrize(
    "answers", [a for a in VARIANTS if a not in RUN_VARIANTS], ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items())
)
def test_every_variant_holds_the_files_of_its_parts_unchanged(template: Path, tmp_path: Path, answers: dict):
    holds_the_files_of_its_parts(generate(template, tmp_path / "project", project_name="shop-api", **answers), answers)


def holds_the_files_of_its_parts(project: Path, answers: dict) -> None:
    """Made with these answers (and the name shop-api): exactly its parts' files, each as in
    this repository but where the answers are rendered in."""
    assert tree(project) == expected_tree(**answers)
    changed = [name for name in tree(project) - RENDERED if not filecmp.cmp(ROOT / name, project / name, shallow=False)]
    assert not changed, changed
    saved = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {k: saved[k] for k in ("project_name", *answers)} == {"project_name": "shop-api", **answers}
    pyproject = (project / "pyproject.toml").read_text().splitlines()
    assert [line for line in pyproject if line.startswith("name = ")] == ['name = "shop-api"']
    assert (project / "README.md").read_text().startswith("# shop-api\n")
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    included = [entry if isinstance(entry, str) else entry["path"] for entry in compose["include"]]
    assert included and all((project / name).is_file() for name in included)
    # The landing page links to the halves the project has, every cell of each, and no other.
    page, original = (project / "nginx/html/index.html").read_text(), (ROOT / "nginx/html/index.html").read_text()
    for half in ("async", "sync"):
        kept = answers["halves"] in ("both", half)
        assert page.count(f'data-half="{half}"') == (original.count(f'data-half="{half}"') if kept else 0), half
        assert (f'href="/{half}/' in page) == kept, half
    # The rendered files differ from this repository's only where the answers say.
    original = (ROOT / "pyproject.toml").read_text().splitlines()
    if "lab" in left_out(**answers):  # pyproject.toml.jinja also leaves the lab's package out
        removed, added = Counter(original) - Counter(pyproject), Counter(pyproject) - Counter(original)
        assert set(added) == WITHOUT_THE_LAB | {'name = "shop-api"'}, added
        assert set(removed) - {'name = "twinstack"', ""} == LAB_PACKAGING, removed
    else:
        assert [a for a, b in zip(original, pyproject, strict=True) if a != b] == ['name = "twinstack"']
    kept = (project / ".env.example").read_text().splitlines()
    assert set(kept) <= set((ROOT / ".env.example").read_text().splitlines())
    gone = tuple(prefix for part in left_out(**answers) for prefix in PARTS[part]["variables"])
    documented = [line.lstrip("#").split("=")[0] for line in kept if line.lstrip("#").startswith("TWINSTACK_")]
    assert documented and not [name for name in documented if gone and name.startswith(gone)]
    if "lab" in left_out(**answers):
        assert not lines_of_the_lab(project)


# What belongs to the lab: its folder, its package, its make targets and include, its app and
# routes, its variables. The docs and the tests are not searched: they describe every part of
# the template.
LAB_LINE = re.compile(r"/lab/|TWINSTACK_LAB|lab_routes|\bbench/|\"bench|make bench|lab\.mk|lab_app")
# pyproject.toml's lines of the lab's package, and what a project without it has instead.
KNOWN_FIRST_PARTY = next(
    line for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("known-first-party")
)
LAB_PACKAGING = {
    'description = "FastAPI (ASGI) and Flask (WSGI) side by side behind one nginx, with a lab that measures them"',
    "# Whatever of these is present: a project without one half (or without the lab) builds as it is.",
    'include = ["twinstack_contract", "twinstack_runtime", "twinstack_db", "*_service", "*_service.*", "native", '
    '"loadtest", "bench", "bench.*"]',
    "[tool.setuptools.package-data]",
    "# What a non-editable install needs besides the code: the lab's wrk scripts, nginx servers,",
    "# report templates and results schema.",
    'bench = ["*.lua", "*.template", "templates/*.j2", "results.schema.json"]',
    KNOWN_FIRST_PARTY,
}
WITHOUT_THE_LAB = {
    'description = "FastAPI (ASGI) and Flask (WSGI) side by side behind one nginx"',
    "# Whatever of these is present: a project without one half builds as it is.",
    'include = ["twinstack_contract", "twinstack_runtime", "twinstack_db", "*_service", "*_service.*", "native", '
    '"loadtest"]',
    KNOWN_FIRST_PARTY.replace('"bench", ', ""),
}


def lines_of_the_lab(project: Path) -> list[str]:
    files = [name for name in tree(project) if not name.startswith(("docs/", "tests/")) and name != "parts.yml"]
    return [f"{name}:{n}: {line.strip()}" for name in sorted(files)
            for n, line in enumerate((project / name).read_text(errors="replace").splitlines(), 1)
            if LAB_LINE.search(line)]  # fmt: skip


def test_the_lab_check_finds_a_line_of_the_lab(tmp_path: Path):
    (tmp_path / "Makefile").write_text("all:\n\t@echo\n-include bench/lab.mk\n")
    (tmp_path / "conf").write_text("location /async/lab/ {}\n")
    assert lines_of_the_lab(tmp_path) == ["Makefile:3: -include bench/lab.mk", "conf:1: location /async/lab/ {}"]


def test_the_default_variant_is_this_repository(template: Path, tmp_path: Path):
    """`copier copy --defaults`: every part, so every file of the repository but the template's
    own (its suite, less the template's tests, is the default variant's full suite)."""
    project = generate(template, tmp_path / "project")
    assert tree(project) == expected_tree(**DEFAULTS)
    assert tree(project) - RENDERED == project_files() - RENDERED - {"copier.yml", *TEMPLATE} - {
        n for n in project_files() if n.endswith(".jinja")
    }
    assert (project / "docker-compose.yml").read_text() == (ROOT / "docker-compose.yml").read_text()


@pytest.mark.parametrize("value", ["", "1abc", "has space", "semi;colon"])
def test_a_bad_project_name_is_refused_with_the_rule(template: Path, tmp_path: Path, value: str):
    copier = Path(sys.executable).with_name("copier")
    result = subprocess.run(
        [str(copier), "copy", "--defaults", "--vcs-ref", "HEAD", "--data", f"project_name={value}",
         str(template), str(tmp_path / "p")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "letters, digits, - and _" in result.stdout + result.stderr
    assert not (tmp_path / "p" / "pyproject.toml").exists()


# What users generated their projects from before this one (main as it was last published):
# `copier update` must bring such a project to this template.
PREVIOUS_RELEASE = "0d23e283f7db61361cf42d4f484c2e969f2696fa"


def test_copier_update_brings_a_project_of_the_previous_release_to_this_one(tmp_path: Path):
    """A project generated at the previous release, committed by its team, then `copier update`:
    it keeps its answers, and ends exactly as a project generated from this template now."""
    template = tmp_path / "template"
    template.mkdir()
    archive = subprocess.run(["git", "archive", PREVIOUS_RELEASE], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(template)], input=archive.stdout, check=True)
    commit(template, "the previous release")
    for path in template.iterdir():  # then this working tree, as the template's next commit
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    commit(copy_project(template), "this release")
    answers = {"project_name": "shop-api", "halves": "both", "lab": False}
    project = generate(template, tmp_path / "project", ref="HEAD~1", **answers)
    assert "TWINSTACK_LAB_ROUTES=" in (project / ".env.example").read_text()  # not vacuous: the old product
    commit(project, "generated")
    copier = Path(sys.executable).with_name("copier")
    result = subprocess.run(
        [str(copier), "update", "--defaults", "--skip-answered", "--vcs-ref", "HEAD"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    fresh = generate(template, tmp_path / "fresh", **answers)
    assert tree(project) == tree(fresh)
    changed = [name for name in tree(fresh) - {".copier-answers.yml"}
               if not filecmp.cmp(project / name, fresh / name, shallow=False)]  # fmt: skip
    assert not changed, changed
    saved = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {k: saved[k] for k in answers} == answers
