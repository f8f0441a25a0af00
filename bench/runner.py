"""What the lab asks of the runner, through its command line as a user would (``python -m
native env|render-nginx|cluster|tls-cert``), never through native mode's modules: the
environment the stack's programs get, an nginx prefix rendered from it, a PostgreSQL cluster,
and a certificate for nginx's HTTPS server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import ROOT, LabError


def _native(args: Sequence[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "native", *args], cwd=ROOT, env=dict(env), capture_output=True, text=True
    )
    if result.returncode != 0:
        said = result.stderr.strip().removeprefix("error: ") or f"exit {result.returncode}"
        raise LabError(f"python -m native {args[0]}: {said}")
    return result.stdout


def environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The environment native mode gives its programs, with ``settings`` (TWINSTACK_*
    variables) over the caller's own."""
    return json.loads(_native(["env"], {**os.environ, **settings}))


@dataclass(frozen=True)
class NginxPrefix:
    prefix: Path
    argv: list[str]
    """nginx in the foreground on that prefix."""


def render_nginx(env: Mapping[str, str], prefix: Path, templates: Sequence[Path] = ()) -> NginxPrefix:
    """twinstack's nginx configuration rendered from ``env`` into ``prefix``, each template
    rendered into conf.d/ beside it, checked with nginx -t."""
    args = ["render-nginx", str(prefix), *(f"--template={t}" for t in templates)]
    out = json.loads(_native(args, env))
    return NginxPrefix(Path(out["prefix"]), out["argv"])


@dataclass(frozen=True)
class Cluster:
    argv: list[str]
    """The server in the foreground."""
    ready: list[str]
    """Exits 0 once it accepts connections (pg_isready)."""
    run_as: dict[str, Any]
    """subprocess arguments (user, group) when the lab runs as root: PostgreSQL refuses root."""
    url: str


def cluster(folder: Path, port: int) -> Cluster:
    """A PostgreSQL cluster in ``folder``, made as native mode makes its own."""
    return Cluster(**json.loads(_native(["cluster", str(folder), f"--port={port}"], os.environ)))


def tls_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost made by the runner (``python -m native tls-cert
    FOLDER``: ECDSA P-256, as ``make tls-cert`` makes one): FOLDER/tls.crt and its key."""
    _native(["tls-cert", str(folder)], os.environ)
    cert, key = folder / "tls.crt", folder / "tls.key"
    for path in (cert, key):
        if not path.is_file():
            raise LabError(f"python -m native tls-cert: no {path.name} in {folder}")
    return cert, key
