"""Every repository path and module a doc or comment names exists: a reader who follows one
finds it. Checked: paths that start at a top-level folder of the repository (``bench/lab.py``,
``nginx/templates/``), Python modules of the project named with dots
(``twinstack_runtime.logs``), and Markdown files named on their own (``README.md``).
Not checked: runtime paths (``logs/``, ``run/``, ``reports/`` are not in the repository), what
git ignores (files a command generates, such as ``nginx/tls/certs/``), placeholders in capitals
(``loadtest/profiles/PROFILE.conf``) and image names (``image: nginx/...``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

TEXT_SUFFIXES = {".py", ".md", ".conf", ".template", ".yml", ".yaml", ".toml", ".sh", ".lua", ".json", ".cfg"}
TEXT_NAMES = {"Makefile", "Dockerfile", ".env.example", ".dockerignore", ".gitignore"}


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [name for name in out.splitlines() if (ROOT / name).is_file()]


FILES = tracked()
TOP_DIRS = sorted({name.split("/", 1)[0] for name in FILES if "/" in name and not name.startswith(".")})
PACKAGES = sorted(d for d in TOP_DIRS if (ROOT / d / "__init__.py").exists())
# A path that starts at a top-level folder, not inside another path or a URL.
PATH_RE = re.compile(rf"(?<![\w./@:-])((?:{'|'.join(map(re.escape, TOP_DIRS))})/[\w./-]*)")
MODULE_RE = re.compile(rf"(?<![\w./-])((?:{'|'.join(map(re.escape, PACKAGES))})(?:\.[A-Za-z_]\w*)+)")
MARKDOWN_RE = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")


def texts() -> list[str]:
    own = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its examples name missing paths on purpose
    return [
        name for name in FILES if name != own and (Path(name).name in TEXT_NAMES or Path(name).suffix in TEXT_SUFFIXES)
    ]


FILE_SUFFIXES = {"conf", "log", "json", "html", "yml", "yaml", "lua", "template", "md", "txt", "gz", "pid", "sock"}


def module_exists(dotted: str) -> bool:
    """The first two names must be a module or package of the project (what follows may be an
    attribute: ``fastapi_service.worker.Worker``). A file name (``bench.conf``) is not a module."""
    parts = dotted.split(".")
    if len(parts) == 2 and parts[1] in FILE_SUFFIXES:
        return True
    for n in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or base.is_dir():
            return True
    return False


def ignored(path: str) -> bool:
    """git ignores it, as a file or as a folder (a pattern like ``certs/`` names only folders)."""
    return any(subprocess.run(["git", "check-ignore", "-q", p], cwd=ROOT).returncode == 0 for p in (path, path + "/"))


def not_a_path(text: str, match: re.Match[str], path: str) -> bool:
    line = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]
    placeholder = any(part.isupper() for part in re.split(r"[/.]", path) if len(part) > 1)
    product = re.fullmatch(r"[\w-]+/\d+(\.\d+)+", path) is not None  # a product token: nginx/1.22.1
    return "image:" in line or placeholder or product


def lifted_out() -> tuple[str, ...]:
    """The files of the parts this project was made without (copier.yml, tests/parts.py): the
    docs describe every part, so they may still name them."""
    from tests.parts import answers_on_disk, excluded

    return tuple(excluded(**answers_on_disk()))


def missing_references(name: str, text: str) -> list[str]:
    found = []
    gone = lifted_out()
    markdown = {path.rsplit("/", 1)[-1] for path in FILES if path.endswith(".md")}
    for match in PATH_RE.finditer(text):
        path = match.group(1).rstrip(".-/") or match.group(1)
        if gone and path.startswith(gone):
            continue
        if not (ROOT / path).exists() and not not_a_path(text, match, path) and not ignored(path):
            found.append(f"{name}: path {path}")
    for match in MODULE_RE.finditer(text):
        if not module_exists(match.group(1)) and not (gone and match.group(1).replace(".", "/").startswith(gone)):
            found.append(f"{name}: module {match.group(1)}")
    for match in MARKDOWN_RE.finditer(text):
        if match.group(1) not in markdown:
            found.append(f"{name}: document {match.group(1)}")
    return found


def test_every_path_module_and_document_named_in_the_repository_exists():
    missing = [m for name in texts() for m in missing_references(name, (ROOT / name).read_text(errors="replace"))]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("see bench/lab.py and nginx/templates/", []),
        ("see bin/native and native/stack.py.", ["path native/stack.py"]),
        ("(twinstack_runtime.logs) and twinstack_contract.observability", ["module twinstack_contract.observability"]),
        ("fastapi_service.worker.Worker, the class", []),
        ("cited from DESIGN.md; README.md", ["document DESIGN.md"]),
        ("runtime files: logs/nginx.log, run/nginx/nginx.pid, /etc/nginx/conf.d", []),
        ("made by make tls-cert: nginx/tls/certs/tls.crt; conf.d/bench.conf", []),
        ("loadtest/profiles/PROFILE.conf; loadtest/profiles/nonesuch.conf", ["path loadtest/profiles/nonesuch.conf"]),
        ("    image: nginx/nginx-prometheus-exporter:1.5.1", []),
        ("nginx -v says nginx/1.22.1; nginx/1.22.1.conf is missing", ["path nginx/1.22.1.conf"]),
    ],
)
def test_the_check_finds_what_is_missing_and_only_that(text, missing):
    assert [m.split(": ", 1)[1] for m in missing_references("x", text)] == missing
