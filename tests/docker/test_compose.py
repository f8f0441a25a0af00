"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the Compose
specification's schema, hadolint, the deployment rules, and parity with native mode (same
nginx, gunicorn and Locust files, same variable names, same ports inside the stack)."""

from __future__ import annotations

import configparser
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from native import nginx_config
from native.certificates import make_certificate
from native.settings import StackSettings, deployed
from tests.support import ROOT, require_binary


def merged(base: dict, over: dict) -> dict:
    """Compose's merge for extends: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_extends(service: dict, path: Path) -> dict:
    """A service with its extends resolved, as often as the chain goes: from another file
    (relative to the file that names it) or from the same file."""
    if "extends" not in service:
        return service
    ext = service["extends"]
    source = path.parent / ext["file"] if "file" in ext else path
    base = yaml.safe_load(source.read_text())["services"][ext["service"]]
    return merged(resolve_extends(base, source), {k: v for k, v in service.items() if k != "extends"})


def load_compose(path: Path) -> dict:
    """A compose file as Compose reads it: its include:d files' services added, each service's
    extends resolved; paths relative to the file that names them. An include's env_file gives
    the defaults its file's ${VAR}s take when neither .env nor the shell sets them: kept in
    DEFAULTS, by service."""
    model = yaml.safe_load(path.read_text())
    services = {name: resolve_extends(service, path) for name, service in model.get("services", {}).items()}
    for included in model.get("include", []):
        entry = {"path": included} if isinstance(included, str) else included
        defaults = {}
        for env_file in [entry["env_file"]] if isinstance(entry.get("env_file"), str) else entry.get("env_file", []):
            defaults |= {k: v for k, v in dotenv_values(path.parent / env_file).items() if v is not None}
        for name, service in load_compose(path.parent / entry["path"])["services"].items():
            assert name not in services, f"{entry['path']} redefines {name}"
            services[name] = service
            DEFAULTS[name] = defaults
    return {**model, "services": services}


# The include env_file defaults of each service that has some (nginx: nginx/defaults.env).
DEFAULTS: dict[str, dict[str, str]] = {}
COMPOSE = load_compose(ROOT / "docker-compose.yml")
SERVICES = COMPOSE["services"]
HALF_SERVICES = {half.program for half in deployed()}
# The database, and the one-shot that migrates it before the pools start: in every project.
DATABASE = {"postgres", "migrate"}
ONE_SHOT = {"migrate"}
CORE = {"nginx", "downstream", *DATABASE, *HALF_SERVICES}
# The monitoring part (monitoring/compose.yaml), where the project has it.
MONITORING = {"nginx-exporter", "prometheus", "grafana"} if (ROOT / "monitoring").is_dir() else set()
PYTHON_SERVICES = {"downstream", "migrate", *HALF_SERVICES}
# Every compose file a project has: the stack's, the TLS override, the shared settings, each
# half's, monitoring's.
COMPOSE_FILES = [
    "docker-compose.yml",
    "docker-compose.tls.yml",
    "nginx/compose.yaml",
    "compose/python-service.yml",
    *(f"{half.package}/compose.yaml" for half in deployed()),
    *(["monitoring/compose.yaml"] if MONITORING else []),
]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SUPERVISOR = configparser.RawConfigParser()
SUPERVISOR.read(sorted((ROOT / "native/programs").glob("*.conf")))
BIN = Path(sys.executable).parent


