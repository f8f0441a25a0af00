"""Typed settings for the FastAPI service, handed to routes through ``SettingsDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import Field

from twinstack_db.settings import AsyncDbPool
from twinstack_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    ws_idle_timeout_s: float = Field(300.0, gt=0, description="A WebSocket silent this long is closed (1001).")
    ws_max_lifetime_s: float = Field(3600.0, gt=0, description="A WebSocket is closed (1001) after this long.")
    db_pool: AsyncDbPool = Field(
        default_factory=AsyncDbPool, description="Each worker's connection pool (TWINSTACK_ASYNC_DB_*)."
    )


async def get_settings(request: Request) -> Settings:
    """The instance the app factory was given; tests override it per app, never globally."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
