"""Claim 15: what TLS costs, measured through nginx: HTTPS against plain HTTP in one run.

One nginx, rendered by the runner from twinstack's configuration with HTTPS on
(``TWINSTACK_TLS=true``, the redirect off), serves the same routes (snippets/routes.conf) on
its plain port and on its HTTPS port, with a self-signed ECDSA P-256 certificate the runner
makes (``python -m native tls-cert``). wrk loads it, HTTP/1.1 (wrk offers no ALPN), on two
routes: ``/async/health``, nginx in front of the async pool (plain HTTP behind it, upstream
keep-alive), and ``/static/style.css``, a file nginx sends itself. Each route runs with its
connections kept alive (wrk's default) and with a new connection per request (``Connection:
close``: nginx closes after each response, wrk connects again), over HTTP and over HTTPS.

wrk keeps its TLS session when it reconnects (its ``SSL_clear`` keeps it) and twinstack's
HTTPS server resumes it from its session cache, so a new connection per request there is a
resumed handshake. The full handshake a client makes on its first visit is measured on a copy
of that server with resumption off, in the same nginx (bench/nginx-tls.conf.template). A
lab-only log there records the first request of every connection: how many connections a run
opened, over which protocols, and whether each handshake was full or resumed. Every round runs
the ten runs in a random order (the seed is recorded), so a drift of the machine is shared by
both schemes.

What a request costs is measured: the CPU time of nginx, of the pool and of wrk per request,
and what bound each run. TLS's cost is nginx's CPU per request over HTTPS minus over HTTP, same
route, same kind of connection, same round: on a kept-alive connection the record layer
(symmetric encryption of each request and response); on a new connection, a handshake besides
(an ECDHE key exchange, and for a full one the certificate's ECDSA signature). The claim holds
where, on every route, TLS cost a request on a new connection, resumed and full, at least
``FACTOR`` times what it cost on a kept-alive one, every round of the one against every round
of the other.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twinstack_runtime.ports import free_port

from .. import runner
from ..records import ClaimRecord, Run
from ..registry import Context, experiment
from ..verdicts import INCONCLUSIVE, NOISE, bound_by, claim_record, decide
from .queries import compare

TEMPLATE = "nginx-tls.conf.template"
KEPT_ALIVE, NEW_CONNECTION = "kept alive", "new connection per request"
# wrk's headers for each kind of connection: Connection: close makes it reconnect after each response.
HEADERS = {KEPT_ALIVE: (), NEW_CONNECTION: ("Connection: close",)}
# The cases compared with plain HTTP: twinstack's HTTPS server kept alive and with a new
# connection per request (resuming the session wrk offers), and the lab's copy of it with
# resumption off, where every handshake is a full one.
NO_RESUMPTION = f"{NEW_CONNECTION}, resumption off"
CASES = (KEPT_ALIVE, NEW_CONNECTION, NO_RESUMPTION)
# (connection, scheme, resumption) of the runs of each route in a round.
RUNS = (
    (KEPT_ALIVE, "http", ""), (KEPT_ALIVE, "https", "on"),
    (NEW_CONNECTION, "http", ""), (NEW_CONNECTION, "https", "on"), (NEW_CONNECTION, "https", "off"),
)  # fmt: skip
# The header that tells the lab-only log which run opened a connection.
RUN_HEADER = "X-Twinstack-Lab-Run"
# The claim holds where TLS costs a request on a new connection at least this many times what
# it costs on a kept-alive one: the handshake is then at least three quarters of it.
FACTOR = 4.0
# What one request's CPU time can be told apart to, in ms: nginx's CPU is read in clock ticks
# (10 ms) over runs of some 10 000 requests. A smaller cost counts as this much.
RESOLUTION_MS = 0.001


@experiment("claim-15", "what TLS costs: HTTPS vs HTTP through nginx, kept alive and per request", claims=(15,))
def claim_15(lab: Context) -> ClaimRecord:
    m = lab.mode
    c = m.proxy_concurrency
    folder = lab.scratch / "tls"
    cert, key = runner.tls_certificate(folder)
    log = folder / "connections.log"
    http_port, tls_port, full_port = free_port(), free_port(), free_port()
    nginx = lab.render_nginx(
        "tls-nginx",
        TEMPLATE,
        http_port,
        {
            "TWINSTACK_HTTP_PORT": str(http_port),
            "TWINSTACK_TLS": "true",
            "TWINSTACK_TLS_PORT": str(tls_port),
            "TWINSTACK_TLS_PUBLIC_PORT": str(tls_port),
            "TWINSTACK_TLS_CERTIFICATE": str(cert),
            "TWINSTACK_TLS_CERTIFICATE_KEY": str(key),
            # Plain HTTP serves the same routes instead of redirecting to HTTPS.
            "TWINSTACK_TLS_REDIRECT": "false",
            "TWINSTACK_NGINX_STATUS_LISTEN": f"127.0.0.1:{free_port()}",  # beside the lab's own nginx
            "TWINSTACK_WEB_ROOT_COPY": "false",  # the lab's own nginx published it already
            "TWINSTACK_BENCH_CONNECTIONS_LOG": str(log),
            "TWINSTACK_BENCH_NO_RESUMPTION_PORT": str(full_port),
        },
    )
    pool = lab.stack.async_pool
    base = {
        ("http", ""): f"http://127.0.0.1:{http_port}",
        ("https", "on"): f"https://127.0.0.1:{tls_port}",
        ("https", "off"): f"https://127.0.0.1:{full_port}",
    }
    cells = [(route, *each) for route in m.tls_routes for each in RUNS]
    seed = int(time.time())
    rng = random.Random(seed)
    lab.section(
        f"claim 15: HTTPS vs HTTP through one nginx on {', '.join(m.tls_routes)}, kept alive and a new connection "
        f"per request, c={c}, {m.peer_rounds} rounds of {m.peer_duration_s} s in random order (seed {seed})"
    )
    runs: list[Run] = []
    with lab.servers.started(nginx):
        for round_no in range(1, m.peer_rounds + 1):
            for route, kind, scheme, resumption in rng.sample(cells, len(cells)):
                mark = str(len(runs) + 1)
                settings = {**nginx.settings, "scheme": scheme, "route": route, "connection": kind,
                            "round": round_no, "round_order_seed": seed, "lab_run": mark}  # fmt: skip
                if resumption:
                    settings["tls_resumption"] = resumption
                label = f"{scheme.upper()} {route}, {kind}{', resumption off' if resumption == 'off' else ''}"
                run = lab.gen.wrk(
                    label, base[(scheme, resumption)] + route, c, m.peer_duration_s, [nginx, pool], settings,
                    headers=(*HEADERS[kind], f"{RUN_HEADER}: {mark}"),
                )  # fmt: skip
                measure(run, nginx.name)
                run.bound_by = bound_by(run, [nginx.name, pool.name], lab.cores, 1, lab.cores, database=False)
                runs.append(run)
    # nginx has stopped: its buffered log lines are written.
    opened = connections(log.read_text().splitlines() if log.exists() else [])
    for run in runs:
        seen = opened.get(str(run.settings["lab_run"]), Opened())
        run.connections_opened, run.tls_resumed, run.tls = seen.count, seen.resumed, seen.protocols()
    if log.exists():  # kept beside nginx's own logs (the scratch folder may be on another file system)
        shutil.move(log, Path(nginx.env["TWINSTACK_NGINX_ACCESS_LOG"]).with_name(f"{nginx.name}-connections.log"))
    table = pair_up(runs)
    runs.sort(key=lambda r: (r.family or "", r.settings.get("round", 0), r.label))
    return record(table, runs, c, m.peer_rounds, m.peer_duration_s, seed, m.tls_routes)


def case_of(run: Run) -> str:
    """Which case a run belongs to: kept alive, a new connection per request, or (HTTPS only)
    a new connection per request to the server with resumption off."""
    if run.settings.get("connection") == KEPT_ALIVE:
        return KEPT_ALIVE
    return NO_RESUMPTION if run.settings.get("tls_resumption") == "off" else NEW_CONNECTION


def measure(run: Run, nginx: str) -> None:
    """What one run's requests cost: nginx's CPU and the generator's per request, and for a new
    connection per request, the time each spent opening it."""
    run.family = f"{run.settings['route']}, {case_of(run)}"
    run.nginx_cpu_ms_per_request = round(cpu_ms_per_request(run, nginx), 4)
    run.generator_cpu_ms_per_request = round(1000 * run.generator_cpu_s / run.requests, 4) if run.requests else 0.0
    if run.settings.get("connection") == NEW_CONNECTION:
        run.connect_ms = round(connect_ms(run), 3)


def cpu_ms_per_request(run: Run, server: str) -> float:
    """One server's share of the CPU time per request the run measured for all it watched."""
    by = run.server_cpu_cores_by
    total = sum(by.values())
    return run.cpu_ms_per_request * by.get(server, 0.0) / total if total else 0.0


