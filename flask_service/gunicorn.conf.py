"""gunicorn for the sync pool: Flask on sync workers (or gthread / gevent, for the lab).

Read by native mode (supervisor) and the Docker image alike; only the environment differs
(``TWINSTACK_SYNC_*``, see .env.example).
"""

from twinstack_contract.serving import GRACEFUL_TIMEOUT_S, KEEPALIVE_S, TIMEOUT_S, SyncPool, usable_cpus

pool = SyncPool()

# --- Socket -------------------------------------------------------------------------------
bind = pool.bind()
wsgi_app = "flask_service.main:create_app()"
proc_name = "twinstack-sync"

# --- Workers ------------------------------------------------------------------------------
# sync: one request per worker at a time, so concurrency = workers. (2 x CPUs) + 1 is
# gunicorn's own rule: while one worker waits on I/O, another can use the core.
# gthread: each worker runs `threads` requests at once (concurrency = workers x threads).
# gevent: each worker multiplexes up to `worker_connections` requests on greenlets.
worker_class = pool.worker_class
workers = pool.workers or 2 * usable_cpus() + 1
threads = pool.threads if pool.worker_class == "gthread" else 1
worker_connections = pool.worker_connections
max_requests = pool.max_requests
max_requests_jitter = pool.max_requests_jitter
worker_tmp_dir = "/dev/shm"

# --- Timeouts (one ordering across the stack, asserted by tests/test_timeouts.py) ----------
# timeout: a sync worker busy this long is killed. Above nginx proxy_read_timeout (35 s), so
# nginx answers 504 first, and above the longest request the contract allows (30 s).
timeout = TIMEOUT_S
graceful_timeout = GRACEFUL_TIMEOUT_S
# keepalive: used by gthread and gevent (the sync worker closes after every response, so
# nginx's upstream keep-alive has nothing to reuse there). Longer than nginx's upstream
# keepalive_timeout (60 s), so nginx always closes an idle connection first.
keepalive = KEEPALIVE_S

# --- Proxy ---------------------------------------------------------------------------------
# X-Forwarded-* are applied inside the app (flask_service/proxy.py) from trusted peers only.
forwarded_allow_ips = ""

# --- Control ---------------------------------------------------------------------------------
control_socket = pool.control_socket("sync")

# --- Logging -----------------------------------------------------------------------------------
accesslog = "-"
errorlog = "-"
loglevel = pool.log_level


def worker_exit(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """Let accepted background jobs finish before the worker process goes away."""
    from flask_service.main import shutdown

    if getattr(worker, "wsgi", None) is not None:
        shutdown(worker.wsgi)
