"""Claims 8, 10 and 11: what each model offers beyond answering one request with one response.

Fan-out (``asyncio.gather`` against calls one after another), work that runs after the
response is sent, and WebSockets (which a WSGI app cannot hold).
"""

from __future__ import annotations

from twinstack_runtime.ports import free_port

from ..procs import argv
from ..records import ClaimRecord, Run
from ..registry import Context, experiment
from ..verdicts import INCONCLUSIVE, REFUSALS, claim_record, decide, describe

# The share of WebSockets the async pool must hold and echo for claim 11 to hold.
HELD = 0.99


@experiment("claim-8", "fan-out: asyncio.gather against calls one after another", claims=(8,))
def claim_8(lab: Context) -> ClaimRecord:
    m = lab.mode
    calls, delay = 10, m.io_delay_ms
    path = f"/fanout?calls={calls}&delay_ms={delay}"
    lab.section(f"claim 8: {path}, one request at a time")
    runs = [
        # At least 3 s: one after another, each request takes calls x delay.
        lab.gen.wrk(
            f"{name} {path}",
            server.base_url + path,
            1,
            max(3, m.duration_s),
            [server, lab.stack.downstream],
            server.settings,
        )
        for name, server in (
            ("async (asyncio.gather)", lab.stack.async_pool),
            ("sync (one after another)", lab.stack.sync_pool),
        )
    ]
    async_p50, sync_p50 = runs[0].latency_ms.p50, runs[1].latency_ms.p50
    ratio = async_p50 / delay
    return claim_record(
        8,
        what=f"GET {path} (each call waits {delay} ms at the downstream service), one at a time, direct to "
        "each pool: FastAPI awaits the calls with asyncio.gather, Flask makes them one after another"
        f" ({_pools(lab)})",
        runs=runs,
        yardstick=("one wait", "delay_ms", float(delay), "ms"),
        measured=("p50 latency with asyncio.gather", async_p50, "ms"),
        ratio=ratio,
        band=f"ratio <= 2 (at most two waits' worth, where one after another costs {calls})",
        verdict=decide(
            ratio <= 2,
            f"{calls} calls of {delay} ms: {async_p50:.0f} ms with asyncio.gather, {sync_p50:.0f} ms one after "
            f"another ({calls} x {delay} = {calls * delay} ms)",
            runs,
        ),
    )


@experiment("claim-10", "background jobs: the 202 against the job's own duration", claims=(10,))
def claim_10(lab: Context) -> ClaimRecord:
    m = lab.mode
    delay = 500 if m.name != "tiny" else 200
    lab.section(f"claim 10: POST /jobs (a {delay} ms job) on both pools")
    runs = [
        lab.gen.jobs(f"{name} POST /jobs", server, m.jobs, delay)
        for name, server in (
            ("async (BackgroundTasks)", lab.stack.async_pool),
            ("sync (thread pool)", lab.stack.sync_pool),
        )
    ]
    worst = max(r.latency_ms.p99 for r in runs)
    after = all(r.finished_after_response == m.jobs for r in runs)
    ratio = worst / delay
    return claim_record(
        10,
        what=f'{m.jobs} POST /jobs {{"delay_ms": {delay}}} to each pool (direct), each 202 timed; then every '
        "job polled (GET /jobs/{id}) until done, and its finish time compared with when its 202 arrived"
        f" ({_pools(lab)})",
        runs=runs,
        yardstick=("the job's own duration", "delay_ms", float(delay), "ms"),
        measured=("p99 time to the 202", worst, "ms"),
        ratio=ratio,
        band="ratio <= 0.5 and every job finished after its response arrived",
        verdict=decide(
            ratio <= 0.5 and after,
            f"the 202 came back in <= {worst:.0f} ms, and all {sum(r.finished_after_response for r in runs)} "
            f"of {m.jobs * len(runs)} jobs of {delay} ms finished after their 202 had arrived: the response "
            "did not wait for the work",
            runs,
        ),
    )