def pool_cpu_ms_per_request(run: Run) -> float:
    """The CPU time per request of what the run watched besides nginx: the async pool."""
    return max(0.0, run.cpu_ms_per_request - (run.nginx_cpu_ms_per_request or 0.0))


def connect_ms(run: Run) -> float:
    """The mean time a request spent opening its connection: each of wrk's connections always
    has a request in flight, so a request's whole cycle takes concurrency / throughput (Little's
    law), of which wrk timed the part after its connection was open (its latency)."""
    if run.throughput_rps <= 0:
        return 0.0
    return max(0.0, 1000 * run.concurrency / run.throughput_rps - run.latency_ms.mean)


@dataclass
class Opened:
    """The connections one run opened, as nginx's lab-only log saw them."""

    count: int = 0
    resumed: int = 0
    seen: Counter = field(default_factory=Counter)

    def protocols(self) -> str:
        return "; ".join(what for what, _ in self.seen.most_common())


def connections(lines: Iterable[str]) -> dict[str, Opened]:
    """Each run's connections from the lab-only log's lines (bench/nginx-tls.conf.template):
    one line for the first request of each connection, ``reused`` "r" where the TLS handshake
    resumed a session and "." where it was a full one (empty over plain HTTP)."""
    out: dict[str, Opened] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short when nginx stopped
        opened = out.setdefault(entry["run"], Opened())
        opened.count += 1
        opened.resumed += entry["reused"] == "r"
        tls = f" over {entry['tls']}, {entry['cipher']}" if entry["tls"] else ""
        opened.seen[f"{entry['http']}{tls}"] += 1
    return out


