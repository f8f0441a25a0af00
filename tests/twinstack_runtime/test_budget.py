"""The database connection budget: what the pools may open, checked against max_connections
before any worker starts (twinstack_db/budget.py, gunicorn_base.on_starting)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import ROOT, free_port
from twinstack_db import budget
from twinstack_db.budget import BudgetError, PoolBudget
from twinstack_db.settings import MIGRATOR_CONNECTIONS, RESERVED_CONNECTIONS, AsyncDbPool, SyncDbPool
from twinstack_runtime.serving import async_workers, database_budget, sync_workers


def test_the_defaults_on_two_cpus_are_the_readme_table():
    """2 x (10 + 5) async + 5 x (2 + 1) sync + 1 migrator + 5 reserved = 51 <= 100."""
    pools = [
        PoolBudget("async", async_workers(2), AsyncDbPool()),
        PoolBudget("sync", sync_workers(2), SyncDbPool()),
    ]
    assert [p.connections for p in pools] == [30, 15]
    assert (MIGRATOR_CONNECTIONS, RESERVED_CONNECTIONS) == (1, 5)
    assert budget.check(pools, 100) == 51


def test_the_environment_sizes_each_pool(monkeypatch):
    for name, value in {
        "TWINSTACK_ASYNC_WORKERS": "3",
        "TWINSTACK_ASYNC_DB_POOL_SIZE": "7",
        "TWINSTACK_ASYNC_DB_MAX_OVERFLOW": "1",
        "TWINSTACK_SYNC_WORKERS": "4",
        "TWINSTACK_SYNC_DB_POOL_SIZE": "1",
        "TWINSTACK_SYNC_DB_MAX_OVERFLOW": "0",
    }.items():
        monkeypatch.setenv(name, value)
    assert [(p.name, p.connections) for p in database_budget()] == [("async", 24), ("sync", 4)]
    monkeypatch.setenv("TWINSTACK_DB_CLIENTS", "sync")  # a project with the sync half only
    assert [(p.name, p.connections) for p in database_budget()] == [("sync", 4)]


def test_a_budget_over_max_connections_names_every_number():
    pools = [PoolBudget("async", 8, AsyncDbPool()), PoolBudget("sync", 17, SyncDbPool())]
    with pytest.raises(BudgetError) as caught:
        budget.check(pools, 100)
    message = str(caught.value)
    for text in (
        "async: 8 workers x (pool_size 10 + max_overflow 5) = 120",
        "sync: 17 workers",
        "= 177 > max_connections 100",
    ):
        assert text in message, message
    assert budget.check(pools, 177) == 177  # at the limit exactly: fits


# The pools this project has (a half may have been lifted out).
CONFS = [
    conf for conf in ("fastapi_service/gunicorn.conf.py", "flask_service/gunicorn.conf.py") if (ROOT / conf).exists()
]


@pytest.mark.parametrize("conf", CONFS)
def test_a_master_refuses_to_start_over_budget_before_any_worker(conf: str, tmp_path):
    """Not a late "too many clients" under load: the master exits at once with the sum."""
    env = {
        **os.environ,
        "TWINSTACK_RUN_DIR": str(tmp_path),
        "TWINSTACK_DB_MAX_CONNECTIONS": "20",
        "TWINSTACK_ASYNC_PORT": str(free_port()),
        "TWINSTACK_SYNC_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", conf], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "database connection budget does not fit" in done.stderr, done.stderr[-2000:]
    assert "> max_connections 20" in done.stderr
    assert "Booting worker" not in done.stderr
