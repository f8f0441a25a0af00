"""The server hooks and low-level gunicorn settings both pools share, imported by each
service's ``gunicorn.conf.py``.

The values a reader looks for (bind, workers, worker class, timeouts, keep-alive, recycling)
stand in each gunicorn.conf.py itself, with their reasons; what is here is the same for both
pools and rarely read: worker lifecycle hooks, the heartbeat directory, proxy handling, the
request-line limit and where gunicorn's own logs go.
"""

import ctypes
import gc
import os
import signal
import sys

__all__ = [
    "accesslog",
    "child_exit",
    "errorlog",
    "forwarded_allow_ips",
    "limit_request_line",
    "on_starting",
    "post_fork",
    "post_worker_init",
    "worker_tmp_dir",
]

# --- Request limits --------------------------------------------------------------------------
# The longest request line gunicorn reads (its maximum; the default is 4094). nginx reads lines
# up to its large_client_header_buffers (8k) and answers a longer one with its 414 JSON; a line
# nginx let through must not meet the pool's own, smaller limit and its HTML error page.
limit_request_line = 8190

# --- Proxy -----------------------------------------------------------------------------------
# X-Forwarded-* are applied inside each app, from trusted peers only, together with
# X-Forwarded-Prefix (fastapi_service/middleware.py, flask_service/proxy.py). The server's own
# copy is off: in uvicorn it would rewrite the client address before the app could check the
# peer, and one place to configure trust (TWINSTACK_TRUSTED_PROXIES) is enough.
forwarded_allow_ips = ""

# --- Workers ---------------------------------------------------------------------------------
# Heartbeat files on tmpfs: a disk-backed /tmp can stall the heartbeat under I/O load and get
# healthy workers killed.
worker_tmp_dir = "/dev/shm"

# --- Logging ---------------------------------------------------------------------------------
# JSON lines (each conf sets logconfig_dict from twinstack_runtime.logs): on stderr under
# Docker, which collects them; natively into the pool's own file in logs/, written by the
# processes themselves (TWINSTACK_*_LOG_FILE), never through supervisord. No server access log:
# the apps log each request themselves, with the request id, route and duration.
accesslog = None
errorlog = "-"


# --- Worker lifecycle --------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1


def post_fork(server, worker):
    """Die with the master. A master killed outright (SIGKILL, OOM) cannot stop its workers;
    uvicorn workers never notice and keep the listening socket, so the master the supervisor
    starts next cannot bind ("Address already in use") while orphans serve stale code.
    The kernel sends SIGTERM (a graceful stop) to this worker when its parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != worker.ppid:  # the master died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


# --- Garbage collection ----------------------------------------------------------------------
# The first generation is collected after this many new container objects, not Python's 700.
# With hundreds of requests in flight each collection of the young generations walked every
# one of them; at 7 000 they run a tenth as often (a few MB more garbage waits between them).
GC_THRESHOLD = (7000, 10, 10)


def post_worker_init(worker):
    """The worker has loaded the app: what exists now (modules, the app, its routes, pydantic's
    validators) lives as long as the worker. gc.freeze() moves it out of the collector's reach,
    so a full collection no longer walks the whole app, only what requests created since.
    Measured on the async pool at 500 requests in flight: full collections of about 60 ms
    every half second before (the loop stalled for all of them, p50 +15 %), about 8 ms after."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


# --- Metrics (prometheus-client multiprocess mode) ----------------------------------------------
def on_starting(server):
    """Master start, before any worker: the database connection budget must fit (else the
    master exits with the numbers, rather than workers meeting "too many clients" under load),
    and the multiprocess directory starts empty, or a previous run's counts add up."""
    from twinstack_db.budget import BudgetError
    from twinstack_runtime.metrics import prepare_multiprocess_dir
    from twinstack_runtime.serving import check_database_budget

    try:
        total = check_database_budget()
    except BudgetError as exc:
        server.log.error("%s", exc)
        raise SystemExit(f"Error: {exc}") from None
    server.log.info("database connection budget: %d connections at most, within max_connections", total)
    prepare_multiprocess_dir(server.cfg.env["PROMETHEUS_MULTIPROC_DIR"])


def child_exit(server, worker):
    """A worker is gone: drop its live gauges (in flight, busy) from every later scrape."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
