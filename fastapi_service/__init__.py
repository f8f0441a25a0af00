"""The ASGI half of twinstack: FastAPI on gunicorn with uvicorn workers (one event loop per worker)."""
