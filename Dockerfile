# syntax=docker/dockerfile:1
# One image per Python service, built from this file with the service's folder as an argument:
#   docker build --build-arg SERVICE=fastapi_service -t twinstack-fastapi .
# Each image holds the shared packages (the contract, the runtime and the database models),
# its own service package and its own requirements.txt, nothing else: no other service, no
# native mode, no lab. The command, port and health URL are set where the service is defined
# (<service>/compose.yaml, docker-compose.yml). SERVICE=migrations is the one-shot migrator:
# migrations/ and its requirements.txt (Alembic); compose turns its HEALTHCHECK off.

# --- wheels: everything compiled or downloaded, in a stage that is thrown away -------------
FROM python:3.11.13-slim-bookworm AS wheels
ARG SERVICE
WORKDIR /src
COPY pyproject.toml README.md ./
COPY twinstack_contract/ twinstack_contract/
COPY twinstack_runtime/ twinstack_runtime/
COPY twinstack_db/ twinstack_db/
COPY ${SERVICE}/ ${SERVICE}/
# Every dependency is pinned with == (pyproject.toml, the service's requirements.txt); all
# have wheels for CPython 3.11.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . -r ${SERVICE}/requirements.txt

# --- runtime: the wheels installed, no compiler, no pip cache, a non-root user --------------
FROM python:3.11.13-slim-bookworm AS runtime
ARG SERVICE
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TWINSTACK_RUN_DIR=/tmp/twinstack
# A numeric user, so `runAsNonRoot`-style checks can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 twinstack \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin twinstack
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl
WORKDIR /srv/twinstack
# The service's own files beside the installed code: its gunicorn.conf.py is the very file
# native mode uses; only the environment differs.
COPY ${SERVICE}/ ${SERVICE}/
USER 10001:10001
# Inside the stack every service listens on the same port as in native mode.
ENV TWINSTACK_ASYNC_HOST=0.0.0.0 TWINSTACK_SYNC_HOST=0.0.0.0
# TWINSTACK_HEALTH_URL comes from the service's compose definition.
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["python", "-m", "twinstack_runtime.healthcheck"]
