"""Jobs in the database (twinstack_runtime/jobs.py on the tests' PostgreSQL): a job whose
worker is gone is reported failed, on this host at once and from any host once its lease
ran out; old records are deleted; a full queue refuses before it touches the database, and a
job that could not be recorded gives its slot back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.support import free_port
from twinstack_contract.errors import ContractError
from twinstack_contract.models import Job, JobRequest
from twinstack_db.session import Database
from twinstack_db.settings import DatabaseSettings, PoolLimits
from twinstack_runtime import jobs
from twinstack_runtime.jobs import JobRunner, JobStore


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    db = Database.open(DatabaseSettings(database_url=database_url), PoolLimits(pool_size=2), "test-jobs")
    yield JobStore(db.run, retention_s=60)
    db.close()


def running(owner: str, store: JobStore, database_url: str, heartbeat_age_s: float = 0) -> str:
    job = Job(job_id=uuid.uuid4().hex, status="running", delay_ms=1, work=0, accepted_at=time.time(), served_by="1")
    store.save(job)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE jobs SET owner = %s, heartbeat_at = now() - make_interval(secs => %s) WHERE id = %s",
            (owner, heartbeat_age_s, uuid.UUID(job.job_id)),
        )
    return job.job_id


def test_a_job_of_a_live_owner_is_running(store: JobStore, database_url: str):
    job_id = running(jobs._owner(), store, database_url)
    assert store.run(store.lookup(job_id)).status == "running"


def test_a_job_whose_worker_died_on_this_host_is_failed_at_once(store: JobStore, database_url: str):
    job_id = running(f"{jobs.HOST}:999999999:12345", store, database_url)  # no such process
    job = store.run(store.lookup(job_id))
    assert job.status == "failed" and job.error.startswith("lost")


def test_another_hosts_job_is_failed_once_its_heartbeat_is_older_than_the_lease(store: JobStore, database_url: str):
    fresh = running("other-host:1:1", store, database_url, heartbeat_age_s=jobs.LEASE_S - 5)
    assert store.run(store.lookup(fresh)).status == "running"  # its owner may well be alive: not ours to say
    stale = running("other-host:1:1", store, database_url, heartbeat_age_s=jobs.LEASE_S + 1)
    assert store.run(store.lookup(stale)).status == "failed"


def test_a_runner_heartbeats_the_jobs_it_holds(store: JobStore, database_url: str, monkeypatch):
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.2)
    runner = JobRunner(store, threads=1, capacity=2)
    try:
        job = store.run(runner.accept(JobRequest(delay_ms=1500)))
        runner.start(job)
        with psycopg.connect(database_url, autocommit=True) as conn:
            job_id = uuid.UUID(job.job_id)
            conn.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (job_id,))
            deadline = time.monotonic() + 10  # many heartbeats: 0.2 s apart
            while conn.execute(
                "SELECT heartbeat_at < now() - interval '1 minute' FROM jobs WHERE id = %s", (job_id,)
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the runner never beat the job's heart again"
                time.sleep(0.05)
        assert store.run(store.lookup(job.job_id)).status == "running"  # beaten again since
    finally:
        runner.stop(0)


def test_old_records_are_deleted_and_recent_ones_kept(store: JobStore, database_url: str):
    finished = time.time() - 120
    old_done = Job(
        job_id=uuid.uuid4().hex, status="done", delay_ms=1, work=0, accepted_at=0, finished_at=finished, served_by="1"
    )
    new_done = old_done.model_copy(update={"job_id": uuid.uuid4().hex, "finished_at": time.time()})
    for job in (old_done, new_done):
        store.save(job)
    abandoned = running("other-host:1:1", store, database_url, heartbeat_age_s=120)
    assert store.run(store.sweep()) >= 2
    with pytest.raises(KeyError):
        store.run(store.lookup(old_done.job_id))
    with pytest.raises(KeyError):
        store.run(store.lookup(abandoned))
    assert store.run(store.lookup(new_done.job_id)).status == "done"
    assert store.run(store.sweep()) == 0  # at most once a minute per worker


def test_a_malformed_id_is_not_found_before_any_query(store: JobStore):
    with pytest.raises(KeyError):
        next(store.lookup("not-a-job-id"))  # raised before the operation's first query


@pytest.fixture
def down() -> Iterator[Database]:
    """A database that never answers: nothing listens on its port."""
    database = DatabaseSettings(database_url=f"postgresql://app@127.0.0.1:{free_port()}/none", db_pool_timeout_s=0.5)
    db = Database.open(database, PoolLimits(pool_size=1), "test-jobs-down")
    yield db
    db.close()


def test_a_full_queue_refuses_before_it_touches_the_database(store: JobStore, down: Database):
    runner = JobRunner(store, threads=1, capacity=1)
    try:
        store.run(runner.accept(JobRequest(delay_ms=5000)))  # takes the only slot
        with pytest.raises(ContractError) as refused:
            down.run(runner.accept(JobRequest(delay_ms=1)))
        assert refused.value.status == 503 and refused.value.code == "jobs_busy"  # not database_unavailable
    finally:
        runner.stop(0)


def test_a_job_that_could_not_be_recorded_gives_its_slot_back(store: JobStore, down: Database):
    runner = JobRunner(store, threads=1, capacity=1)
    try:
        for _ in range(3):  # each failure hands the only slot back
            with pytest.raises(ContractError) as failed:
                down.run(runner.accept(JobRequest(delay_ms=1)))
            assert failed.value.code in ("database_unavailable", "pool_exhausted")
        job = store.run(runner.accept(JobRequest(delay_ms=1)))
        assert store.run(store.lookup(job.job_id)).status == "queued"
    finally:
        runner.stop(0)