@dataclass
class Pair:
    """One round of one route and case: the plain run and the HTTPS run compared with it."""

    http: Run
    https: Run

    @property
    def cost_ms(self) -> float:
        """What TLS added to nginx's CPU per request."""
        return (self.https.nginx_cpu_ms_per_request or 0.0) - (self.http.nginx_cpu_ms_per_request or 0.0)


@dataclass
class Case:
    """A route in one case (kept alive, a new connection per request, the same with resumption
    off), every round of it over both schemes."""

    route: str
    kind: str
    pairs: list[Pair] = field(default_factory=list)

    def median(self, figure: Callable[[Pair], float]) -> float:
        values = [figure(p) for p in self.pairs]
        return statistics.median(values) if values else 0.0

    @property
    def cost_ms(self) -> float:
        return self.median(lambda p: p.cost_ms)

    @property
    def rps_ratio(self) -> float:
        return self.median(lambda p: p.https.ratio_to_http or 0.0)

    @property
    def p99_ratio(self) -> float:
        return self.median(lambda p: p.https.p99_ratio_to_http or 0.0)

    def outcome(self) -> str:
        """HTTPS's throughput against HTTP's by the lab's rule (``queries.compare``)."""
        return compare([p.https.throughput_rps for p in self.pairs], [p.http.throughput_rps for p in self.pairs])[1]

    def handshakes(self) -> tuple[int, int]:
        """The TLS handshakes of the HTTPS runs: (full, resumed)."""
        opened = sum(p.https.connections_opened or 0 for p in self.pairs)
        resumed = sum(p.https.tls_resumed or 0 for p in self.pairs)
        return opened - resumed, resumed


