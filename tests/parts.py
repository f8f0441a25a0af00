"""The optional parts of the project (each half, the tests of both, the lab, monitoring) and
their files, from parts.yml: the one definition copier.yml leaves parts out by, and a
generated project keeps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from native.settings import HALVES
from tests.support import ROOT, free_port

DEFAULTS = {"project_name": "my-service", "halves": "both", "lab": True, "monitoring": True}


def left_out(halves: str = "both", lab: bool = True, monitoring: bool = True, **_: object) -> list[str]:
    """The parts a project made with these answers leaves out (copier.yml's rule)."""
    parts = {"template": True, "async": halves == "sync", "sync": halves == "async", "both": halves != "both"}
    parts |= {"lab": not lab or halves != "both", "monitoring": not monitoring}  # the lab compares both
    return [part for part, gone in parts.items() if gone]


PARTS = yaml.safe_load((ROOT / "parts.yml").read_text())


def excluded(**answers: object) -> list[str]:
    """The paths (relative, no leading slash) a project made with these answers leaves out."""
    return [path.lstrip("/") for part in left_out(**{**DEFAULTS, **answers}) for path in PARTS[part]["files"]]


def answers_on_disk(root: Path = ROOT) -> dict[str, object]:
    """The answers this checkout looks made with: which halves, and whether lab and monitoring
    are there."""
    present = {half.prefix: (root / half.package).is_dir() for half in HALVES}
    halves = "both" if all(present.values()) else next(half for half, here in present.items() if here)
    return {"halves": halves, "lab": (root / "bench").is_dir(), "monitoring": (root / "monitoring").is_dir()}


def half_files(half: str) -> list[str]:
    """One half's files: what keeping only the other half leaves out (the tests that compare
    both halves included)."""
    other = "sync" if half == "async" else "async"
    return [path for path in excluded(halves=other) if path not in TEMPLATE]


# The template's own tests, which no generated project has.
TEMPLATE = [path.lstrip("/") for path in PARTS["template"]["files"]]


# The files a generated project gets with its answers rendered in (their *.jinja twins); every
# other file is this repository's, unchanged.
RENDERED = {
    "pyproject.toml",
    "docker-compose.yml",
    "README.md",
    ".env.example",
    ".copier-answers.yml",
    "nginx/html/index.html",
    "deploy/kubernetes/base/kustomization.yaml",
    "deploy/kubernetes/overlays/production/kustomization.yaml",
}


GIT = ["git", "-c", "user.name=twinstack", "-c", "user.email=twinstack@localhost"]


def project_files(root: Path = ROOT) -> set[str]:
    """The files a clone of the project holds (tracked, or new and not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return {line for line in out.stdout.splitlines() if (root / line).is_file()}


def commit(root: Path, message: str) -> None:
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", message]):
        subprocess.run([*GIT, *args], cwd=root, check=True, capture_output=True)


def copy_project(dest: Path) -> Path:
    """The files a clone of the working tree would hold, uncommitted changes included."""
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def snapshot(dest: Path) -> Path:
    """The working tree as a repository of its own, one commit, so Copier reads it the same in
    development and in CI."""
    commit(copy_project(dest), "snapshot")
    return dest


def generate(template: Path, dest: Path, ref: str = "HEAD", **answers: object) -> Path:
    """``copier copy`` of a template repository (a snapshot()) at ``ref`` with these answers,
    unattended."""
    data = [arg for name, value in answers.items() for arg in ("--data", f"{name}={str(value).lower()}")]
    copier = Path(sys.executable).with_name("copier")
    result = subprocess.run(
        [str(copier), "copy", "--defaults", "--quiet", "--vcs-ref", ref, *data, str(template), str(dest)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return dest


def tree(root: Path) -> set[str]:
    """Every file under root, relative, outside .git and the virtualenv."""
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).parts[0] not in {".git", ".venv"}
    }


@dataclass
class Project:
    """A project of its own (a lift-out copy, a generated variant), run through its Makefile
    on free ports, with its virtualenv where ``venv`` says (its own .venv by default)."""

    root: Path
    venv: Path
    env: dict[str, str]
    base_url: str

    def make(self, *targets: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", f"VENV={self.venv}", *targets], cwd=self.root, env=self.env, capture_output=True, text=True,
            timeout=400,
        )  # fmt: skip

    def pytest(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The project's own tests, with its own virtualenv."""
        return subprocess.run(
            [str(self.venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
            cwd=self.root, env=self.env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip


@contextmanager
def running(root: Path, venv: Path | None = None) -> Iterator[Project]:
    """`make up` in the project (it must succeed), `make down` after (it must too)."""
    ports = {name: str(free_port()) for name in ("HTTP", "ASYNC", "SYNC", "DOWNSTREAM", "LOCUST", "NGINX_STATUS", "DB")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWINSTACK_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({f"TWINSTACK_{name}_PORT": port for name, port in ports.items()})
    env["PYTHON"] = sys.executable  # the interpreter the project builds its virtualenv from
    project = Project(root, venv or root / ".venv", env, f"http://127.0.0.1:{ports['HTTP']}")
    up = project.make("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield project
    finally:
        down = project.make("down")
        assert down.returncode == 0, down.stdout + down.stderr
        deleted = subprocess.run(
            [str(project.venv / "bin/python"), "-m", "native", "delete-data"], cwd=root, env=env, capture_output=True
        )  # its database: a test project leaves nothing behind
        assert deleted.returncode == 0, deleted.stderr
