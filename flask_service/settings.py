"""Typed settings for the Flask service: the settings both services share (twinstack_runtime.settings)."""

from __future__ import annotations

from pydantic import Field

from twinstack_db.settings import SyncDbPool
from twinstack_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    db_pool: SyncDbPool = Field(
        default_factory=SyncDbPool, description="Each worker's connection pool (TWINSTACK_SYNC_DB_*)."
    )