def pair_up(runs: Sequence[Run]) -> dict[tuple[str, str], Case]:
    """The runs by route and case, each round's HTTPS run beside the plain run it is compared
    with (the same route and kind of connection, the same round), given its throughput and p99
    as ratios of that run's."""
    by = {(r.settings["route"], case_of(r), r.settings["round"], r.settings["scheme"]): r for r in runs}
    table: dict[tuple[str, str], Case] = {}
    routes = list(dict.fromkeys(r.settings["route"] for r in runs))
    order = sorted(by, key=lambda k: (routes.index(k[0]), CASES.index(k[1]), k[2]))
    for route, case, round_no, scheme in order:
        plain = by.get((route, KEPT_ALIVE if case == KEPT_ALIVE else NEW_CONNECTION, round_no, "http"))
        if scheme != "https" or plain is None:
            continue
        https = by[(route, case, round_no, scheme)]
        https.ratio_to_http = round(https.throughput_rps / plain.throughput_rps, 4) if plain.throughput_rps else 0.0
        p99 = plain.latency_ms.p99
        https.p99_ratio_to_http = round(https.latency_ms.p99 / p99, 4) if p99 else 0.0
        table.setdefault((route, case), Case(route, case)).pairs.append(Pair(plain, https))
    return table


def evidence(runs: Sequence[Run]) -> str | None:
    """Why the runs do not show what they were meant to, or None: every HTTPS run went over TLS
    and every plain one did not, as nginx logged them; a new connection per request opened one
    for each request wrk counted (nginx logs a request before wrk reads its response); and the
    server with resumption off made every handshake a full one."""
    for run in runs:
        scheme, tls = run.settings.get("scheme"), run.tls or ""
        if not run.connections_opened:
            return f"nginx logged no connection of '{run.label}'"
        if (scheme == "https") != (" over TLS" in tls):
            return f"nginx logged '{run.label}' as {tls or 'plain HTTP'}"
        if run.settings.get("connection") == NEW_CONNECTION and run.connections_opened < run.requests:
            return f"'{run.label}' opened {run.connections_opened} connections for {run.requests} requests"
        if case_of(run) == NO_RESUMPTION and run.tls_resumed:
            return f"'{run.label}' resumed {run.tls_resumed} TLS sessions with resumption off"
    return None


def handshake_factor(kept: Case, new: Case) -> float:
    """How many times TLS's cost per request on a new connection is its cost on a kept-alive
    one (medians; a cost below the measurement's resolution counts as that resolution)."""
    return new.cost_ms / max(kept.cost_ms, RESOLUTION_MS)


def handshake_dominates(kept: Case, new: Case) -> bool:
    """Every round's TLS cost on a new connection is at least ``FACTOR`` times every round's on
    a kept-alive connection, and above the noise of what the plain request cost nginx."""
    new_costs = [p.cost_ms for p in new.pairs]
    kept_costs = [max(p.cost_ms, RESOLUTION_MS) for p in kept.pairs]
    if not new_costs or not kept_costs:
        return False
    plain = max(p.http.nginx_cpu_ms_per_request or 0.0 for p in new.pairs)
    return min(new_costs) >= FACTOR * max(kept_costs) and min(new_costs) > NOISE * plain