def env_example() -> dict[str, str]:
    pairs = re.findall(r"^#?(TWINSTACK_[A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    return dict(pairs)


def interpolate(value: str, source: dict[str, str] | None = None, defaults: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, resolved from .env.example (or from
    ``source``: {} gives each default, as Compose does with no .env), then from ``defaults``
    (an include's env_file)."""
    example = {k: v for k, v in (env_example() if source is None else source).items() if v}
    known = {**(defaults or {}), **example}

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if op == ":-" and not known.get(name):
            return arg
        return known.get(name, "")

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, str(value))


TLS_OVERRIDE = yaml.safe_load((ROOT / "docker-compose.tls.yml").read_text())["services"]


def environment(service: str, tls: bool = False) -> dict[str, str]:
    """A service's environment as Compose gives it; with ``tls``, docker-compose.tls.yml's over it."""
    values = dict(SERVICES[service].get("environment", {}))
    if tls:
        values.update(TLS_OVERRIDE.get(service, {}).get("environment", {}))
    return {k: interpolate(v, defaults=DEFAULTS.get(service)) for k, v in values.items()}


def seconds(text: str) -> float:
    return float(re.fullmatch(r"(\d+)s", text).group(1))


# --- The Compose specification and hadolint ---------------------------------------------------


def test_compose_files_validate_against_the_compose_spec_schema():
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", *COMPOSE_FILES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_an_invalid_file(tmp_path):
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  web:\n    restart: sometimes-maybe\n    ports: 8080\n")
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", bad], capture_output=True
    )
    assert result.returncode != 0


def test_dockerfile_passes_hadolint():
    result = subprocess.run([BIN / "hadolint", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Deployment rules ---------------------------------------------------------------------------


def test_no_version_key_and_the_expected_services():
    assert "version" not in COMPOSE
    assert set(SERVICES) == CORE | {"locust-master", "locust-worker"} | MONITORING
    for name in CORE:
        assert "profiles" not in SERVICES[name], name
    assert SERVICES["locust-master"]["profiles"] == SERVICES["locust-worker"]["profiles"] == ["loadtest"]
    for name in MONITORING:
        assert SERVICES[name]["profiles"] == ["monitoring"], name


def test_only_nginx_and_the_profiles_uis_publish_ports():
    published = {name for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {"nginx", "locust-master"} | MONITORING - {"nginx-exporter"}
    assert all("profiles" in SERVICES[name] for name in published - {"nginx"})
    assert "${TWINSTACK_PUBLIC_PORT:?" in SERVICES["nginx"]["ports"][0]  # required: fails fast


def test_operator_tools_are_published_on_loopback_only_by_default():
    """Locust swarms any host it is given, Prometheus has no login, Grafana an admin."""
    for name in {"locust-master"} | MONITORING - {"nginx-exporter"}:
        (mapping,) = SERVICES[name]["ports"]
        assert interpolate(mapping).startswith("127.0.0.1:"), (name, mapping)
    assert env_example()["TWINSTACK_OPS_BIND_ADDRESS"] == ""  # documented, left to the default


def test_nginx_may_open_enough_files():
    assert SERVICES["nginx"]["ulimits"]["nofile"] >= 10240  # nginx.conf worker_rlimit_nofile


def test_every_service_is_healthchecked_restarted_and_ordered():
    """Every long-running service is probed and restarted, and waits for what it needs to be
    healthy; a one-shot is neither, and what needs it waits for it to complete successfully."""
    for name, svc in SERVICES.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", name
            assert svc["healthcheck"].get("disable") is True, name
        else:
            assert svc.get("healthcheck", {}).get("test"), name
            assert not svc["healthcheck"].get("disable"), name
            assert svc.get("restart") == "unless-stopped", name
        for dep, cond in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == expected, (name, dep)
    # nginx waits for each half's pool that is deployed, and starts without one that is not.
    waits = SERVICES["nginx"]["depends_on"]
    assert set(waits) >= HALF_SERVICES
    assert all(waits[half.program].get("required") is False for half in deployed())


def test_each_half_and_monitoring_is_one_included_file_beside_its_files():
    parts = [f"{half.package}/compose.yaml" for half in deployed()] + (
        ["monitoring/compose.yaml"] if MONITORING else []
    )
    # nginx's first, with its defaults (nginx/defaults.env) as the env_file of its variables.
    assert COMPOSE["include"] == [{"path": "nginx/compose.yaml", "env_file": "nginx/defaults.env"}, *parts]
    for half in deployed():
        (service,) = yaml.safe_load((ROOT / half.package / "compose.yaml").read_text())["services"]
        assert service == half.program


def test_app_services_have_resource_limits():
    for name in PYTHON_SERVICES:
        limits = SERVICES[name]["deploy"]["resources"]["limits"]
        assert limits.get("cpus") and limits.get("memory"), name


def test_stop_grace_outlasts_gunicorn_graceful_timeout():
    for half in deployed():
        graceful = runpy.run_path(str(ROOT / half.package / "gunicorn.conf.py"))["graceful_timeout"]
        for name in CORE:
            assert seconds(SERVICES[name]["stop_grace_period"]) > graceful, name
    assert SERVICES["nginx"]["stop_signal"] == "SIGQUIT"  # graceful for nginx


def test_dockerfile_is_multi_stage_pinned_and_non_root():
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert bases[0] == bases[1] and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0])
    assert re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE, re.M) == ["wheels", "runtime"]
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.M)
    assert "twinstack_runtime.healthcheck" in DOCKERFILE.split("HEALTHCHECK", 1)[1]
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert "gcc" not in runtime and "build-essential" not in runtime and "apt-get" not in runtime
    # One image per service: the build argument names its folder, whose requirements.txt is all
    # it adds to the shared packages.
    for name in PYTHON_SERVICES:
        folder = SERVICES[name]["build"]["args"]["SERVICE"]
        assert (ROOT / folder / "requirements.txt").is_file(), name
        assert "target" not in SERVICES[name]["build"], name


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "run", "logs"} <= set(ignored)


