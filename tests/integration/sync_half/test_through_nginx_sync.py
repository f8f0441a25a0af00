"""What the sync half does not serve, through nginx."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_sync_has_no_websocket(client: httpx.Client):
    r = client.get("/sync/ws/echo", headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
