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
    """2 x 10 async + 5 x 3 sync + 1 migrator + 5 reserved = 41 <= 100."""
    pools = [
        PoolBudget("async", async_workers(2), AsyncDbPool()),
        PoolBudget("sync", sync_workers(2), SyncDbPool()),
    ]
    assert [p.connections for p in pools] == [20, 15]
    assert (MIGRATOR_CONNECTIONS, RESERVED_CONNECTIONS) == (1, 5)
    assert budget.check(pools, 100) == 41
    # The docs state the same formula and sum (docs/ is in every project generated).
    database = (ROOT / "docs" / "database.md").read_text()
    formula = "async_workers × TWINSTACK_ASYNC_DB_POOL_SIZE\n  + sync_workers × TWINSTACK_SYNC_DB_POOL_SIZE"
    assert formula in database
    assert "2 × 10 = 20 |" in database and "5 × 3 = 15 |" in database and "| **41**, within" in database


def test_the_environment_sizes_each_pool(monkeypatch):
    for name, value in {
        "TWINSTACK_ASYNC_WORKERS": "3",
        "TWINSTACK_ASYNC_DB_POOL_SIZE": "8",
        "TWINSTACK_SYNC_WORKERS": "4",
        "TWINSTACK_SYNC_DB_POOL_SIZE": "1",
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
        "async: 8 workers x pool_size 10 = 80",
        "sync: 17 workers x pool_size 3 = 51",
        "= 137 > max_connections 100",
    ):
        assert text in message, message
    assert budget.check(pools, 137) == 137  # at the limit exactly: fits


@pytest.mark.parametrize("pool", [AsyncDbPool, SyncDbPool])
def test_the_overflow_variable_of_earlier_releases_is_refused_not_ignored(monkeypatch, pool):
    """Pools have a fixed size now: a deployment that still sets *_MAX_OVERFLOW would silently
    run with fewer connections than it asked for, so it is told what to change instead."""
    prefix = pool.model_config["env_prefix"]
    monkeypatch.setenv(f"{prefix}MAX_OVERFLOW", "5")
    with pytest.raises(ValueError, match=f"{prefix}MAX_OVERFLOW is no longer read.*{prefix}POOL_SIZE"):
        pool()
    monkeypatch.setenv(f"{prefix}MAX_OVERFLOW", "")  # Compose's ${X:-} unset: nothing to refuse
    assert pool().pool_size >= 1


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
