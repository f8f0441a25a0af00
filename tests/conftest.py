"""Fixtures every test layer shares: a real downstream service, and settings built on it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from downstream_service.main import create_app as create_downstream
from tests.support import ROOT, free_port, require_binary, serving

# In CI, a skip is a failure (tests/ci_guard.py).
pytest_plugins = ["tests.ci_guard"]

# How `make test` shares the test files among its processes (pytest-xdist, --dist loadscope):
# each file runs in order on one process, so a module's fixtures (a private stack, the lab's run,
# a virtualenv for the project copies) are made once. The longest files are handed out first,
# the rest follow in collection order (--no-loadscope-reorder).
LONGEST_FIRST = (
    "tests/bench/test_lab_run.py",
    "tests/test_variants_run.py",
    "tests/integration/test_reliability.py",
    "tests/test_template.py",
    "tests/integration/test_database.py",
    "tests/integration/test_supervision.py",
    "tests/integration/test_tls.py",
    "tests/integration/test_hardening.py",
    "tests/integration/sync_half/test_serving_models_sync.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    # Stable: a file's tests keep their order.
    items.sort(key=lambda item: rank.get(item.path.relative_to(ROOT).as_posix(), len(rank)))


@pytest.fixture(scope="session")
def downstream_url() -> Iterator[str]:
    """The real downstream app under uvicorn, in a thread, for in-process service tests."""
    with serving(create_downstream()) as url:
        yield url


@pytest.fixture
def settings_kwargs(downstream_url: str, database_url: str) -> dict:
    """What both services' Settings get in tests: the live downstream and the tests'
    PostgreSQL, migrated to head."""
    return {"downstream_url": downstream_url, "database_url": database_url}


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    from native.settings import StackSettings

    return require_binary(StackSettings().nginx(), "nginx")


# As root, in a container, with no network but loopback: no sandbox, no background services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium driven by Playwright (executable_path: never a download of its own).
    One per test file: Playwright's sync API keeps an event loop running in the thread while it
    is open, and a later test file on the same process may call ``asyncio.run``."""
    from playwright.sync_api import sync_playwright

    chromium = require_binary(shutil.which("chromium") or shutil.which("chromium-browser"), "chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL of the tests' own, made as native mode makes its own (``python -m native
    cluster``, native/commands.py) on a free port, with the application's database created and
    nothing else: a libpq URL."""
    import signal
    import subprocess
    import tempfile

    from native import postgres
    from native.commands import make_cluster
    from native.settings import StackSettings

    settings = StackSettings()
    binaries = Path(require_binary(str(settings.postgres_bin() or ""), "PostgreSQL (initdb)"))
    # Where the server's user may enter: as root it runs as postgres, and pytest's tmp is 0700.
    home = Path(tempfile.mkdtemp(prefix="twinstack-pg-", dir="/var/tmp"))
    port = free_port()
    log = (tmp_path_factory.mktemp("postgres") / "postgres.log").open("w")
    try:
        cluster = make_cluster(settings, home, port)
        server = subprocess.Popen(cluster["argv"], stdout=subprocess.DEVNULL, stderr=log, **cluster["run_as"])
        try:
            postgres.wait_ready(binaries, port, 30)
            url = cluster["url"].rsplit("/", 1)[0] + f"/{postgres.DATABASE}"
            postgres.ensure_database(url)
            yield url
        finally:
            server.send_signal(signal.SIGINT)  # fast shutdown
            server.wait(timeout=60)
    finally:
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def other_database(url: str, name: str) -> str:
    """``url`` with another database of the same server, created empty (dropped first)."""
    import psycopg
    from psycopg import sql

    maintenance = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def empty_database_url(postgres_url: str) -> str:
    """A database with nothing in it, on the tests' server (for the migrations)."""
    return other_database(postgres_url, "empty")


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    """The application's database, migrated to head as `make up` does (alembic upgrade head)."""
    import os
    import subprocess
    import sys

    from tests.support import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "migrations/alembic.ini"), "upgrade", "head"],
        cwd=ROOT, env={**os.environ, "TWINSTACK_DATABASE_URL": postgres_url}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return postgres_url
