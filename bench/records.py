"""What the lab records, as typed models: every figure of results.json has a field here.

``Results`` is the whole file. A measured run is a ``Run`` (``bench.load.record`` makes one
for every tool); a claim's verdict is a ``ClaimRecord``; a table of one kind of row (the proxy
runs, the static files, the peers, the overhead contenders) has a model of its own that
extends ``Run`` with its row's figures. ``bench/results.schema.json`` is generated from these
models (``python -m bench schema``) and a copy sits beside every results.json, which names it
in ``$schema``; ``bench compare`` and ``bench report`` read results.json back through them.

Figures are plain numbers: a NaN or an infinity is refused where it is recorded, not found in
the report. A field that is None was not measured by that run (its tool or its experiment
does not produce it) and is left out of results.json.
"""

from __future__ import annotations

import json
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .modes import Mode

SCHEMA_FILE = "results.schema.json"
Scalar = bool | int | float | str
# A server's or a run's settings as the report shows them: server, worker class, workers...
Settings = dict[str, Scalar]
Verdict = Literal["holds", "does not hold", "inconclusive"]
Chart = Literal["", "io", "cpu", "stall", "scaling", "memory", "pool", "tls"]
R = TypeVar("R", bound="Run")


class Record(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class Latency(Record):
    """Latency percentiles of one run, in milliseconds."""

    p50: float
    p95: float
    p99: float
    mean: float
    max: float


class Background(Record):
    """The second wrk that loaded the same server during a run (claims 3 and 9)."""

    url: str
    concurrency: int
    requests: int
    errors: int
    latency_ms_p50: float


class Limits(Record):
    """The physical limits one run could not beat (``bench.verdicts.physical_limits``)."""

    slots: int
    """Requests the server could hold at once: the concurrency for an event loop, the workers
    for sync, workers x threads for gthread."""
    little_rps: float | None = None
    """Little's law, slots / latency (None: the requests do not wait)."""
    little_ratio: float | None = None
    cores_available: float
    cpu_ms_per_request_ref: float
    """The CPU time per request the utilisation law uses: the lowest on the curve."""
    cpu_cost_rise: float
    utilisation: float
    cpu_rps: float | None = None
    """The utilisation law, free cores / CPU seconds per request (None: no CPU time measured)."""
    cpu_ratio: float | None = None
    bound_rps: float
    binding: Literal["little", "cpu"]
    ratio: float


class Run(Record):
    """One measured run: what the load generator sent and got back, and what the servers under
    it used (CPU seconds of every process of their trees, peak RSS and PSS)."""

    label: str
    tool: str
    url: str
    concurrency: int
    duration_s: float
    settings: Settings = {}
    requests: int
    """Requests sent."""
    errors: int
    """Requests that failed: a 4xx/5xx, a connection error, a timeout."""
    error_rate: float
    throughput_rps: float
    """Good responses a second."""
    latency_ms: Latency
    latency_censored: bool
    """The slowest requests were still waiting when the run ended: its p99 reads low."""
    settle_s: float
    settled: bool
    """The servers were idle when the run started."""
    server_cpu_s: float
    server_cpu_cores: float
    server_cpu_cores_by: dict[str, float]
    cpu_ms_per_request: float
    server_rss_mb: float
    server_pss_mb: float
    server_pss_idle_mb: float
    generator_cpu_s: float
    generator_cpu_cores: float
    generator_saturated: bool
    """The load generator used >= 90 % of the CPU it could get: it, not the server, set the pace."""
    box_cpu_utilisation: float
    box_saturated: bool

    # What one tool measures besides the figures every run has.
    background: Background | None = None
    held_concurrency: int | None = None
    """The asyncio client (claim 1): requests in flight at one instant, counted."""
    handshakes: int | None = None
    """The websockets client (claim 11): handshakes answered with 101."""
    opened: int | None = None
    """The websockets client: WebSockets held open and echoing."""
    refused_status: int | None = None
    """The websockets client: the HTTP status of a refused handshake (0: none)."""
    jobs_done: int | None = None
    """The jobs client (claim 10): jobs that finished."""
    finished_after_response: int | None = None
    """The jobs client: jobs that finished after their 202 had arrived."""
    job_run_ms_p50: float | None = None

    # What a claim adds to its runs (a claim's runs are one list of whatever it ran).
    limits: Limits | None = None
    """The curves and claim 5: the limits of this run."""
    beside: str | None = None
    """Claims 3 and 9: what loaded the worker meanwhile."""
    family: str | None = None
    """Claim 5: sync workers or gthread threads; claim 12: the pool and its connections."""
    slots: int | None = None
    """Claim 5: workers, or threads of one worker; claim 12: the database connections."""
    pss_kb_per_connection: float | None = None
    """Claim 1: memory each held connection added to the idle worker."""
    pss_mb_per_request: float | None = None
    """Claim 6: the server's peak PSS over the requests it held."""
    pss_mb_added_per_request: float | None = None
    """Claim 6: what holding the requests added to the idle server, per request."""
    db_budget: str | None = None
    """Claim 13: the database connections this stack was given, and how they are made up."""
    db_connections: int | None = None
    """Claim 13: the server connections of that budget (pgbench: its clients)."""
    db_connections_used: int | None = None
    """Claim 13: distinct server connections that ran a statement during the run (pg_stat_activity)."""
    db_connections_peak: int | None = None
    """Claim 13: the most of them running a statement at one sample."""
    database_ratio: float | None = None
    """Claim 13: throughput over pgbench's, same table, same number of server connections."""
    bound_by: str | None = None
    """Claims 13 and 15: what limited the run, as measured (the box, the generator, PostgreSQL,
    the app)."""
    nginx_cpu_ms_per_request: float | None = None
    """Claim 15: nginx's CPU time per request (its share of the servers' CPU seconds)."""
    generator_cpu_ms_per_request: float | None = None
    """Claim 15: the load generator's CPU time per request (wrk's own TLS work included)."""
    connect_ms: float | None = None
    """Claim 15: the mean time a request spent opening its connection (TCP, and TLS's handshake),
    concurrency / throughput - wrk's mean latency: wrk times a request from its first byte,
    once its connection is open, and each of its connections always has one in flight."""
    connections_opened: int | None = None
    """Claim 15: connections nginx saw the run open (a lab-only log of each one's first request)."""
    tls_resumed: int | None = None
    """Claim 15: of those, TLS handshakes that resumed a session (nginx's $ssl_session_reused);
    the others were full handshakes."""
    tls: str | None = None
    """Claim 15: the HTTP and TLS protocols and the cipher nginx logged for the run's connections
    ("" over plain HTTP)."""
    ratio_to_http: float | None = None
    """Claim 15: an HTTPS run's throughput over that of plain HTTP, same route and connections,
    same round."""
    p99_ratio_to_http: float | None = None
    """Claim 15: an HTTPS run's p99 over that of plain HTTP, same route and connections, same round."""

    def extended(self, model: type[R], **fields: object) -> R:
        """This run as a row of a table whose model adds figures of its own."""
        return model.model_validate({**self.model_dump(), **fields})


class Yardstick(Record):
    name: str
    formula: str
    value: float
    unit: str


class Measured(Record):
    name: str
    value: float
    unit: str


class ClaimRecord(Record):
    """One claim's verdict: what ran, its runs, the yardstick, the measured figure, the ratio
    of the two, the band the claim states, the verdict and why."""

    claim: int
    text: str
    what: str
    runs: list[Run]
    yardstick: Yardstick
    measured: Measured
    ratio: float
    band: str
    verdict: Verdict
    reason: str
    chart: Chart = ""
    """The chart the report draws beside it (once per chart)."""


class Series(Record):
    settings: Settings
    points: list[Run]


class Curve(Record):
    """Throughput and p99 against concurrency on one path, for each serving model."""

    path: str
    levels: list[int]
    series: dict[str, Series]


class Curves(Record):
    io: Curve | None = None
    cpu: Curve | None = None


class ProxyRun(Run):
    pool: str
    path_kind: str
    """direct, through nginx with or without upstream keep-alive, or twinstack's configuration."""
    ratio_to_direct: float = 0.0


class StaticRun(Run):
    ratio_to_nginx: float = 0.0


class RoundsRow(Run):
    """A contender of interleaved rounds: its median round, every round's throughput beside it."""

    rounds_rps: list[float]
    rps_low: float
    rps_high: float


class PeerRow(RoundsRow):
    peer: str
    twinstack: bool
    rank: int = 0


class Workload(Record):
    path: str
    concurrency: int
    rows: list[PeerRow]
    """Best first."""


class Peers(Record):
    groups: dict[str, dict[str, Workload]] = {}
    """By interface (ASGI, WSGI), then workload (io, cpu)."""
    rounds: int | None = None
    duration_s: int | None = None


class OverheadRow(RoundsRow):
    contender: str
    ratio_to_bare: float = 0.0
    ratio_to_twinstack: float = 0.0
    ratio_to_direct: float | None = None


class LittleRun(Run):
    """``/async/io`` through nginx against Little's law (the overhead experiment)."""

    delay_ms: int
    staggered: bool
    little_rps: float
    steady_rps: float
    """concurrency / mean latency: the throughput judged."""
    little_ratio: float


class OverheadPool(Record):
    rows: list[OverheadRow] = []
    io: list[LittleRun] = []


class Target(Record):
    key: str
    what: str
    target: float
    measured: float | None = None
    """None: not measured in this run."""
    met: bool | None = None
    figures: str = ""
    binds: str
    """What set the pace of the run measured."""


class Overhead(Record):
    rounds: int | None = None
    duration_s: int | None = None
    concurrency: int | None = None
    pools: dict[str, OverheadPool] = {}
    targets: list[Target] = []


class DbPathRow(RoundsRow):
    """One contender on one route of one pool (the database-path experiment, bench/dbpath.py):
    its median round by throughput, with the figures of every round beside it."""

    pool: str
    """async or sync: the pool's gunicorn.conf.py it ran on."""
    route: str
    contender: str
    cpu_us_per_request: float
    """CPU microseconds of the server's processes (master and workers) per response served
    (2xx): the median of its rounds."""
    cpu_us_rounds: list[float]
    postgres_cpu_us_per_request: float
    """The same for PostgreSQL's processes, the median of its rounds."""
    sessions_opened: int
    """PostgreSQL sessions opened during its measured rounds, all of them together (the warm-up
    before them left out): ``pg_stat_database.sessions`` after each run less before, less the
    reading's own connection."""
    sessions_rounds: list[int]
    raw_cpu_ratio: float | None = None
    """The raw driver's CPU per request over this row's, same pool and route (None: the raw
    driver was not measured there)."""


class DbPathPool(Record):
    concurrency: int
    workers: int
    reference_connections: int
    """Connections each worker of a reference app keeps open (min = max, no overflow)."""
    rows: list[DbPathRow] = []


class DbPath(Record):
    """The database-path experiment: twinstack's order routes against the raw driver and the
    same libraries used plainly (bench/db_apps.py), by pool."""

    rounds: int | None = None
    duration_s: int | None = None
    pools: dict[str, DbPathPool] = {}
    targets: list[Target] = []


class Machine(Record):
    cpu_model: str
    cpus: int
    usable_cpus: int
    memory_gib: float
    os: str
    kernel: str
    versions: dict[str, str]


class CpuLayoutRecord(Record):
    servers: list[int]
    generator: list[int]
    pinned: bool


class Results(Record):
    """One run of the lab (results.json). Each section an experiment of the registry fills
    (``bench.registry``) is a field with a default: what the section is when it could not run."""

    schema_file: str = Field(SCHEMA_FILE, alias="$schema")
    mode: Mode
    started: str
    finished: str = ""
    elapsed_s: float = 0.0
    machine: Machine
    cpu_layout: CpuLayoutRecord
    notes: list[str] = []
    failures: list[str] = []
    """The parts of the run that could not be measured (tracebacks in logs/lab-errors.log)."""
    experiments: list[ClaimRecord] = []
    """Every claim's record, by claim."""
    ceiling: Run | None = None
    """wrk against nginx ``return 200``: the box's own ceiling."""
    curves: Curves = Curves()
    overhead: Overhead = Overhead()
    dbpath: DbPath = DbPath()
    proxy: list[ProxyRun] = []
    static: list[StaticRun] = []
    peers: Peers = Peers()

    def to_json(self) -> str:
        # Unmeasured figures (None) are left out; a NaN cannot get this far (allow_inf_nan).
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=1, allow_nan=False)


def schema() -> dict:
    """The JSON schema of results.json, generated from the models."""
    return Results.model_json_schema()


def schema_json() -> str:
    return json.dumps(schema(), indent=1) + "\n"
