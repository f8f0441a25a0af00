"""gunicorn for the async pool: uvicorn workers, one event loop per CPU.

Read by native mode (supervisor) and the Docker image alike; only the environment differs
(``TWINSTACK_ASYNC_*``, see .env.example).
"""

from twinstack_contract.serving import GRACEFUL_TIMEOUT_S, KEEPALIVE_S, TIMEOUT_S, AsyncPool, usable_cpus

pool = AsyncPool()

# --- Socket -------------------------------------------------------------------------------
bind = pool.bind()
wsgi_app = "fastapi_service.main:create_app()"
proc_name = "twinstack-async"

# --- Workers ------------------------------------------------------------------------------
# An event loop is single-threaded: one worker per usable CPU uses every core, more only adds
# context switches. The CPU count respects affinity and the container's CPU quota.
worker_class = "uvicorn_worker.UvicornWorker"
workers = pool.workers or usable_cpus()
# Recycling bounds slow leaks; the jitter keeps workers from restarting all at once.
max_requests = pool.max_requests
max_requests_jitter = pool.max_requests_jitter
# Heartbeat files on tmpfs: a disk-backed /tmp can stall the heartbeat under I/O load.
worker_tmp_dir = "/dev/shm"

# --- Timeouts (one ordering across the stack, asserted by tests/test_timeouts.py) ----------
# timeout: a worker silent this long is killed. Above nginx proxy_read_timeout (35 s), so
# nginx answers 504 first, and above the longest request the contract allows (30 s).
timeout = TIMEOUT_S
# graceful_timeout: on stop or reload, in-flight requests get this long to finish; at least the
# longest allowed request. supervisor's stopwaitsecs (50 s) waits longer than this.
graceful_timeout = GRACEFUL_TIMEOUT_S
# keepalive: idle upstream connections stay open longer than nginx keeps them (upstream
# keepalive_timeout 60 s), so nginx always closes first and never reuses a closing socket.
keepalive = KEEPALIVE_S

# --- Proxy ---------------------------------------------------------------------------------
# X-Forwarded-* are applied inside the app (fastapi_service/middleware.py), only from trusted
# peers, together with X-Forwarded-Prefix. The server's own copy is off: it would rewrite the
# client address before the app could check the peer.
forwarded_allow_ips = ""

# --- Control ---------------------------------------------------------------------------------
control_socket = pool.control_socket("async")

# --- Logging -----------------------------------------------------------------------------------
accesslog = "-"
errorlog = "-"
loglevel = pool.log_level
