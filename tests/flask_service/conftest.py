from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_service.main import create_app, shutdown
from flask_service.settings import Settings


@pytest.fixture
def app(settings_kwargs: dict) -> Iterator[Flask]:
    app = create_app(Settings(**settings_kwargs), {"TESTING": True})
    yield app
    shutdown(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    # As if nginx on loopback sent it: a trusted peer.
    client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    return client
