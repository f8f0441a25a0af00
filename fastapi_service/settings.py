"""Typed settings for the FastAPI service, handed to routes through ``SettingsDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import Field

from twinstack_contract.settings import ServiceSettings


class Settings(ServiceSettings):
    process_pool_workers: int = Field(
        1, ge=1, le=16, description="Processes for the CPU fix endpoint (/lab/cpu-in-process-pool)."
    )


def get_settings(request: Request) -> Settings:
    """The instance the app factory was given; tests override it per app, never globally."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