# --- The database ------------------------------------------------------------------------------


def default(reference: str) -> str:
    """The default of a compose ``${VAR:-default}`` reference (the whole value)."""
    return re.fullmatch(r"\$\{[A-Z0-9_]+:-([^}]*)\}", reference).group(1)


def test_postgres_is_native_modes_major_version_pinned_exactly():
    """An exact patch tag, as nginx's is, of the major version native mode runs (Debian's
    PostgreSQL, found by native/postgres.py): a dump or a query behaves the same in both."""
    from native import postgres

    image = SERVICES["postgres"]["image"]
    match = re.fullmatch(r"postgres:(\d+)\.(\d+)-(bookworm|alpine)", image)
    assert match, f"{image}: pin postgres:<major>.<minor>-<variant>"
    binaries = Path(require_binary(str(postgres.bin_dir() or ""), "PostgreSQL"))
    version = subprocess.run([binaries / "postgres", "--version"], capture_output=True, text=True, check=True).stdout
    assert match.group(1) == re.search(r"PostgreSQL\) (\d+)\.", version).group(1), (image, version)


def test_no_password_is_written_in_any_compose_file():
    """Each password comes from .env: a value under a key that names a password is a ${...}
    reference without a default, and so is the password part of any URL."""

    urls = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if "PASSWORD" in str(key).upper() and not isinstance(value, (dict, list)):
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:\?[^}]*|:-)?\}", str(value)), (where, key, value)
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, str):
            for secret in re.findall(r"://[^\s:/@]+:(\$\{[^}]*\}|[^\s@]*)@", node):
                urls.append(where)
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", secret), (where, secret)

    for name in COMPOSE_FILES:
        walk(yaml.safe_load((ROOT / name).read_text()), name)
    assert urls  # the database URL was among them
    assert env_example()["TWINSTACK_DB_PASSWORD"] == ""  # none shipped: each deployment sets its own


def test_postgres_credentials_come_from_env_and_match_native_mode():
    from native import postgres

    env = SERVICES["postgres"]["environment"]
    assert env["POSTGRES_USER"] == postgres.ROLE and env["POSTGRES_DB"] == postgres.DATABASE
    assert env["POSTGRES_PASSWORD"].startswith("${TWINSTACK_DB_PASSWORD:?")  # required: fails fast
    # The URL the pools and the migrator get: that role, that password, that database, there.
    url = SERVICES["migrate"]["environment"]["TWINSTACK_DATABASE_URL"]
    assert url == f"postgresql://{postgres.ROLE}:{env['POSTGRES_PASSWORD']}@postgres:5432/{postgres.DATABASE}"


