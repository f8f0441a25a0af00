"""gunicorn for the async pool: uvicorn workers, one event loop per CPU.

Read by native mode (supervisord) and the Docker image alike; only the environment differs
(``TWINSTACK_ASYNC_*``, see .env.example). The stack-wide hooks and low-level settings (worker
lifecycle, proxy handling, gunicorn's own logs) come from twinstack_runtime/gunicorn_base.py.
"""

from twinstack_runtime.gunicorn_base import *  # noqa: F403
from twinstack_runtime.logs import logging_config
from twinstack_runtime.serving import GRACEFUL_TIMEOUT_S, KEEPALIVE_S, TIMEOUT_S, AsyncPool

pool = AsyncPool()
# prometheus-client's multiprocess directory, this pool's own. raw_env: gunicorn sets it in the
# master when it starts (before any worker imports prometheus_client), always to this pool's
# directory, whatever the caller's environment holds; reading this file changes nothing.
raw_env = [f"PROMETHEUS_MULTIPROC_DIR={pool.metrics_dir('async')}"]

# --- Socket -------------------------------------------------------------------------------
# 127.0.0.1:8001 natively (nginx is the only public entry), 0.0.0.0:8001 in its container.
bind = pool.bind()
wsgi_app = "fastapi_service.main:create_app()"
# No preload_app: the app, and with it the database engine (made in the lifespan of each worker),
# is loaded after the fork, so no two workers share a connection's socket. Turned on to save
# memory, it would hand every worker the master's sockets: read twinstack_db/pool.py first.
preload_app = False
proc_name = "twinstack-async"

# --- Workers ------------------------------------------------------------------------------
# uvicorn-worker's UvicornWorker (the maintained one: uvicorn.workers is deprecated), with the
# WebSocket limits and one write per response (fastapi_service/worker.py).
worker_class = "fastapi_service.worker.Worker"
# An event loop is single-threaded: one worker per usable CPU (affinity and the container's
# CPU quota) uses every core; more only adds context switches.
workers = pool.worker_count()

# --- Timeouts: one order across the stack, checked by tests/test_timeouts.py -------------
# 40 s: a worker silent this long (its loop stalled) is killed; above nginx's
# proxy_read_timeout (35 s), so nginx answers 504 first, and above the longest request (30 s).
timeout = TIMEOUT_S
# 40 s: on stop or reload, requests in flight get this long; supervisord waits 50 s.
graceful_timeout = GRACEFUL_TIMEOUT_S
# 75 s: idle connections outlive nginx's upstream keepalive_timeout (60 s), so nginx closes
# first and never sends a request on a connection the worker is closing.
keepalive = KEEPALIVE_S

# --- Recycling ----------------------------------------------------------------------------
# Bounds slow leaks; each recycle re-imports the app, so the default (2 000 000, jitter
# 200 000) keeps a worker for minutes at full load (twinstack_runtime/serving.py).
max_requests = pool.max_requests
max_requests_jitter = pool.max_requests_jitter

# --- Control ------------------------------------------------------------------------------
# gunicorn >= 25 opens a control socket at one per-user default path; each pool gets its own.
control_socket = pool.control_socket("async")

# --- Logging ------------------------------------------------------------------------------
loglevel = pool.log_level
logconfig_dict = logging_config(pool.log_level, pool.log_file)
