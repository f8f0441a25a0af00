"""How long and how hard the lab runs: ``full`` (make bench), ``quick`` (QUICK=1), ``tiny`` (make test).

Every mode runs every experiment; only durations, concurrency levels and sizes shrink. The tiny
mode also paces its load generators: it runs inside make test,
beside the rest of the suite on the same CPUs, to show that every row of the report is made,
and its figures say nothing of speed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Mode(BaseModel):
    """How long and how hard one run of the lab measures (recorded in results.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    duration_s: int  # per measured point (wrk counts whole seconds)
    io_levels: tuple[int, ...]  # concurrency levels of the /io and /cpu curves
    cpu_levels: tuple[int, ...]
    scale: tuple[int, ...]  # sync workers (and gthread threads) for the scaling claim
    connections: int  # claim 1: connections one async process holds at once
    connections_delay_ms: int
    connections_waves: int
    websockets: int  # claim 11: WebSockets held open at once
    jobs: int  # claim 10: background jobs posted per service
    locust_users: int
    io_delay_ms: int = 50
    cpu_work: int = 10_000  # SHA-256 rounds, about 7 ms of CPU
    peer_io_concurrency: int = 64
    peer_cpu_concurrency: int = 8
    peer_rounds: int = 2  # interleaved rounds per peer: a win must beat every round
    peer_duration_s: int = 1
    proxy_concurrency: int = 32
    query_concurrency: int = 64  # claim 13: clients reading orders through nginx
    # The overhead experiment's waits through nginx: (delay in ms, concurrency) points.
    overhead_io: tuple[tuple[int, int], ...] = ((100, 200), (100, 500), (1000, 2000))
    # Claim 15's routes through its nginx, HTTPS against HTTP: one through a pool, one static file.
    tls_routes: tuple[str, ...] = ("/async/health", "/static/style.css")
    # The database-path experiment (bench/dbpath.py): its rounds of peer_duration_s, and routes.
    db_path_rounds: int = 3
    db_path_routes: tuple[str, ...] = ("get", "post", "post-key", "list")
    # 0: every wrk run goes as fast as it can. Otherwise each is paced to about this many
    # requests a second (each connection waits concurrency / pace_rps between its requests).
    pace_rps: int = 0


MODES = {
    "full": Mode(
        name="full",
        duration_s=5,
        io_levels=(1, 8, 32, 128, 512),
        cpu_levels=(1, 4, 16, 64, 512),
        scale=(1, 2, 4, 8),
        connections=2000,
        connections_delay_ms=2000,
        connections_waves=3,
        websockets=500,
        jobs=10,
        locust_users=50,
        peer_rounds=3,
        peer_duration_s=3,
    ),
    "quick": Mode(
        name="quick",
        duration_s=1,
        io_levels=(1, 16, 512),
        cpu_levels=(1, 16, 512),
        scale=(1, 4),
        connections=1000,
        connections_delay_ms=1000,
        connections_waves=2,
        websockets=200,
        jobs=4,
        locust_users=20,
        db_path_rounds=1,
    ),
    "tiny": Mode(
        name="tiny",
        duration_s=1,
        io_levels=(1, 8),
        cpu_levels=(1, 4),
        scale=(1, 4),
        connections=100,
        connections_delay_ms=200,
        connections_waves=2,
        websockets=10,
        jobs=2,
        locust_users=4,
        cpu_work=2_000,
        overhead_io=((100, 50), (100, 100), (200, 200)),
        query_concurrency=16,
        # One round of each contender: tiny mode checks that every row is there, never which
        # contender wins (interleaved rounds are for make bench).
        peer_rounds=1,
        # Claim 15's five runs on one route: the pool's, which goes through both nginx and a pool.
        tls_routes=("/async/health",),
        # The database path on one read and one write (each of its wrk scripts), one round.
        db_path_rounds=1,
        db_path_routes=("get", "post-key"),
        pace_rps=200,
    ),
}