def tls_verdict(table: dict[tuple[str, str], Case], runs: Sequence[Run], routes: Sequence[str]) -> tuple[str, str]:
    """Holds where, on every route, the handshake dominates what TLS costs, resumed or full
    (``handshake_dominates``); the reason gives each route's figures, what the handshakes
    were, and what bound the runs."""
    missing = [f"{route}, {case}" for route in routes for case in CASES if not table.get((route, case))]
    if missing:
        return INCONCLUSIVE, f"not measured over both schemes: {'; '.join(missing)}"
    problem = evidence(runs)
    if problem:
        return INCONCLUSIVE, problem
    findings, held = [], []
    for route in routes:
        kept, new, full = (table[(route, case)] for case in CASES)
        held += [handshake_dominates(kept, new), handshake_dominates(kept, full)]
        done, resumed = new.handshakes()
        findings.append(
            f"{route}: nginx's CPU a request kept alive {_ms(kept, 'http')} ms over HTTP, {_ms(kept, 'https')} over "
            f"HTTPS (TLS +{kept.cost_ms:.3f}); a new connection per request {_ms(new, 'http')} over HTTP, "
            f"{_ms(new, 'https')} over HTTPS (TLS +{new.cost_ms:.3f}, {handshake_factor(kept, new):.0f} x; "
            f"{resumed} of {done + resumed} handshakes resumed the session wrk offered) and {_ms(full, 'https')} "
            f"with resumption off (TLS +{full.cost_ms:.3f}, {handshake_factor(kept, full):.0f} x; every handshake "
            f"full). wrk's CPU a request over HTTPS: {_gen(kept)} kept alive, {_gen(new)} and {_gen(full)} per "
            f"connection. HTTPS / HTTP: req/s {kept.rps_ratio:.2f} kept alive ({kept.outcome()}), "
            f"{new.rps_ratio:.2f} and {full.rps_ratio:.2f} per connection ({new.outcome()}, {full.outcome()}); "
            f"p99 {kept.p99_ratio:.2f}, {new.p99_ratio:.2f} and {full.p99_ratio:.2f} (wrk's p99 leaves out opening "
            f"the connection: {_connect(new, 'http')} ms over HTTP, {_connect(new, 'https')} and "
            f"{_connect(full, 'https')} over HTTPS). A full handshake per connection bound by {_bound(full)}"
        )
    what = "the handshake is what TLS costs" if all(held) else "the handshake does not dominate on every route"
    reason = f"{what}. " + ". ".join(findings)
    saturated = [r.label for r in runs if r.generator_saturated]
    if saturated:
        reason += (
            f". The load generator saturated its CPU in {len(saturated)} of {len(runs)} runs ({saturated[0]}"
            f"{', ...' if len(saturated) > 1 else ''}): the throughput and p99 there are its pace as much as "
            "nginx's; the verdict rests on nginx's CPU per request, a cost, not a pace"
        )
    # Decided on what a request cost nginx, which a saturated generator does not change.
    return decide(all(held), reason, runs, paced=False)


def _ms(case: Case, scheme: str) -> str:
    return f"{case.median(lambda p: getattr(p, scheme).nginx_cpu_ms_per_request or 0.0):.3f}"


def _gen(case: Case) -> str:
    return f"{case.median(lambda p: p.https.generator_cpu_ms_per_request or 0.0):.3f} ms"


def _connect(case: Case, scheme: str) -> str:
    return f"{case.median(lambda p: getattr(p, scheme).connect_ms or 0.0):.2f}"


def _bound(case: Case) -> str:
    return case.pairs[len(case.pairs) // 2].https.bound_by or "-" if case.pairs else "-"


def record(
    table: dict[tuple[str, str], Case],
    runs: list[Run],
    concurrency: int,
    rounds: int,
    duration_s: int,
    seed: int,
    routes: Sequence[str],
) -> ClaimRecord:
    verdict = tls_verdict(table, runs, routes)
    pairs = [
        (table[(route, KEPT_ALIVE)], table[(route, case)])
        for route in routes
        for case in (NEW_CONNECTION, NO_RESUMPTION)
        if (route, KEPT_ALIVE) in table and (route, case) in table
    ]
    # The figures shown are those of the route and case where the handshake weighs least.
    kept, new = min(pairs, key=lambda kn: handshake_factor(*kn), default=(Case("-", KEPT_ALIVE), Case("-", "-")))
    return claim_record(
        15,
        what=f"GET {' and '.join(routes)} from one nginx of twinstack's configuration with HTTPS on (a self-signed "
        "ECDSA P-256 certificate, TLS 1.2/1.3, session cache, no tickets) over its plain port and its HTTPS port, "
        "with connections kept alive and with a new connection per request (Connection: close), and, per "
        "connection, to a copy of its HTTPS server with session resumption off (every handshake full); "
        f"c={concurrency}, wrk (HTTP/1.1); {rounds} rounds of {duration_s} s, the runs in random order each round "
        f"(seed {seed})",
        runs=runs,
        yardstick=(f"TLS's cost kept alive, {kept.route}", "nginx CPU a request, HTTPS - HTTP", kept.cost_ms, "ms"),
        measured=(f"TLS's cost, {new.kind}, {new.route}", new.cost_ms, "ms"),
        ratio=handshake_factor(kept, new) if pairs else 0.0,
        band=f"ratio >= {FACTOR:g} on every route, resumed and full, every round against every round: the "
        f"handshake is at least {1 - 1 / FACTOR:.0%} of what TLS costs a request that opens its connection",
        verdict=verdict,
        chart="tls",
    )
