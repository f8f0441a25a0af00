"""The landing page's assets served by Python, to compare with nginx serving the same bytes.

Each framework's own static-file support, on the same gunicorn workers as the services:
Starlette's ``StaticFiles`` (ASGI) and Flask's static folder (WSGI). Not part of the stack:
in twinstack, nginx serves these files and no Python worker sees a request for them.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "nginx" / "html" / "static"


def asgi_app() -> Starlette:
    async def health(request):
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/health", health), Mount("/static", StaticFiles(directory=STATIC))])


def wsgi_app() -> Flask:
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.add_url_rule("/health", "health", lambda: "ok")
    return app
