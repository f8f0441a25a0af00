"""gunicorn for the async pool: uvicorn workers, one event loop per CPU.

Read by native mode (supervisord) and the Docker image alike; only the environment differs
(``TWINSTACK_ASYNC_*``, see .env.example). Timeouts, keep-alive, proxy handling and logging
are the stack-wide policy in twinstack_contract/gunicorn_base.py.
"""

from twinstack_contract.gunicorn_base import *  # noqa: F403
from twinstack_contract.logs import logging_config
from twinstack_contract.serving import AsyncPool, usable_cpus

pool = AsyncPool()
# prometheus-client's multiprocess directory, this pool's own. raw_env: gunicorn sets it in the
# master when it starts (before any worker imports prometheus_client), always to this pool's
# directory, whatever the caller's environment holds; reading this file changes nothing.
raw_env = [f"PROMETHEUS_MULTIPROC_DIR={pool.metrics_dir('async')}"]

# --- Socket -------------------------------------------------------------------------------
bind = pool.bind()
wsgi_app = "fastapi_service.main:create_app()"
proc_name = "twinstack-async"

# --- Workers ------------------------------------------------------------------------------
# An event loop is single-threaded: one worker per usable CPU uses every core, more only adds
# context switches. The CPU count respects affinity and the container's CPU quota.
# uvicorn-worker's UvicornWorker (the maintained one: uvicorn.workers is deprecated), with the
# WebSocket limits enforced in the server (fastapi_service/worker.py).
worker_class = "fastapi_service.worker.Worker"
workers = pool.workers or usable_cpus()
# Recycling bounds slow leaks; each recycle re-imports the app, so the default (2 000 000) keeps
# a worker for minutes at full load (twinstack_contract/serving.py says how it was chosen).
max_requests = pool.max_requests
max_requests_jitter = pool.max_requests_jitter

# --- Control -------------------------------------------------------------------------------
# gunicorn >= 25 opens a control socket at one per-user default path; each pool gets its own.
control_socket = pool.control_socket("async")

# --- Logging -------------------------------------------------------------------------------
loglevel = pool.log_level
logconfig_dict = logging_config(pool.log_level, pool.log_file)
