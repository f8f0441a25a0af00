"""The async half over HTTPS: its WebSocket, and its API schema, compressed on plain HTTP only."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect

from tests.integration.conftest import Stack
from tests.integration.test_tls import trusting

pytestmark = pytest.mark.integration


def test_websocket_echo_over_tls(stack: Stack):
    url = stack.https_url.replace("https", "wss") + "/async/ws/echo"
    with connect(url, ssl=trusting(stack), open_timeout=10) as ws:
        for message in ("hello", "over TLS ✓"):
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_the_api_schema_is_compressed_on_plain_http_only(stack: Stack):
    """The largest JSON the API sends (BREACH: tests/integration/test_tls.py)."""
    gzip = {"accept-encoding": "gzip"}
    with stack.client() as plain, httpx.Client(base_url=stack.https_url, verify=trusting(stack), timeout=30) as tls:
        assert "content-encoding" not in tls.get("/async/openapi.json", headers=gzip).headers
        assert plain.get("/async/openapi.json", headers=gzip).headers.get("content-encoding") == "gzip"
