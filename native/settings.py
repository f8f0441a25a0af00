"""Native-mode settings: ports and paths, from the environment or .env (see .env.example)."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from dotenv import dotenv_values
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from twinstack_db import budget
from twinstack_db.budget import PoolBudget
from twinstack_db.settings import DEFAULT_MAX_CONNECTIONS
from twinstack_runtime.serving import (
    ASYNC_PORT,
    DOWNSTREAM_PORT,
    SYNC_PORT,
    SyncPool,
    client_share,
    database_budget,
    sync_max_inflight,
)

from . import nginx_config, postgres
from .paths import PUBLIC_ROOT, ROOT

# The halves a native stack runs, found on disk: a half is deployed when its service package is
# there. Deleting a half's files (docs/architecture.md, "A half is a set of files") removes it
# from every command: supervisord includes the program files present, nginx the upstream and
# location files present, and the CLI waits for, reloads and reports the pools deployed().


@dataclass(frozen=True)
class Half:
    prefix: str  # the URL prefix (/async/) and the name of its nginx files (templates/async.conf.template)
    program: str  # its supervisor program (native/programs/<program>.conf) and log file (logs/<program>.log)
    package: str  # its service package
    page: str  # what `make up` points a user to: the interactive docs where the framework has them

    def port(self, settings: StackSettings) -> int:
        return getattr(settings, f"{self.prefix}_port")


HALVES = (Half("async", "fastapi", "fastapi_service", "docs"), Half("sync", "flask", "flask_service", "health"))


def deployed(root: Path = ROOT) -> tuple[Half, ...]:
    """The halves whose service package is present, in a fixed order."""
    return tuple(half for half in HALVES if (root / half.package).is_dir())


class StackSettings(BaseSettings):
    # nginx's defaults (nginx/defaults.env, which Compose and Kubernetes read too) under .env,
    # under the environment: the fields below without a default of their own take theirs there.
    model_config = SettingsConfigDict(
        env_prefix="TWINSTACK_", env_file=(nginx_config.DEFAULTS, ROOT / ".env"), extra="ignore"
    )

    http_port: int = Field(8080, ge=1, le=65535, description="nginx, the only public port (with HTTPS, one of two).")
    tls: bool = Field(False, description="Serve HTTPS too, on TWINSTACK_TLS_PORT (make up TLS=1).")
    tls_port: int = Field(8443, ge=1, le=65535, description="nginx's HTTPS port, when TWINSTACK_TLS is on.")
    tls_certificate: Path = Field(
        ROOT / "nginx" / "tls" / "certs" / "tls.crt",
        description="The certificate chain, PEM, leaf first (make tls-cert makes one for localhost).",
    )
    tls_certificate_key: Path = Field(ROOT / "nginx" / "tls" / "certs" / "tls.key", description="Its private key, PEM.")
    tls_redirect: bool = Field(
        True, description="With HTTPS on, the plain port redirects every request there (308); false: it serves."
    )
    tls_stapling: bool = Field(
        False, description="OCSP stapling: only for a certificate whose CA runs an OCSP responder."
    )
    async_port: int = Field(ASYNC_PORT, ge=1, le=65535)
    sync_port: int = Field(SYNC_PORT, ge=1, le=65535)
    downstream_port: int = Field(DOWNSTREAM_PORT, ge=1, le=65535)
    locust_port: int = Field(8089, ge=1, le=65535, description="The Locust web UI.")
    nginx_status_port: int = Field(8090, ge=1, le=65535, description="nginx stub_status, loopback only.")
    monitoring: bool = Field(False, description="Also run Prometheus and the nginx exporter (make up MONITORING=1).")
    prometheus_port: int = Field(9090, ge=1, le=65535)
    nginx_exporter_port: int = Field(9113, ge=1, le=65535)
    run_dir: Path = Field(ROOT / "run", description="Pid files, sockets, rendered nginx config.")
    log_dir: Path = Field(ROOT / "logs")
    nginx_bin: str | None = Field(None, description="nginx executable; found on PATH or in /usr/sbin if unset.")
    ready_timeout_s: float = Field(60.0, gt=0)
    sync_max_inflight: int | None = Field(
        None, ge=1, description="Requests nginx lets into the sync pool at once; default 10 x its workers."
    )
    proxy_timeout_s: int = Field(
        ge=1, le=3600, description="nginx proxy read/send timeout; keep it between 30 s and gunicorn's 40 s."
    )
    server_names: str = Field(description="Host names nginx serves; any other Host gets 421 (space-separated).")
    cors_origin_regex: str = Field(
        description="Origins allowed to call the API from a browser (a regex; default: none)."
    )
    rate_limit_rps: int = Field(ge=1, description="Requests per second per client address.")
    rate_limit_burst: int = Field(ge=0)
    expensive_rate_limit_rps: int = Field(
        ge=1, description="Requests per second per client address to /sync/, /async/cpu, /fanout, /jobs."
    )
    expensive_rate_limit_burst: int = Field(ge=0)
    client_max_conns: int = Field(
        ge=1, le=65535, description="Requests one client address may have in progress (WebSockets included)."
    )
    ws_max_per_client: int = Field(ge=1, le=65535, description="WebSockets one client address may hold open.")
    async_db_max_inflight_per_client: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="/async/db and /async/orders requests one client address may have in progress; "
        "default half the async pool's database connections.",
    )
    sync_max_inflight_per_client: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="/sync/ requests one client address may have in progress; default half "
        "of TWINSTACK_SYNC_MAX_INFLIGHT, so one client never takes the whole pool.",
    )
    log_rotate_size: str = Field(
        "100M", pattern=r"^[0-9]+[kMG]?$", description="logrotate rotates a log file once it is larger than this."
    )
    log_rotate_keep: int = Field(
        5, ge=1, le=1000, description="Rotated files kept per log (all but the newest gzipped)."
    )
    logrotate_bin: str | None = Field(None, description="logrotate executable; found on PATH or in /usr/sbin if unset.")
    db_port: int = Field(
        15432, ge=1, le=65535, description="The private PostgreSQL, on 127.0.0.1 (not 5432: a system one may be there)."
    )
    db_password: str | None = Field(
        None, description="The database role's password; made once and kept in run/postgres.password if unset."
    )
    db_max_connections: int | None = Field(
        None,
        ge=10,
        le=10_000,
        description="PostgreSQL's max_connections; default what the pools' connection budget needs, at least 100.",
    )
    db_data_dir: Path | None = Field(
        None, description="The cluster's data folder; default run/postgres/data, or /var/lib/twinstack/<stack> as root."
    )
    pg_bin_dir: str | None = Field(None, description="Where initdb and postgres are; Debian's newest if unset.")
    database_url: str | None = Field(
        None,
        description="An external PostgreSQL (a libpq URL, its database created): native mode then runs no "
        "cluster of its own, and migrates that one. Unset: the private cluster.",
    )

    def nginx(self) -> str | None:
        if self.nginx_bin:
            return self.nginx_bin
        return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")

    def logrotate(self) -> str | None:
        if self.logrotate_bin:
            return self.logrotate_bin
        return shutil.which("logrotate") or shutil.which("logrotate", path="/usr/sbin:/usr/local/sbin:/sbin")

    def ports(self) -> dict[str, int]:
        return {
            "nginx": self.http_port,
            **({"nginx https": self.tls_port} if self.tls else {}),
            **{half.program: half.port(self) for half in deployed()},
            "downstream": self.downstream_port,
            **({} if self.external_database() else {"postgres": self.db_port}),
            "locust": self.locust_port,
            "nginx status": self.nginx_status_port,
            **(
                {"prometheus": self.prometheus_port, "nginx exporter": self.nginx_exporter_port}
                if self.monitoring
                else {}
            ),
        }

    @staticmethod
    def sync_workers() -> int:
        """The sync pool's worker count, as flask_service/gunicorn.conf.py derives it."""
        return SyncPool().worker_count()

    @staticmethod
    def nginx_globals(prefix: Path, foreground: bool = True) -> str:
        """Main-context directives only the runner knows: foreground, pid file, user.

        Started as root, nginx's master keeps root (it opens the logs and ports) and its
        workers, which parse every client's bytes, run as an unprivileged user: Debian's
        www-data, or nobody. Started as anyone else, the workers run as that user.
        """
        directives = ["daemon off;"] if foreground else []
        directives.append(f"pid {prefix}/nginx.pid;")
        if os.geteuid() == 0:
            directives.append(f"user {worker_user()};")
        return " ".join(directives)

    @staticmethod
    def db_clients() -> list[str]:
        """The pools that connect to the database: the halves deployed."""
        return [half.prefix for half in deployed()]

    def connection_budget(self) -> list[PoolBudget]:
        return database_budget(self.db_clients(), ROOT / ".env")

    def async_db_per_client(self) -> int:
        """As configured, else half the async pool's connections (all workers' pools)."""
        if self.async_db_max_inflight_per_client:
            return self.async_db_max_inflight_per_client
        (pool,) = database_budget(["async"], ROOT / ".env")
        return client_share(pool.connections)

    def max_connections(self) -> int:
        """As configured, else room for the budget (twinstack_db/budget.py), at least 100: the
        private server is sized for the pools it serves, whatever the CPU count."""
        return self.db_max_connections or max(DEFAULT_MAX_CONNECTIONS, budget.needed(self.connection_budget()))

    def postgres_bin(self) -> Path | None:
        return postgres.bin_dir(self.pg_bin_dir)

    def postgres_data(self) -> Path:
        return self.db_data_dir or postgres.data_dir(self.run_dir)

    def external_database(self) -> bool:
        return bool(self.database_url)

    def service_database_url(self) -> str:
        """What both services and the migrator connect to: the external database, or the
        private cluster (its password quoted)."""
        if self.database_url:
            return self.database_url
        secret = quote(postgres.password(self.run_dir.resolve(), self.db_password), safe="")
        return f"postgresql://{postgres.ROLE}:{secret}@127.0.0.1:{self.db_port}/{postgres.DATABASE}"

    def public_url(self, host: str = "127.0.0.1") -> str:
        """The stack's one public entry: nginx, over HTTPS when it is on."""
        if self.tls:
            return f"https://{host}:{self.tls_port}"
        return f"http://{host}:{self.http_port}"

    def tls_environment(self) -> dict[str, str]:
        """The HTTPS server's variables (nginx/tls/twinstack-tls.conf.template), HTTP/2 as the
        nginx that runs it needs it; rendered only when TWINSTACK_TLS is on."""
        nginx = self.nginx()
        # No nginx to ask (make up says so, once): the template's oldest form.
        version = nginx_config.version(nginx) if nginx and shutil.which(nginx) else nginx_config.HTTP2_DIRECTIVE_SINCE
        return {
            "TWINSTACK_TLS": "true" if self.tls else "false",
            "TWINSTACK_TLS_PORT": str(self.tls_port),
            # Natively nginx listens where clients connect; under Compose a published port may differ.
            "TWINSTACK_TLS_PUBLIC_PORT": str(self.tls_port),
            "TWINSTACK_TLS_CERTIFICATE": str(self.tls_certificate.resolve()),
            "TWINSTACK_TLS_CERTIFICATE_KEY": str(self.tls_certificate_key.resolve()),
            "TWINSTACK_TLS_REDIRECT": "true" if self.tls and self.tls_redirect else "false",
            "TWINSTACK_TLS_STAPLING": "on" if self.tls_stapling else "off",
            **nginx_config.tls_version_variables(version),
        }

    def public_dir(self) -> Path | None:
        """As root: where nginx's workers find the web root and their temp files. The checkout
        may sit under a private home (/root, a 0700 temp dir) that an unprivileged worker
        cannot enter, so the web root is copied (nginx_config.render) to a directory only root
        may write, one per stack. None otherwise: the workers run as the checkout's user."""
        if os.geteuid() != 0:
            return None
        digest = hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
        return PUBLIC_ROOT / digest

    def environment(self) -> dict[str, str]:
        """Everything supervisord and its programs read (and the lab's servers, through
        ``python -m native env``), so the nginx templates, gunicorn.conf.py and the apps agree.

        Precedence, lowest first: .env; the caller's environment; the values derived here. A
        variable that is a setting always comes as these settings read it (from .env or the
        environment, a path resolved); a derived variable that is no setting (an upstream, a
        log file) is the caller's when the caller set it: a runner that starts programs of its
        own (the lab) points the configuration at them that way."""
        run_dir, log_dir = self.run_dir.resolve(), self.log_dir.resolve()
        sync_inflight = self.sync_max_inflight or sync_max_inflight(self.sync_workers())
        public = self.public_dir()
        # .env first, the real environment over it: the same precedence pydantic-settings uses.
        env = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}
        env.update(os.environ)
        env.update(
            TWINSTACK_ROOT=str(ROOT),
            TWINSTACK_VENV=sys.prefix,
            TWINSTACK_RUN_DIR=str(run_dir),
            TWINSTACK_LOG_DIR=str(log_dir),
            TWINSTACK_HTTP_PORT=str(self.http_port),
            **self.tls_environment(),
            # Where Locust's UI points by default: the public entry, HTTPS when it is on.
            TWINSTACK_PUBLIC_URL=self.public_url(),
            TWINSTACK_ASYNC_PORT=str(self.async_port),
            TWINSTACK_SYNC_PORT=str(self.sync_port),
            TWINSTACK_DOWNSTREAM_PORT=str(self.downstream_port),
            TWINSTACK_LOCUST_PORT=str(self.locust_port),
            TWINSTACK_NGINX_STATUS_PORT=str(self.nginx_status_port),
            TWINSTACK_NGINX_STATUS_LISTEN=f"127.0.0.1:{self.nginx_status_port}",
            TWINSTACK_NGINX_STATUS_ALLOW="127.0.0.1",
            TWINSTACK_ASYNC_UPSTREAM=f"127.0.0.1:{self.async_port}",
            TWINSTACK_SYNC_UPSTREAM=f"127.0.0.1:{self.sync_port}",
            TWINSTACK_DOWNSTREAM_URL=f"http://127.0.0.1:{self.downstream_port}",
            TWINSTACK_WEB_ROOT=str(public / "html" if public else ROOT / "nginx" / "html"),
            # Tells nginx_config.render to refresh that copy; unset (no copy) in other runners.
            TWINSTACK_WEB_ROOT_COPY="true" if public else "false",
            TWINSTACK_NGINX_TEMP_DIR=str(public / "temp" if public else run_dir / "nginx" / "temp"),
            TWINSTACK_NGINX_BIN=self.nginx() or "nginx",
            # Each process writes its own log file; none goes through supervisord's pipes
            # (logrotate.conf rotates them).
            TWINSTACK_NGINX_ACCESS_LOG=str(log_dir / "nginx.log"),
            TWINSTACK_NGINX_ERROR_LOG=str(log_dir / "nginx-error.log"),
            TWINSTACK_ASYNC_LOG_FILE=str(log_dir / "fastapi.log"),
            TWINSTACK_SYNC_LOG_FILE=str(log_dir / "flask.log"),
            TWINSTACK_LOGROTATE_BIN=self.logrotate() or "logrotate",
            TWINSTACK_LOG_ROTATE_SIZE=self.log_rotate_size,
            TWINSTACK_LOG_ROTATE_KEEP=str(self.log_rotate_keep),
            TWINSTACK_NGINX_GLOBALS=self.nginx_globals(run_dir / "nginx"),
            TWINSTACK_SYNC_MAX_INFLIGHT=str(sync_inflight),
            TWINSTACK_SYNC_MAX_INFLIGHT_PER_CLIENT=str(
                self.sync_max_inflight_per_client or client_share(sync_inflight)
            ),
            TWINSTACK_CLIENT_MAX_CONNS=str(self.client_max_conns),
            TWINSTACK_WS_MAX_PER_CLIENT=str(self.ws_max_per_client),
            TWINSTACK_ASYNC_DB_MAX_INFLIGHT_PER_CLIENT=str(self.async_db_per_client()),
            TWINSTACK_EXPENSIVE_RATE_LIMIT_RPS=str(self.expensive_rate_limit_rps),
            TWINSTACK_EXPENSIVE_RATE_LIMIT_BURST=str(self.expensive_rate_limit_burst),
            TWINSTACK_PROXY_TIMEOUT_S=str(self.proxy_timeout_s),
            TWINSTACK_SERVER_NAMES=self.server_names,
            TWINSTACK_CORS_ORIGIN_REGEX=self.cors_origin_regex,
            TWINSTACK_RATE_LIMIT_RPS=str(self.rate_limit_rps),
            TWINSTACK_RATE_LIMIT_BURST=str(self.rate_limit_burst),
            TWINSTACK_MONITORING_AUTOSTART="true" if self.monitoring else "false",
            TWINSTACK_DB_PORT=str(self.db_port),
            TWINSTACK_DB_MAX_CONNECTIONS=str(self.max_connections()),
            TWINSTACK_DB_CLIENTS=",".join(self.db_clients()),
            TWINSTACK_DATABASE_URL=self.service_database_url(),
            TWINSTACK_PG_AUTOSTART="false" if self.external_database() else "true",
            TWINSTACK_PG_BIN_DIR=str(self.postgres_bin() or "/usr/lib/postgresql/bin"),
            TWINSTACK_PG_DATA=str(self.postgres_data()),
            TWINSTACK_PG_USER=postgres.server_user(),
            TWINSTACK_PROMETHEUS_PORT=str(self.prometheus_port),
            TWINSTACK_NGINX_EXPORTER_PORT=str(self.nginx_exporter_port),
            TWINSTACK_PROMETHEUS_BIN=shutil.which("prometheus") or "prometheus",
            TWINSTACK_NGINX_EXPORTER_BIN=shutil.which("prometheus-nginx-exporter") or "prometheus-nginx-exporter",
        )
        settings = {f"TWINSTACK_{name.upper()}" for name in type(self).model_fields}
        env.update({k: v for k, v in os.environ.items() if k.startswith("TWINSTACK_") and k not in settings})
        # Natively every pool binds loopback only: nginx is the one public entry.
        env.setdefault("TWINSTACK_ASYNC_HOST", "127.0.0.1")
        env.setdefault("TWINSTACK_SYNC_HOST", "127.0.0.1")
        return env


def worker_user() -> str:
    """``user`` for nginx's workers when started as root: www-data (Debian's nginx package
    creates it), else nobody, each with its own primary group."""
    for name in ("www-data", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return f"{name} {grp.getgrgid(entry.pw_gid).gr_name}"
    raise RuntimeError("no unprivileged user (www-data or nobody) for nginx's workers")
