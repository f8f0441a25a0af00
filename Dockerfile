# syntax=docker/dockerfile:1
# Images for the Python services, one build target each: fastapi, flask, downstream.
# One file because they share one package (twinstack_contract) and one dependency set; a
# target per service keeps each image's command, port and healthcheck its own.
#   docker build --target fastapi -t twinstack-fastapi .

# --- wheels: everything compiled or downloaded, in a stage that is thrown away -------------
FROM python:3.11.13-slim-bookworm AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY twinstack_contract/ twinstack_contract/
COPY fastapi_service/ fastapi_service/
COPY flask_service/ flask_service/
COPY downstream_service/ downstream_service/
COPY native/ native/
COPY loadtest/ loadtest/
COPY bench/ bench/
# Every dependency is pinned with == in pyproject.toml; all have wheels for CPython 3.11.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed, no compiler, no pip cache, a non-root user --------------
FROM python:3.11.13-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TWINSTACK_RUN_DIR=/tmp/twinstack \
    TWINSTACK_STATE_DIR=/tmp/twinstack/state
# A numeric user, so `runAsNonRoot`-style checks can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 twinstack \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin twinstack
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels twinstack==0.1.0
WORKDIR /srv/twinstack
# The very gunicorn.conf.py files native mode uses; only the environment differs.
COPY fastapi_service/gunicorn.conf.py fastapi_service/gunicorn.conf.py
COPY flask_service/gunicorn.conf.py flask_service/gunicorn.conf.py
USER 10001:10001
# Inside the stack every service listens on the same port as in native mode.
ENV TWINSTACK_ASYNC_HOST=0.0.0.0 TWINSTACK_SYNC_HOST=0.0.0.0
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["python", "-m", "twinstack_contract.healthcheck"]

FROM runtime AS fastapi
ENV TWINSTACK_HEALTH_URL=http://127.0.0.1:8001/health
EXPOSE 8001
CMD ["gunicorn", "-c", "fastapi_service/gunicorn.conf.py"]

FROM runtime AS flask
ENV TWINSTACK_HEALTH_URL=http://127.0.0.1:8002/health
EXPOSE 8002
CMD ["gunicorn", "-c", "flask_service/gunicorn.conf.py"]

FROM runtime AS downstream
ENV TWINSTACK_HEALTH_URL=http://127.0.0.1:8003/health
EXPOSE 8003
CMD ["uvicorn", "--factory", "downstream_service.main:create_app", "--host", "0.0.0.0", "--port", "8003", \
     "--no-server-header", "--no-access-log", "--timeout-graceful-shutdown", "35"]
