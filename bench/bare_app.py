"""The reference the overhead experiment measures twinstack's apps against: each framework with
one route, ``GET /health`` answering ``{"status": "ok"}``, and nothing else (no middleware, no
logging, no metrics). Run under each pool's own gunicorn.conf.py, so only the app differs."""

from __future__ import annotations

from fastapi import FastAPI
from flask import Flask


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
