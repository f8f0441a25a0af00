"""The lab's app (bench/lab_app.py): twinstack's FastAPI app with the labelled anti-patterns
and their fixes under /lab/, each call bounded far below gunicorn's worker timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bench.lab_app import ProcessPool, create_app
from fastapi_service.settings import Settings
from twinstack_contract.errors import ContractError


@pytest.fixture
def lab_client(settings_kwargs: dict) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(**settings_kwargs))) as client:
        yield client


@pytest.mark.parametrize("path", ["/lab/blocking-sleep?delay_ms=10", "/lab/to-thread-sleep?delay_ms=10"])
def test_lab_sleep_endpoints(lab_client: TestClient, path: str):
    assert lab_client.get(path).json()["waited_ms"] >= 10


def test_lab_cpu_endpoints_compute_the_same_digest(lab_client: TestClient):
    in_loop = lab_client.get("/lab/cpu-in-loop?work=2000").json()
    in_pool = lab_client.get("/lab/cpu-in-process-pool?work=2000").json()
    assert in_loop["digest"] == in_pool["digest"] == lab_client.get("/cpu?work=2000").json()["digest"]


@pytest.mark.parametrize(
    "path",
    [
        "/lab/blocking-sleep?delay_ms=2001",  # far below gunicorn's 40 s worker timeout
        "/lab/to-thread-sleep?delay_ms=30000",
        "/lab/cpu-in-loop?work=1000001",
        "/lab/cpu-in-process-pool?work=2000000",
        "/lab/cpu-in-loop?work=0",
        "/lab/blocking-sleep?delay_ms=-1",
    ],
)
def test_lab_calls_are_bounded_far_below_the_worker_timeout(lab_client: TestClient, path: str):
    r = lab_client.get(path)
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_a_busy_process_pool_answers_503_instead_of_queueing():
    pool = ProcessPool(1)

    async def scenario() -> None:
        # Two real calls on its one process, one running and one queued ...
        held = [asyncio.create_task(pool.run(1000)) for _ in range(2)]
        while pool.pending < 2:
            await asyncio.sleep(0)
        # ... and a third is refused at once, not queued behind them.
        with pytest.raises(ContractError) as exc:
            await pool.run(1)
        assert exc.value.status == 503 and exc.value.code == "lab_busy"
        await asyncio.gather(*held)
        assert pool.pending == 0
        await pool.run(1)  # free again

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


def test_the_lab_app_is_twinstacks_app_plus_its_routes(lab_client: TestClient):
    paths = set(lab_client.get("/openapi.json").json()["paths"])
    assert {"/orders", "/jobs", "/health", "/io"} <= paths  # the product's routes, unchanged
    assert {p for p in paths if p.startswith("/lab/")} == {
        f"/lab/{name}"
        for name in (
            "blocking-sleep",
            "to-thread-sleep",
            "blocking-db",
            "to-thread-db",
            "cpu-in-loop",
            "cpu-in-process-pool",
        )
    }
    assert lab_client.post("/lab/cpu-in-loop").status_code == 405  # its methods, as the app's own routes


def test_the_sync_driver_routes_query_the_database(lab_client: TestClient):
    for path in ("/lab/blocking-db?delay_ms=10", "/lab/to-thread-db?delay_ms=10"):
        r = lab_client.get(path)
        assert r.status_code == 200 and r.json()["waited_ms"] >= 10, r.text
