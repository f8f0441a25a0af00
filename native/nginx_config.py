"""Render nginx/templates/*.template the way the official nginx image does at start-up.

The image runs envsubst over /etc/nginx/templates/*.template into conf.d/, substituting only
the variables named by NGINX_ENVSUBST_FILTER (docker-compose.yml sets ``TWINSTACK_``). This
does the same for native mode, and refuses to render a variable that is not set, so a
template and its runners cannot silently disagree.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from .paths import PUBLIC_ROOT, ROOT

NGINX_DIR = ROOT / "nginx"
# The defaults of the templates' variables that have one (see the file).
DEFAULTS = NGINX_DIR / "defaults.env"
PLACEHOLDER = re.compile(r"\$\{(TWINSTACK_[A-Z0-9_]+)\}")
SYSTEM_MIME_TYPES = (Path("/etc/nginx/mime.types"), Path("/usr/local/etc/nginx/mime.types"))


class RenderError(RuntimeError):
    pass


def defaults() -> dict[str, str]:
    """nginx/defaults.env's values (what the settings, Compose and Kubernetes read it for)."""
    return {k: v for k, v in dotenv_values(DEFAULTS).items() if v is not None}


def render_template(text: str, env: Mapping[str, str]) -> str:
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in env})
    if missing:
        raise RenderError(f"nginx template needs {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: env[m.group(1)], text)


# What the HTTPS server needs differs by nginx version (nginx/snippets/tls-nginx-1.25.5.conf and its siblings):
# 1.25.1 made HTTP/2 a directive of its own (`http2 on;`) and deprecated the `http2` parameter
# of `listen`, which is all older versions (Debian 12's 1.22) know; 1.25.5 gave the TLS
# handshake a timeout of its own (60 s by default, where older ones use client_header_timeout).
HTTP2_DIRECTIVE_SINCE = (1, 25, 1)
HANDSHAKE_TIMEOUT_SINCE = (1, 25, 5)
TLS_TEMPLATE = NGINX_DIR / "tls" / "twinstack-tls.conf.template"


@functools.cache
def version(nginx: str) -> tuple[int, int, int]:
    """``nginx -v``'s version, as numbers."""
    result = subprocess.run([nginx, "-v"], capture_output=True, text=True)
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", result.stderr + result.stdout)
    if found is None:
        raise RenderError(f"cannot tell {nginx}'s version from: {(result.stderr + result.stdout).strip()!r}")
    major, minor, patch = map(int, found.groups())
    return major, minor, patch


def tls_version_variables(nginx_version: tuple[int, int, int]) -> dict[str, str]:
    """How the HTTPS server is written for this nginx (nginx/tls/twinstack-tls.conf.template):
    HTTP/2 on the `listen` line or as a directive, and the snippet of what else it needs."""
    if nginx_version >= HANDSHAKE_TIMEOUT_SINCE:
        return {"TWINSTACK_TLS_LISTEN_HTTP2": "", "TWINSTACK_TLS_NGINX": "1.25.5"}
    if nginx_version >= HTTP2_DIRECTIVE_SINCE:
        return {"TWINSTACK_TLS_LISTEN_HTTP2": "", "TWINSTACK_TLS_NGINX": "1.25.1"}
    return {"TWINSTACK_TLS_LISTEN_HTTP2": "http2", "TWINSTACK_TLS_NGINX": "before-1.25.1"}


def render(env: Mapping[str, str], prefix: Path) -> Path:
    """Lay out an nginx prefix directory: nginx.conf, snippets, locations, mime.types, conf.d/,
    and the HTTPS server in conf.d/tls/ when TWINSTACK_TLS is on."""
    conf_d = prefix / "conf.d"
    if conf_d.exists():
        shutil.rmtree(conf_d)
    conf_d.mkdir(parents=True)
    (prefix / "temp").mkdir(exist_ok=True)
    if env.get("TWINSTACK_WEB_ROOT_COPY") == "true":
        publish(Path(env["TWINSTACK_WEB_ROOT"]), Path(env["TWINSTACK_NGINX_TEMP_DIR"]))
    shutil.copyfile(NGINX_DIR / "nginx.conf", prefix / "nginx.conf")
    for folder in ("snippets", "locations"):  # included as they are, never rendered
        link = prefix / folder
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(NGINX_DIR / folder)
    mime = next((p for p in SYSTEM_MIME_TYPES if p.exists()), None)
    if mime is None:
        raise RenderError("mime.types not found: is nginx installed from the OS packages?")
    shutil.copyfile(mime, prefix / "mime.types")
    for template in sorted((NGINX_DIR / "templates").glob("*.template")):
        (conf_d / template.name.removesuffix(".template")).write_text(render_template(template.read_text(), env))
    if env.get("TWINSTACK_TLS") == "true":
        (conf_d / "tls").mkdir()
        target = conf_d / "tls" / TLS_TEMPLATE.name.removesuffix(".template")
        target.write_text(render_template(TLS_TEMPLATE.read_text(), env))
    return prefix


def publish(web_root: Path, temp_dir: Path) -> None:
    """Refresh the copy of nginx/html the native runner serves as root (see
    StackSettings.public_dir): world-readable files in directories only root may write, and a
    temp directory the workers can enter (nginx chowns what it creates inside to them)."""
    source = NGINX_DIR / "html"
    if not web_root.is_relative_to(PUBLIC_ROOT):
        raise RenderError(f"refusing to replace {web_root}: not a copy under {PUBLIC_ROOT}")
    if web_root.exists():
        shutil.rmtree(web_root)
    shutil.copytree(source, web_root, symlinks=False)
    for directory in [web_root.parent.parent, web_root.parent, web_root, temp_dir]:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    for path in web_root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def check(nginx: str, prefix: Path, globals_: str) -> None:
    """``nginx -t`` on the rendered config; raises with nginx's own message."""
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr", "-g", globals_],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RenderError(f"nginx -t failed:\n{result.stderr.strip()}")
