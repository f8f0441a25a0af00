"""One home per default: a value the code or nginx takes when a variable is unset is written
where it is read (a settings class, nginx/defaults.env), described in docs/configuration.md's
table, and tested; no runner, example or page restates it. A runner that must state a value
(PostgreSQL's max_connections, nginx's shedding limits under Compose and Kubernetes) states it
beside a test that compares it with its home (tests/docker, tests/kubernetes)."""

from __future__ import annotations

import inspect
import re
import subprocess
from pathlib import Path

from native import nginx_config
from tests.support import ROOT
from twinstack_db.settings import AsyncDbPool, DatabaseSettings, SyncDbPool
from twinstack_runtime.serving import AsyncPool, SyncPool
from twinstack_runtime.settings import ServiceSettings

SETTINGS = (ServiceSettings, DatabaseSettings, AsyncDbPool, SyncDbPool, AsyncPool, SyncPool)
# Where a default is described, beyond its home: the configuration table, and the timeouts'
# order (docs/architecture.md), which tests/test_timeouts.py checks value by value.
DESCRIBED = {"docs/configuration.md", "docs/architecture.md"}
# Stated by a runner that must state a number, each compared with its home by a test.
STATED = {("docker-compose.yml", "TWINSTACK_DB_MAX_CONNECTIONS")}


def text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def defaults() -> dict[str, tuple[str, str]]:
    """Every variable with a default: its value as written, and the file that is its home. An
    address, a port or a path is the runner's to give (each listens where it is told), not a
    tunable: left out. So is a URL (where a service is)."""
    found = {}
    for cls in SETTINGS:
        prefix = cls.model_config.get("env_prefix", "")
        for field, info in cls.model_fields.items():
            default = info.get_default(call_default_factory=True)
            if info.is_required() or default is None:
                continue
            alias = info.validation_alias
            name = alias if isinstance(alias, str) else (prefix + field).upper()
            home = str(Path(inspect.getsourcefile(cls)).relative_to(ROOT))
            found[name] = (text(default), home)
    for name, value in nginx_config.defaults().items():
        found[name] = (value, "nginx/defaults.env")
    return {k: v for k, v in found.items() if not k.endswith(("_PORT", "_HOST", "_DIR", "_URL"))}


def restatements(root: Path = ROOT) -> list[str]:
    """Lines that name a variable with its default, outside the places allowed."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True)
    seen = []
    wanted = defaults()
    for name in files.stdout.split():
        path = root / name
        if name.startswith("tests/") or name in DESCRIBED or not path.is_file():
            continue
        try:
            lines = path.read_text().splitlines()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(lines, 1):
            for variable, (value, home) in wanted.items():
                if variable not in line or name == home or (name, variable) in STATED:
                    continue
                if re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", line.replace(variable, "")):
                    seen.append(f"{name}:{n}: {variable}={value}: {line.strip()}")
    return seen


def test_the_check_knows_the_defaults_and_their_homes():
    found = defaults()
    assert found["TWINSTACK_JOB_CAPACITY"] == ("32", "twinstack_runtime/settings.py")
    assert found["TWINSTACK_RATE_LIMIT_RPS"] == ("1000", "nginx/defaults.env")
    assert found["TWINSTACK_DB_POOL_TIMEOUT_S"][1] == "twinstack_db/settings.py"


def test_no_default_is_restated_outside_its_home_its_test_and_the_docs_table():
    assert restatements() == []


def test_the_check_finds_a_restated_default(tmp_path: Path):
    """Not vacuous: a line naming a variable with its default is found, and one naming it with
    another value, or with none, is not."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "compose.yaml").write_text(
        "JOBS: ${TWINSTACK_JOB_CAPACITY:-32}\nRPS: ${TWINSTACK_RATE_LIMIT_RPS:-1000}\n"
        "OTHER: ${TWINSTACK_JOB_CAPACITY:-64}\nPASSED: ${TWINSTACK_JOB_CAPACITY:-}\n"
    )
    found = restatements(tmp_path)
    assert [line.split(": ")[0] for line in found] == ["compose.yaml:1", "compose.yaml:2"], found


# Read by the shared pool settings class but meaningless for the async pool (uvicorn's worker is
# its class; it has no threads): not in the table.
UNTABLED = {"TWINSTACK_ASYNC_WORKER_CLASS", "TWINSTACK_ASYNC_THREADS"}


def test_the_configuration_table_gives_each_default():
    table = (ROOT / "docs/configuration.md").read_text()
    rows = {line for line in table.splitlines() if line.startswith("| `TWINSTACK_")}
    missing = []
    for variable, (value, _home) in defaults().items():
        if variable in UNTABLED:
            continue
        row = next((r for r in rows if f"`{variable}`" in r), None)
        if row is None or not re.search(rf"`{re.escape(value)}`|(?<![\w.]){re.escape(value)}(?![\w.])", row):
            missing.append((variable, value))
    assert missing == []