def test_postgres_max_connections_is_the_budgets_limit():
    """The server's max_connections and what each master checks its budget against are one
    variable with one default, native mode's and the code's."""
    from twinstack_db.settings import DEFAULT_MAX_CONNECTIONS, DatabaseSettings

    command = SERVICES["postgres"]["command"]
    # The server must be given a number: the code's default, stated (the one place Compose does).
    assert command == [
        "postgres",
        "-c",
        f"max_connections=${{TWINSTACK_DB_MAX_CONNECTIONS:-{DEFAULT_MAX_CONNECTIONS}}}",
    ]
    for name in {*HALF_SERVICES, "migrate"}:  # the clients: the same variable, else the same default
        assert SERVICES[name]["environment"]["TWINSTACK_DB_MAX_CONNECTIONS"] == "${TWINSTACK_DB_MAX_CONNECTIONS:-}", (
            name
        )
    # Native mode sizes its own server: at least the same default, more if the budget needs it.
    assert StackSettings.model_fields["db_max_connections"].default is None
    assert DatabaseSettings.model_fields["db_max_connections"].default == DEFAULT_MAX_CONNECTIONS
    assert env_example()["TWINSTACK_DB_MAX_CONNECTIONS"] == ""


def test_postgres_keeps_its_data_in_a_named_volume():
    (mount,) = SERVICES["postgres"]["volumes"]
    volume, target = mount.split(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in COMPOSE["volumes"] and not volume.startswith((".", "/"))


def test_postgres_is_probed_with_pg_isready_like_every_service():
    check = SERVICES["postgres"]["healthcheck"]
    assert check["test"][:2] == ["CMD", "pg_isready"]
    # Over TCP, where the pools connect (the first run's initialisation serves the socket only).
    assert check["test"][check["test"].index("-h") + 1] == "127.0.0.1"
    assert {k: v for k, v in check.items() if k != "test"} == {
        k: v for k, v in SERVICES["nginx"]["healthcheck"].items() if k != "test"
    }  # the x-probe anchor


def test_postgres_is_private_and_hardened():
    svc = SERVICES["postgres"]
    assert "ports" not in svc and svc["networks"] == ["stack"]
    assert "no-new-privileges:true" in svc["security_opt"]
    assert svc["read_only"] is True and "/run/postgresql" in svc["tmpfs"]
    assert svc["deploy"]["resources"]["limits"]["memory"]
    # Fast shutdown, as long as native mode's supervisord allows (stopwaitsecs).
    assert svc["stop_signal"] == f"SIG{SUPERVISOR['program:postgres']['stopsignal']}"
    assert seconds(svc["stop_grace_period"]) == int(SUPERVISOR["program:postgres"]["stopwaitsecs"])


def test_migrate_runs_alembic_upgrade_head_once_before_the_pools():
    migrate = SERVICES["migrate"]
    assert migrate["build"]["args"]["SERVICE"] == "migrations"
    assert migrate["command"] == ["alembic", "-c", "migrations/alembic.ini", "upgrade", "head"]
    assert (ROOT / migrate["command"][2]).is_file()
    assert re.search(r"^alembic==\S+$", (ROOT / "migrations/requirements.txt").read_text(), re.M)
    assert migrate["restart"] == "no" and migrate["healthcheck"]["disable"] is True
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # Each pool starts once the database is healthy and migrated. Being waited for by a service
    # that keeps running is also what lets `docker compose up --wait` accept migrate's exit.
    for half in deployed():
        waits = SERVICES[half.program]["depends_on"]
        assert waits["postgres"] == {"condition": "service_healthy"}, half.program
        assert waits["migrate"] == {"condition": "service_completed_successfully"}, half.program


def test_database_settings_reach_the_services_that_use_the_database():
    """The URL goes to the pools and the migrator, not the downstream; every pool gets every
    pool's budget variables (each master checks the whole budget), passed through: unset, each
    is the code's default (one home: the settings classes), never a number restated here."""
    from twinstack_db.settings import AsyncDbPool, DatabaseSettings, SyncDbPool

    assert "TWINSTACK_DATABASE_URL" not in SERVICES["downstream"]["environment"]
    assert not {k for k in SERVICES["postgres"]["environment"] if k.startswith("TWINSTACK_")}
    variables = {"TWINSTACK_DB_POOL_TIMEOUT_S", "TWINSTACK_DB_PREPARED_STATEMENTS"}
    for pool in (AsyncDbPool, SyncDbPool):
        variables |= {pool.model_config["env_prefix"].upper() + field.upper() for field in pool.model_fields}
    assert {f"TWINSTACK_{f.upper()}" for f in ("db_pool_timeout_s", "db_prepared_statements")} <= {
        f"TWINSTACK_{f.upper()}" for f in DatabaseSettings.model_fields
    }
    for name in {*HALF_SERVICES, "migrate"}:
        env = SERVICES[name]["environment"]
        assert env["TWINSTACK_DATABASE_URL"].startswith("postgresql://"), name
        for variable in variables:
            assert env[variable] == f"${{{variable}:-}}", (name, variable)
    for half in deployed():
        env = SERVICES[half.program]["environment"]
        assert {"TWINSTACK_ASYNC_WORKERS", "TWINSTACK_SYNC_WORKERS"} <= set(env), half.program


def test_every_python_default_is_passed_through_never_restated():
    """A variable a settings class has a default for reaches a container as ${X:-} (or as a
    value the runner sets on purpose, such as an address): Compose restates no default."""
    from tests.test_defaults import defaults as homes  # every default, read from its home

    defaults = set(homes())
    assert {"TWINSTACK_JOB_CAPACITY", "TWINSTACK_SYNC_DB_POOL_SIZE", "TWINSTACK_SYNC_THREADS"} <= defaults
    passed = 0
    for name in PYTHON_SERVICES:
        for variable, value in SERVICES[name].get("environment", {}).items():
            if variable in defaults and str(value).startswith("${"):
                assert value == f"${{{variable}:-}}", (name, variable, value)
                passed += 1
    assert passed >= 10  # not vacuous: the pools' tunables are all passed through


def test_the_default_budget_fits_the_default_max_connections():
    """With the code's defaults and the containers' CPU limit, both masters start."""
    from twinstack_db import budget
    from twinstack_db.settings import DEFAULT_MAX_CONNECTIONS, AsyncDbPool, SyncDbPool
    from twinstack_runtime.serving import async_workers, sync_workers

    cpus = int(interpolate(SERVICES[next(iter(HALF_SERVICES))]["deploy"]["resources"]["limits"]["cpus"]))
    pools = [
        budget.PoolBudget("async", async_workers(cpus), AsyncDbPool(_env_file=None)),
        budget.PoolBudget("sync", sync_workers(cpus), SyncDbPool(_env_file=None)),
    ]
    assert budget.check(pools, DEFAULT_MAX_CONNECTIONS) <= DEFAULT_MAX_CONNECTIONS


def test_the_shedding_limits_are_the_rules_values_at_the_default_cpu_limit():
    """nginx cannot see the pools' sizes under Compose, so it states them: they must be what
    native mode derives (twinstack_runtime/serving.py) for the containers' default CPU limit."""
    from twinstack_db import budget
    from twinstack_db.settings import AsyncDbPool
    from twinstack_runtime.serving import async_workers, client_share, sync_max_inflight, sync_workers

    cpus = int(interpolate(SERVICES[next(iter(HALF_SERVICES))]["deploy"]["resources"]["limits"]["cpus"]))
    env = environment("nginx")
    inflight = sync_max_inflight(sync_workers(cpus))
    connections = budget.PoolBudget("async", async_workers(cpus), AsyncDbPool(_env_file=None)).connections
    assert int(env["TWINSTACK_SYNC_MAX_INFLIGHT"]) == inflight
    assert int(env["TWINSTACK_SYNC_MAX_INFLIGHT_PER_CLIENT"]) == client_share(inflight)
    assert int(env["TWINSTACK_ASYNC_DB_MAX_INFLIGHT_PER_CLIENT"]) == client_share(connections)


# --- Parity with native mode --------------------------------------------------------------------


def test_same_nginx_files():
    mounts = {v.split(":")[0]: v.split(":")[1] for v in SERVICES["nginx"]["volumes"]}
    # nginx/compose.yaml's paths are relative to its own folder.
    assert mounts == {
        "./nginx.conf": "/etc/nginx/nginx.conf",
        "./snippets": "/etc/nginx/snippets",
        "./locations": "/etc/nginx/locations",
        "./templates": "/etc/nginx/templates",
        "./html": environment("nginx")["TWINSTACK_WEB_ROOT"],
    }
    # Native mode renders exactly those (native/nginx_config.py).
    assert nginx_config.NGINX_DIR == ROOT / "nginx"


def test_each_image_holds_the_shared_packages_and_its_own_service_only():
    """No other service, no native mode, no lab, no tests in any image; and the lab's own
    dependencies (bench/requirements.txt) never reach one."""
    stage = DOCKERFILE.split("AS wheels\n", 1)[1].split("FROM", 1)[0]
    copied = set(re.findall(r"^COPY (\S+)/ ", stage, re.M))
    assert copied == {"twinstack_contract", "twinstack_runtime", "twinstack_db", "${SERVICE}"}
    assert "-r ${SERVICE}/requirements.txt" in stage and "bench" not in DOCKERFILE


def test_same_gunicorn_files():
    for half in deployed():
        conf = re.search(r"-c (\S+)", SUPERVISOR[f"program:{half.program}"]["command"]).group(1)
        assert SERVICES[half.program]["command"] == ["gunicorn", "-c", conf]
        assert SERVICES[half.program]["build"]["args"]["SERVICE"] == conf.split("/")[0] == half.package


def test_same_locust_files():
    native = SUPERVISOR["program:locust"]["command"]
    for service in ("locust-master", "locust-worker"):
        assert "--config loadtest/locust.conf" in SERVICES[service]["command"]
        assert "./loadtest:/mnt/twinstack/loadtest:ro" in SERVICES[service]["volumes"]
    assert "--config loadtest/locust.conf" in native


def test_same_ports_inside_the_stack():
    native = StackSettings.model_fields
    assert environment("nginx")["TWINSTACK_HTTP_PORT"] == str(native["http_port"].default)
    for half in deployed():
        port = native[f"{half.prefix}_port"].default
        variable = f"TWINSTACK_{half.prefix.upper()}"
        assert environment("nginx")[f"{variable}_UPSTREAM"] == f"{half.program}:{port}"
        assert environment(half.program)[f"{variable}_PORT"] == str(port)
        assert environment(half.program)["TWINSTACK_HEALTH_URL"] == f"http://127.0.0.1:{port}/health"
        assert str(port) in SERVICES[half.program]["expose"]
        assert environment(half.program)["TWINSTACK_DOWNSTREAM_URL"].endswith(f":{native['downstream_port'].default}")
    command = SERVICES["downstream"]["command"]
    assert command[command.index("--port") + 1] == str(native["downstream_port"].default)
    assert SERVICES["nginx"]["ports"][0].endswith(f":{native['http_port'].default}")
    assert SERVICES["locust-master"]["ports"][0].endswith(f":{native['locust_port'].default}")


def known_variables() -> set[str]:
    import importlib

    from twinstack_db.settings import AsyncDbPool, DatabaseSettings, SyncDbPool
    from twinstack_runtime.serving import AsyncPool, SyncPool

    names = set(StackSettings().environment()) | {f"TWINSTACK_{f.upper()}" for f in StackSettings.model_fields}
    for half in deployed():
        settings = importlib.import_module(f"{half.package}.settings").Settings
        names |= {f"TWINSTACK_{f.upper()}" for f in settings.model_fields}
    for settings in (AsyncPool, SyncPool, AsyncDbPool, SyncDbPool, DatabaseSettings):
        names |= {settings.model_config["env_prefix"] + f.upper() for f in settings.model_fields}
    return {n for n in names if n.startswith("TWINSTACK_")}


def test_same_variable_names():
    """Every TWINSTACK_* variable compose sets is one the code reads (native mode, settings),
    and every one .env.example documents is used by compose or the code."""
    known = known_variables()
    compose_vars = set()
    for svc in SERVICES.values():
        compose_vars |= {k for k in svc.get("environment", {}) if k.startswith("TWINSTACK_")}
    assert compose_vars - known - {"TWINSTACK_HEALTH_URL"} == set()
    text = "".join((ROOT / name).read_text() for name in COMPOSE_FILES)
    interpolated = set(re.findall(r"\$\{(TWINSTACK_[A-Z0-9_]+)", text))
    assert set(env_example()) - known - interpolated == set()


# --- nginx -t with the compose values -----------------------------------------------------------


def service_names_nginx(env: dict[str, str], tmp_path: Path, nginx_bin: str):
    """Render the templates with a runner's nginx environment (Compose's, Kubernetes's) and
    run nginx -t where the service names resolve, as the runner's DNS would make them (a
    private mount namespace with its own /etc/hosts; the host's is untouched)."""
    import os

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to give nginx -t its own /etc/hosts")
    env = dict(env)
    env["TWINSTACK_NGINX_TEMP_DIR"] = str(tmp_path / "nginx" / "temp")  # a path, not a port: may differ
    prefix = nginx_config.render(env, tmp_path / "nginx")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost fastapi flask downstream\n")

    def nginx_t() -> subprocess.CompletedProcess[str]:
        globals_ = StackSettings.nginx_globals(prefix, foreground=False)
        script = (
            f'mount --bind {hosts} /etc/hosts && {nginx_bin} -t -p {prefix}/ -c nginx.conf -e stderr -g "{globals_}"'
        )
        return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)

    return prefix, nginx_t


