"""What only the async half serves, through nginx: the WebSocket, the docs and their schema, the
lab's routes."""

from __future__ import annotations

import httpx
import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.integration


def test_websocket_round_trip(stack):
    with connect(stack.base_url.replace("http", "ws") + "/async/ws/echo", open_timeout=10) as ws:
        for message in ("hello", "second message ✓"):
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_api_json_is_compressed_too(client: httpx.Client):
    r = client.get("/async/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip"


def test_docs_page_loads_its_schema_from_the_prefixed_url(client: httpx.Client):
    docs = client.get("/async/docs")
    assert docs.status_code == 200
    assert "'/async/openapi.json'" in docs.text
    assert client.get("/async/redoc").status_code == 200
    schema = client.get("/async/openapi.json").json()
    assert schema["servers"] == [{"url": "/async"}]
    assert {"/io", "/cpu", "/fanout", "/orders", "/inspect", "/stream", "/jobs"} <= set(schema["paths"])
