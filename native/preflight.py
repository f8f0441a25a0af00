"""What native mode checks before it starts anything, each said once, as one sentence: the
programs it needs, the connection budget, the ports, the certificate. A ``StackError`` is
printed as ``error: ...`` and exits 1 (native/cli.py)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from twinstack_db import budget

from . import postgres
from .settings import StackSettings


class StackError(RuntimeError):
    pass


def _not_installed(what: str, package: str, variable: str, why: str = "") -> StackError:
    return StackError(
        f"{what} is not installed{why}. Install it from your OS packages "
        f"(Debian/Ubuntu: sudo apt-get install {package}), or set {variable}."
    )


def nginx(settings: StackSettings) -> str:
    found = settings.nginx()
    if found is None or shutil.which(found) is None:
        raise _not_installed(
            "nginx", "nginx", "TWINSTACK_NGINX_BIN", f" ({found} is not an executable)" if found else ""
        )
    return found


def logrotate(settings: StackSettings) -> str:
    found = settings.logrotate()
    if found is None:
        raise _not_installed(
            "logrotate", "logrotate", "TWINSTACK_LOGROTATE_BIN", " (it rotates the logs nginx and the pools write)"
        )
    return found


def postgres_bin(settings: StackSettings) -> Path:
    """Where initdb and postgres are, for the stack's private cluster."""
    found = settings.postgres_bin()
    if found is None or not (found / "initdb").exists():
        raise _not_installed("PostgreSQL", "postgresql", "TWINSTACK_PG_BIN_DIR")
    return found


def connection_budget(settings: StackSettings, env: dict[str, str]) -> None:
    """The pools' connections fit the database's max_connections (the masters check it too;
    here it is one clear message before anything starts). An external database's own limit
    is the limit, whatever is set: it is read, and written into ``env``."""
    try:
        limit = settings.max_connections()
        if settings.external_database():
            limit = postgres.max_connections(env["TWINSTACK_DATABASE_URL"], settings.ready_timeout_s)
            env["TWINSTACK_DB_MAX_CONNECTIONS"] = str(limit)
        budget.check(settings.connection_budget(), limit)
    except (budget.BudgetError, postgres.PostgresError) as exc:
        raise StackError(str(exc)) from None


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def ports_free(settings: StackSettings) -> None:
    busy = [f"{name} ({port})" for name, port in settings.ports().items() if _port_busy(port)]
    if busy:
        raise StackError(
            f"port busy: {', '.join(busy)}. Stop what uses it, or choose other ports in .env "
            "(TWINSTACK_HTTP_PORT, TWINSTACK_TLS_PORT, TWINSTACK_ASYNC_PORT, TWINSTACK_SYNC_PORT, "
            "TWINSTACK_DOWNSTREAM_PORT, TWINSTACK_LOCUST_PORT, TWINSTACK_DB_PORT)."
        )
