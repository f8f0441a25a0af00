"""Interactive API docs (Swagger UI at /docs, ReDoc at /redoc) served by the app itself.

FastAPI's built-in pages load their JavaScript and CSS from a public CDN: without internet the
page stays white, and a strict Content-Security-Policy would block them anyway. Here the assets
are the static files shipped by the pinned ``fastapi-offline`` package (only its files, not its
app class), mounted at ``/docs-assets``, and each page carries a CSP that allows only those
assets and, by hash, its own inline init script.

Behind nginx the app lives under a prefix (``/async``) that ``ForwardedMiddleware`` puts in the
ASGI ``root_path``; every URL the pages reference is built from it.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
ASSETS_PACKAGE = ("fastapi_offline", "static")

# Only attribute-less <script> tags are inline code; <script src=...> is covered by 'self'.
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def script_hash(body: str) -> str:
    """A CSP source expression that allows exactly this inline script body."""
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    return f"'sha256-{digest}'"


# What both pages need beyond default-src 'none'. Each relaxation below was found by loading
# the page in Chromium with it removed and seeing a violation; none is there "just in case".
BASE_POLICY = [
    "default-src 'none'",
    # The icons are data: SVGs (Swagger UI's stylesheet, ReDoc's components).
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
]
# ReDoc alone: its styled-components inject <style> elements at runtime (no hash can cover
# them, and styles cannot run code), and its search index runs in a worker made from a blob:.
# Its sidebar footer also tries a Redocly logo from a CDN: that one stays blocked on purpose
# (one CSP report in the console; the footer link text remains).
REDOC_POLICY = ["style-src 'self' 'unsafe-inline'", "worker-src blob:"]
SWAGGER_UI_POLICY = ["style-src 'self'"]


def content_security_policy(html: str, extra: list[str]) -> str:
    # Hashed from the page actually sent, so the policy cannot drift from FastAPI's template.
    script_src = " ".join(["script-src 'self'", *(script_hash(body) for body in INLINE_SCRIPT.findall(html))])
    return "; ".join([*BASE_POLICY, script_src, *extra])


def with_csp(page: HTMLResponse, extra: list[str]) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = content_security_policy(bytes(page.body).decode(), extra)
    return page


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the docs assets and both pages; create the app with ``docs_url=redoc_url=None``."""
    app.mount(ASSETS_PATH, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        assets = root + ASSETS_PATH
        return with_csp(
            get_swagger_ui_html(
                openapi_url=root + app.openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                swagger_css_url=f"{assets}/swagger-ui.css",
                swagger_favicon_url=f"{assets}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            ),
            SWAGGER_UI_POLICY,
        )

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        assets = root + ASSETS_PATH
        return with_csp(
            get_redoc_html(
                openapi_url=root + app.openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{assets}/redoc.standalone.js",
                redoc_favicon_url=f"{assets}/favicon.png",
                with_google_fonts=False,
            ),
            REDOC_POLICY,
        )