@pytest.fixture
def docker_like_nginx(tmp_path, nginx_bin):
    return service_names_nginx(environment("nginx"), tmp_path, nginx_bin)


def test_nginx_t_passes_with_the_compose_upstream_names(docker_like_nginx):
    prefix, nginx_t = docker_like_nginx
    for half in deployed():
        upstreams = (prefix / "conf.d" / f"{half.prefix}.conf").read_text()
        assert f"server {environment('nginx')[f'TWINSTACK_{half.prefix.upper()}_UPSTREAM']} " in upstreams
    result = nginx_t()
    assert result.returncode == 0, result.stderr


def image_nginx_version() -> tuple[int, int, int]:
    version = re.fullmatch(r"nginx:(\d+)\.(\d+)\.(\d+)(-\w+)?", SERVICES["nginx"]["image"]).groups()[:3]
    return tuple(map(int, version))


def test_the_tls_override_writes_https_as_the_images_nginx_needs():
    """The override renders the HTTPS server for the image's nginx, as native mode does for the
    one it runs (nginx_config.tls_version_variables): `http2 on;` from 1.25.1, where `listen ...
    http2` is deprecated, and the handshake's own timeout from 1.25.5."""
    env = environment("nginx", tls=True)
    wanted = nginx_config.tls_version_variables(image_nginx_version())
    assert {name: env[name] for name in wanted} == wanted
    assert wanted["TWINSTACK_TLS_NGINX"] == "1.25.5"  # the pinned image is past both changes