@experiment("claim-11", "WebSockets: ASGI holds them, WSGI cannot", claims=(11,))
def claim_11(lab: Context) -> ClaimRecord:
    m = lab.mode
    base = lab.stack.url.replace("http://", "ws://", 1)
    lab.section(f"claim 11: {m.websockets} WebSockets through nginx to the async pool; WSGI's best try")
    ok = lab.gen.websockets(
        f"async: {m.websockets} WebSockets", f"{base}/async/ws/echo", m.websockets, [lab.stack.async_pool]
    )
    # Straight to gunicorn: the WSGI server itself answers, not nginx.
    sync_url = f"ws://127.0.0.1:{lab.stack.sync_pool.port}/ws/echo"
    refused = lab.gen.websockets("sync: one WebSocket, direct", sync_url, 1, [lab.stack.sync_pool])
    # A WSGI app that answers the handshake itself, on the sync pool's kind of worker.
    port = free_port()
    wsgi = lab.peer(
        "wsgi-websocket",
        argv("gunicorn", "-w", 1, "-b", f"127.0.0.1:{port}", "--control-socket", lab.scratch / "wsgi-websocket.ctl",
             "bench.wsgi_websocket:app"),
        {"server": "gunicorn", "worker_class": "sync", "workers": 1, "app": "a WSGI app answering 101 itself"},
        port,
    )  # fmt: skip
    tries = min(m.websockets, 20)
    with lab.servers.started(wsgi):
        url = f"ws://127.0.0.1:{port}/ws"
        attempt = lab.gen.websockets(f"WSGI app answering 101: {tries} WebSockets", url, tries, [wsgi])
    return claim_record(
        11,
        what=f"through nginx: {m.websockets} WebSockets opened at once to /async/ws/echo, one message echoed on "
        "each while all are open; one WebSocket handshake for /ws/echo straight to the sync pool's gunicorn; "
        f"then {tries} WebSockets to a WSGI app that answers the handshake with 101 itself (bench/wsgi_websocket.py "
        f"on one gunicorn sync worker), one message sent on each ({_pools(lab)})",
        runs=[ok, refused, attempt],
        yardstick=("WebSockets asked for", "count", float(m.websockets), "sockets"),
        measured=("WebSockets held and echoing (ASGI)", float(ok.opened), "sockets"),
        ratio=ok.opened / m.websockets,
        band=f"ratio >= {HELD}: the async WebSockets echo; the sync pool refuses the handshake "
        f"({', '.join(map(str, REFUSALS))}); the WSGI app's 101s echo nothing",
        verdict=websocket_verdict(ok, refused, attempt, m.websockets, tries),
    )


def websocket_verdict(ok: Run, refused: Run, attempt: Run, asked: int, tries: int) -> tuple[str, str]:
    """ASGI holds when it held and echoed (nearly) every WebSocket; WSGI cannot when its app's
    101s were all answered and none echoed. Handshakes that failed tell nothing about WSGI."""
    if attempt.handshakes < tries:
        return (
            INCONCLUSIVE,
            f"only {attempt.handshakes} of {tries} handshakes to the WSGI app were answered with 101, so the run "
            "cannot tell what happens after one",
        )
    held = ok.opened >= HELD * asked
    refused_ok = refused.opened == 0 and refused.refused_status in REFUSALS
    lost = attempt.opened == 0  # answered, yet no frame came back: the connection ended with the call
    return decide(
        held and refused_ok and lost,
        f"the async pool held {ok.opened} of {asked} WebSockets at once (echo p99 "
        f"{ok.latency_ms.p99:.0f} ms); the WSGI app answered {attempt.handshakes} of {tries} handshakes "
        f"with 101, and {attempt.opened} echoed: the connection ended when the app returned its one "
        "response, which is all a WSGI call can do (twinstack's sync pool answers the handshake "
        f"HTTP {refused.refused_status or 'nothing'}: its Flask service has no WebSocket route). Servers' "
        "own escape hatches (gunicorn's gunicorn.socket, used by flask-sock) hand the app the raw socket "
        "outside WSGI, and then every open WebSocket holds a whole worker or thread",
        [ok],
        # A WebSocket the async pool failed to hold counts against the claim (HELD), not as noise.
        expect_errors=True,
    )


def _pools(lab: Context) -> str:
    stack = lab.stack
    return f"async pool: {describe(stack.async_pool.settings)}; sync pool: {describe(stack.sync_pool.settings)}"
