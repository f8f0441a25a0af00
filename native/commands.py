"""What a program beside the stack may ask of native mode without importing it (the lab,
``make loadtest``, ``make tls-cert``): the environment the stack's programs get, its public
URL, an nginx prefix rendered from that environment, a PostgreSQL cluster made as the stack
makes its own, and a certificate."""

from __future__ import annotations

import secrets
from pathlib import Path

from . import nginx_config, postgres, preflight
from .certificates import CERTIFICATE_DAYS, make_certificate
from .preflight import StackError
from .settings import StackSettings


def make_cluster(settings: StackSettings, folder: Path, port: int) -> dict:
    """A cluster of the stack's PostgreSQL in ``folder`` (which the server's user may enter),
    for a runner that starts it itself: the command, the user to run it as (PostgreSQL refuses
    root), and a URL to its ``postgres`` database on 127.0.0.1:``port``."""
    binaries = preflight.postgres_bin(settings)
    secret = secrets.token_hex(16)
    try:
        postgres.ensure_cluster(binaries, folder / "data", secret)
    except postgres.PostgresError as exc:
        raise StackError(str(exc)) from None
    server = [str(binaries / "postgres"), "-D", str(folder / "data"), "-p", str(port)]
    return {
        "argv": [*server, "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
        "ready": [str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
        "run_as": postgres.as_server_user(),
        "url": f"postgresql://{postgres.ROLE}:{secret}@127.0.0.1:{port}/postgres",
    }


def render_nginx(settings: StackSettings, prefix: Path, templates: list[Path]) -> dict:
    """Lay out an nginx prefix from the stack's environment (``StackSettings.environment``):
    twinstack's configuration, plus each of ``templates`` rendered into conf.d/ beside it;
    ``nginx -t`` on the result. Returns what a caller needs to run that nginx in the
    foreground: the binary, the prefix, the command line."""
    nginx = preflight.nginx(settings)
    missing = [str(t) for t in templates if not t.is_file()]
    if missing:
        raise StackError(f"no such template: {', '.join(missing)}")
    env = settings.environment()
    prefix = prefix.resolve()
    nginx_config.render(env, prefix)
    for template in templates:
        target = prefix / "conf.d" / template.name.removesuffix(".template")
        target.write_text(nginx_config.render_template(template.read_text(), env))
    globals_ = settings.nginx_globals(prefix)
    nginx_config.check(nginx, prefix, globals_)
    argv = [nginx, "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr", "-g", globals_]
    return {"nginx": nginx, "prefix": str(prefix), "globals": globals_, "argv": argv}


def tls_cert(folder: Path) -> str:
    cert, _ = make_certificate(folder)
    return f"{cert} (self-signed for localhost, {CERTIFICATE_DAYS} days): for local use only"