def test_nginx_t_passes_with_the_tls_override(docker_like_nginx, nginx_bin):
    """The HTTPS server as the override renders it, certificate paths and all; only HTTP/2's
    directive is the one this host's nginx needs (the one above is checked against the image's)."""
    prefix, nginx_t = docker_like_nginx
    env = environment("nginx", tls=True)
    certs = Path(env["TWINSTACK_TLS_CERTIFICATE"]).parent
    assert certs == Path("/etc/nginx/certs")  # where the override mounts nginx/tls/certs
    cert, key = make_certificate(prefix / "certs")
    env.update(TWINSTACK_TLS_CERTIFICATE=str(cert), TWINSTACK_TLS_CERTIFICATE_KEY=str(key))
    env.update(nginx_config.tls_version_variables(nginx_config.version(nginx_bin)))
    tls = nginx_config.render_template(nginx_config.TLS_TEMPLATE.read_text(), env)
    # Where the image renders the override's templates/tls/ (nginx.conf includes conf.d/tls/).
    (prefix / "conf.d" / "tls").mkdir()
    (prefix / "conf.d" / "tls" / "twinstack-tls.conf").write_text(tls)
    result = nginx_t()
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr, result.stderr


def test_the_tls_override_probes_https_where_nginx_listens():
    """With the override the plain port redirects (308): the health check asks the HTTPS server
    itself, on the port nginx listens on inside the container, and the redirect is on."""
    env = environment("nginx", tls=True)
    probe = TLS_OVERRIDE["nginx"]["healthcheck"]["test"]
    assert probe[-1] == f"https://127.0.0.1:{env['TWINSTACK_TLS_PORT']}/"
    assert env["TWINSTACK_TLS_REDIRECT"] == "true" and environment("nginx")["TWINSTACK_TLS_REDIRECT"] == "false"
    published = TLS_OVERRIDE["nginx"]["ports"][0]
    assert published.endswith(f":{env['TWINSTACK_TLS_PORT']}") and env["TWINSTACK_TLS_PUBLIC_PORT"] == "8443"
