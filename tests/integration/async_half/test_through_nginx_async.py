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


def test_the_lab_serves_one_call_at_a_time_for_the_whole_stack(stack):
    """Its anti-patterns freeze a worker on purpose: one at a time across every client, the next
    gets 503 JSON at once (nginx/templates/async.conf.template)."""
    from concurrent.futures import ThreadPoolExecutor

    def call(address: str) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=address)
        with httpx.Client(base_url=stack.base_url, timeout=30, transport=transport) as client:
            return client.get("/async/lab/to-thread-sleep?delay_ms=2000")

    with ThreadPoolExecutor(2) as pool:
        answers = sorted(pool.map(call, ["127.0.0.40", "127.0.0.41"]), key=lambda r: r.status_code)
    assert [a.status_code for a in answers] == [200, 503], [a.text for a in answers]
    assert answers[1].json()["error"]["status"] == 503
