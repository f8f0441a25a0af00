"""Typed settings for the Flask service (the shared contract settings plus its own)."""

from __future__ import annotations

from pydantic import Field

from twinstack_contract.settings import ServiceSettings


class Settings(ServiceSettings):
    job_threads: int = Field(2, ge=1, le=32, description="Threads per worker that run accepted /jobs.")
