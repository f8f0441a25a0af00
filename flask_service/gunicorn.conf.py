"""gunicorn for the sync pool: Flask on sync workers (or gthread / gevent, for the lab).

Read by native mode (supervisord) and the Docker image alike; only the environment differs
(``TWINSTACK_SYNC_*``, see .env.example). The stack-wide hooks and low-level settings (worker
lifecycle, proxy handling, gunicorn's own logs) come from twinstack_runtime/gunicorn_base.py.
"""

from twinstack_runtime.gunicorn_base import *  # noqa: F403
from twinstack_runtime.logs import logging_config
from twinstack_runtime.serving import GRACEFUL_TIMEOUT_S, KEEPALIVE_S, TIMEOUT_S, SyncPool

pool = SyncPool()
# prometheus-client's multiprocess directory, this pool's own. raw_env: gunicorn sets it in the
# master when it starts (before any worker imports prometheus_client), always to this pool's
# directory, whatever the caller's environment holds; reading this file changes nothing.
raw_env = [f"PROMETHEUS_MULTIPROC_DIR={pool.metrics_dir('sync')}"]

# --- Socket -------------------------------------------------------------------------------
# 127.0.0.1:8002 natively (nginx is the only public entry), 0.0.0.0:8002 in its container.
bind = pool.bind()
wsgi_app = "flask_service.main:create_app()"
# No preload_app: the app, and with it the database engine (made in the app factory, in each worker),
# is loaded after the fork, so no two workers share a connection's socket. Turned on to save
# memory, it would hand every worker the master's sockets: read twinstack_db/pool.py first.
preload_app = False
proc_name = "twinstack-sync"

# --- Workers ------------------------------------------------------------------------------
# sync: one request per worker at a time, so concurrency = workers.
# gthread: each worker runs `threads` requests at once (concurrency = workers x threads).
# gevent: each worker multiplexes up to `worker_connections` requests on greenlets.
worker_class = pool.worker_class
# (2 x CPUs) + 1, gunicorn's own rule: while one worker waits on I/O, another uses the core.
workers = pool.worker_count()
threads = pool.threads if pool.worker_class == "gthread" else 1
worker_connections = pool.worker_connections

# --- Timeouts: one order across the stack, checked by tests/test_timeouts.py -------------
# 40 s: a worker busy this long is killed; above nginx's proxy_read_timeout (35 s), so nginx
# answers 504 first, and above the longest request the contract allows (30 s).
timeout = TIMEOUT_S
# 40 s: on stop or reload, requests in flight get this long; supervisord waits 50 s.
graceful_timeout = GRACEFUL_TIMEOUT_S
# 75 s, above nginx's upstream keepalive_timeout (60 s). The sync worker closes after each
# response anyway; gthread and gevent keep connections alive, and then nginx closes first.
keepalive = KEEPALIVE_S

# --- Recycling ----------------------------------------------------------------------------
# Bounds slow leaks; each recycle re-imports the app, so the default (2 000 000, jitter
# 200 000) keeps a worker for minutes at full load (twinstack_runtime/serving.py).
max_requests = pool.max_requests
max_requests_jitter = pool.max_requests_jitter

# --- Control ------------------------------------------------------------------------------
control_socket = pool.control_socket("sync")

# --- Logging ------------------------------------------------------------------------------
loglevel = pool.log_level
logconfig_dict = logging_config(pool.log_level, pool.log_file)


def worker_exit(server, worker):
    """Stop the job threads: queued jobs are failed at once, running ones get
    TWINSTACK_JOB_STOP_GRACE_S, far inside graceful_timeout; never the whole queue."""
    from flask_service.main import shutdown

    if getattr(worker, "wsgi", None) is not None:
        shutdown(worker.wsgi)
