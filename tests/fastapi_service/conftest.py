from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_service.main import create_app
from fastapi_service.settings import Settings


@pytest.fixture
def app(settings_kwargs: dict) -> FastAPI:
    return create_app(Settings(**settings_kwargs))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # As if nginx on loopback sent it: a trusted peer.
    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        yield client
