"""The request body limit: the largest body the API accepts (``POST /orders`` and ``/jobs`` are
well under 1 KiB). Both services refuse a larger one with 413 JSON, read from their own port too
(FastAPI: ``fastapi_service/flask_parity.py``; Flask: ``MAX_CONTENT_LENGTH``). nginx states it as
``client_max_body_size`` in ``nginx/nginx.conf``, which is no template: tests/contract compares
that line with this value."""

MAX_BODY_BYTES = 64 * 1024
