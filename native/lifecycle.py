"""The stack's lifecycle under supervisord: ``up``, ``down``, ``reload``, ``status``, ``logs``,
``delete-data`` and ``check``, as the Makefile's native mode runs them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from . import nginx_config, postgres, preflight
from .certificates import check_certificate
from .preflight import StackError
from .settings import ROOT, StackSettings, deployed

CONF = ROOT / "native" / "supervisord.conf"
# supervisord.conf includes one file per program; these run only with MONITORING=1.
PROGRAM_FILES = ROOT / "native" / "programs"
MONITORING_PROGRAMS = ("nginx-exporter", "prometheus")


def programs(settings: StackSettings) -> tuple[str, ...]:
    """Every program supervisord was given (one file each), monitoring only when it is on,
    PostgreSQL only when the database is the private cluster."""
    names = sorted(path.stem for path in PROGRAM_FILES.glob("*.conf"))
    names = [n for n in names if not (n == "postgres" and settings.external_database())]
    return tuple(n for n in names if settings.monitoring or n not in MONITORING_PROGRAMS)


def render_monitoring(settings: StackSettings) -> None:
    """run/prometheus/ for MONITORING=1, from the monitoring part (native/monitoring.py,
    monitoring/), which a project may be generated without."""
    try:
        from . import monitoring
    except ImportError:  # native/monitoring.py is not there
        raise StackError("this project has no monitoring (made without it): MONITORING=1 is not available") from None
    try:
        monitoring.render(settings)
    except monitoring.MonitoringError as exc:
        raise StackError(str(exc)) from None


def _pid(settings: StackSettings) -> int | None:
    try:
        pid = int((settings.run_dir / "supervisord.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _ctl(env: dict[str, str], *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.prefix) / "bin" / "supervisorctl"), "-c", str(CONF), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check)


# The readiness probes ask nginx on loopback, where a certificate made for the public name (or
# a self-signed one) cannot match: the probe checks that HTTPS answers, not who signed it.
_PROBE_TLS = ssl.create_default_context()
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2, context=_PROBE_TLS) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def ready_urls(settings: StackSettings) -> list[str]:
    """What answers 200 when the stack is ready: the public entry (HTTPS when it is on) and each
    pool through it; with HTTPS on, the plain port too (serving, or redirecting there)."""
    base = settings.public_url()
    urls = [f"{base}/", *(f"{base}/{half.prefix}/ready" for half in deployed())]
    if settings.tls:
        urls.append(f"http://127.0.0.1:{settings.http_port}/")
    urls.append(f"http://127.0.0.1:{settings.locust_port}/")
    if settings.monitoring:
        urls.append(f"http://127.0.0.1:{settings.prometheus_port}/-/ready")
    return urls


def wait_ready(settings: StackSettings) -> None:
    deadline = time.monotonic() + settings.ready_timeout_s
    pending = ready_urls(settings)
    while pending and time.monotonic() < deadline:
        pending = [url for url in pending if _get(url) != 200]
        if pending:
            time.sleep(0.3)
    if pending:
        raise StackError(f"not ready after {settings.ready_timeout_s:.0f} s: {', '.join(pending)}")


def start_programs(settings: StackSettings, env: dict[str, str]) -> None:
    """Start every program that is not running yet, all at once: supervisorctl waits for each
    one it starts (its startsecs), so one call per program, side by side. Idempotent."""
    cmd = [str(Path(sys.prefix) / "bin" / "supervisorctl"), "-c", str(CONF), "start"]
    calls = [subprocess.Popen([*cmd, name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name in programs(settings)]  # fmt: skip
    for call in calls:
        call.wait()


def migrate(settings: StackSettings, env: dict[str, str]) -> None:
    """Wait for PostgreSQL, create the database on first start, apply the migrations: once,
    here, before any pool starts (never in a worker, never in a gunicorn hook). An external
    database is waited for by connecting to it; its owner has created it."""
    try:
        if settings.external_database():
            postgres.wait_connectable(env["TWINSTACK_DATABASE_URL"], settings.ready_timeout_s)
        else:
            binaries = settings.postgres_bin()
            assert binaries is not None  # checked by up()
            postgres.wait_ready(binaries, settings.db_port, settings.ready_timeout_s)
            postgres.ensure_database(env["TWINSTACK_DATABASE_URL"])
    except (postgres.PostgresError, OSError) as exc:
        raise StackError(f"{exc} (see {settings.log_dir}/postgres.log)") from None
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "migrations" / "alembic.ini"), "upgrade", "head"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise StackError(f"migrations failed:\n{result.stderr.strip()}")


def up(settings: StackSettings) -> None:
    env = settings.environment()
    if _pid(settings):
        if settings.monitoring:
            render_monitoring(settings)
        if not settings.external_database():
            _ctl(env, "start", "postgres")
        migrate(settings, env)  # new migrations since the stack started
        start_programs(settings, env)  # whatever was stopped
        wait_ready(settings)
        print("twinstack is already running.")
        return
    nginx = preflight.nginx(settings)
    preflight.logrotate(settings)
    if not settings.external_database():
        preflight.postgres_bin(settings)
    preflight.connection_budget(settings, env)
    if settings.tls:
        check_certificate(settings)
    preflight.ports_free(settings)
    for directory in (settings.run_dir, settings.log_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if settings.monitoring:
        render_monitoring(settings)
    prefix = nginx_config.render(env, settings.run_dir.resolve() / "nginx")
    nginx_config.check(nginx, prefix, env["TWINSTACK_NGINX_GLOBALS"])
    render_logrotate(env, settings.run_dir.resolve())
    try:
        if not settings.external_database():
            postgres.ensure_cluster(
                settings.postgres_bin(),
                settings.postgres_data(),
                postgres.password(settings.run_dir.resolve(), settings.db_password),
            )
    except postgres.PostgresError as exc:
        raise StackError(str(exc)) from None
    subprocess.run([str(Path(sys.prefix) / "bin" / "supervisord"), "-c", str(CONF)], env=env, check=True)
    try:
        migrate(settings, env)
        start_programs(settings, env)
        wait_ready(settings)
    except StackError:
        print(_ctl(env, "status").stdout, file=sys.stderr)
        print(f"Logs: {settings.log_dir}/", file=sys.stderr)
        raise
    print(f"twinstack is up (native mode, logs in {settings.log_dir}/):")
    base = settings.public_url("localhost")
    print(f"  {'landing page':15} {base}/")
    for half in deployed():
        print(f"  {half.prefix + ' ' + half.page:15} {base}/{half.prefix}/{half.page}")
    print(f"  {'Locust web UI':15} http://localhost:{settings.locust_port}/")
    if settings.monitoring:
        print(f"  {'Prometheus':15} http://localhost:{settings.prometheus_port}/")


def render_logrotate(env: dict[str, str], run_dir: Path) -> Path:
    """run/logrotate.conf from native/logrotate.conf.template; logrotate ignores a config file
    others may write, so it is 0644."""
    target = run_dir / "logrotate.conf"
    template = (ROOT / "native" / "logrotate.conf.template").read_text()
    target.write_text(nginx_config.render_template(template, env))
    target.chmod(0o644)
    return target


# A program's states once it is stopped (or never ran): supervisord's, as its RPC names them.
_STOPPED = {"STOPPED", "EXITED", "FATAL"}


def _supervisor(settings: StackSettings) -> xmlrpc.client.ServerProxy:
    """supervisord's XML-RPC interface, on the stack's private socket (as supervisorctl uses it)."""
    transport = SupervisorTransport(None, None, f"unix://{settings.run_dir / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def stop_in_order(settings: StackSettings, deadline: float) -> None:
    """Stop the programs in reverse priority (nginx drains first, then the pools, then the
    downstream, PostgreSQL last), each with its graceful signal and stopwaitsecs, programs of
    one priority together. supervisord's own shutdown keeps the same order, but notices each
    stop only at its next one-second tick; asking for the states here wakes it to reap."""
    rpc = _supervisor(settings).supervisor
    stages: dict[int, list[str]] = {}
    for info in rpc.getAllConfigInfo():
        stages.setdefault(info["process_prio"], []).append(f"{info['group']}:{info['name']}")
    for priority in sorted(stages, reverse=True):
        for name in stages[priority]:
            with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING: nothing to stop
                rpc.stopProcess(name, False)
        while any(rpc.getProcessInfo(name)["statename"] not in _STOPPED for name in stages[priority]):
            if time.monotonic() > deadline:
                raise StackError(f"{', '.join(stages[priority])} still running after their stop")
            time.sleep(0.05)


def down(settings: StackSettings, timeout_s: float = 120.0) -> None:
    pid = _pid(settings)
    if pid is None:
        print("twinstack is not running.")
        return
    deadline = time.monotonic() + timeout_s
    try:
        stop_in_order(settings, deadline)
    except (OSError, xmlrpc.client.Error) as exc:  # its socket gone: its own shutdown stops them
        print(f"supervisord did not answer ({exc}): stopping it with SIGTERM")
    # Then supervisord itself (with a program still running, its own shutdown stops it in order).
    os.kill(pid, signal.SIGTERM)
    while _pid(settings) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid(settings):
        raise StackError(f"supervisord (pid {pid}) still running after {timeout_s:.0f} s")
    if (public := settings.public_dir()) is not None:  # the web root's copy (as root)
        shutil.rmtree(public, ignore_errors=True)
    print("twinstack stopped.")


def delete_data(settings: StackSettings) -> None:
    """Remove the private cluster (make clean): every order, job and migration with it."""
    if _pid(settings):
        raise StackError("twinstack is running: stop it first (make down).")
    data = settings.postgres_data()
    # The folder made for it (as root: /var/lib/twinstack/<stack>/; else run/postgres/).
    folder = data.parent if settings.db_data_dir is None else data
    if folder.exists():
        shutil.rmtree(folder)
        print(f"deleted the database in {folder}")


def reload(settings: StackSettings) -> None:
    """Graceful reload: gunicorn (HUP) starts new workers with the current config and code,
    then retires the old ones after their requests; nginx re-renders and reloads the same way."""
    if _pid(settings) is None:
        raise StackError("twinstack is not running.")
    env = settings.environment()
    prefix = settings.run_dir.resolve() / "nginx"
    validate_nginx(settings)  # a broken config must not replace a working one
    nginx_config.render(env, prefix)
    result = _ctl(env, "signal", "HUP", *(half.program for half in deployed()), "nginx")
    if result.returncode != 0:
        raise StackError(f"reload failed: {result.stdout}{result.stderr}")
    print("twinstack reloaded: new gunicorn workers and nginx configuration, no request dropped.")


def status(settings: StackSettings) -> int:
    if _pid(settings) is None:
        print("twinstack is not running.")
        return 3
    out = _ctl(settings.environment(), "status", *programs(settings))
    print(out.stdout, end="")
    answers = {url: _get(url) for url in ready_urls(settings)}
    for url, code in answers.items():
        print(f"  {code or 'down':>4}  {url}")
    # Non-zero when a program is not RUNNING (supervisorctl's own code) or the stack does not
    # answer ready, so scripts and health checks can rely on the exit code.
    return out.returncode or (0 if set(answers.values()) == {200} else 1)


def logs(settings: StackSettings) -> None:
    # The files the processes write (nginx's messages apart from its JSON access log), then
    # what supervisord captured of their output (start-up errors).
    names = [*programs(settings), "nginx-error", *(f"{h.program}-console" for h in deployed()), "nginx-console"]
    files = [str(settings.log_dir / f"{name}.log") for name in names]
    os.execvp("tail", ["tail", "-n", "20", "-F", *files])


def validate_nginx(settings: StackSettings) -> None:
    """Render the nginx config into a scratch prefix and run nginx -t on it; the running
    configuration is not touched."""
    nginx = preflight.nginx(settings)
    prefix = settings.run_dir.resolve() / "nginx-check"
    env = {
        **settings.environment(),
        "TWINSTACK_NGINX_TEMP_DIR": str(prefix / "temp"),
        # nginx -t opens the log files: scratch ones, so a check touches no real log.
        "TWINSTACK_NGINX_ACCESS_LOG": str(prefix / "access.log"),
        "TWINSTACK_NGINX_ERROR_LOG": str(prefix / "error.log"),
    }
    nginx_config.render(env, prefix)
    nginx_config.check(nginx, prefix, settings.nginx_globals(prefix, foreground=False))


def check(settings: StackSettings) -> None:
    validate_nginx(settings)
    print("nginx -t: configuration is valid")
