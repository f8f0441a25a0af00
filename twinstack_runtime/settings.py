"""Settings both services read: environment -> typed settings -> code.

Each service subclasses this (adding what only it needs) and builds it in its app factory;
tests pass their own instance instead of patching the environment.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from twinstack_db.settings import DatabaseSettings

from .serving import DOWNSTREAM_PORT


class ServiceSettings(DatabaseSettings):
    """Both services' settings; the database's (URL, max_connections, pool timeout) included."""

    # env_ignore_empty: compose passes `${VAR:-}` as "", which means "use the default".
    model_config = SettingsConfigDict(env_prefix="TWINSTACK_", extra="ignore", env_ignore_empty=True)

    downstream_url: str = Field(
        f"http://127.0.0.1:{DOWNSTREAM_PORT}", description="Base URL of the downstream service /fanout and /ready call."
    )
    downstream_timeout_s: float = Field(35.0, gt=0, description="Per-call timeout; above the longest allowed wait.")
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=lambda: [ip_network("127.0.0.1/32"), ip_network("::1/128")],
        description="Peers whose X-Forwarded-* and X-Request-ID headers are believed (comma-separated CIDRs).",
    )
    job_threads: int = Field(2, ge=1, le=32, description="Threads per worker that run accepted /jobs.")
    job_capacity: int = Field(
        32, ge=1, le=10_000, description="Jobs one worker holds at once, waiting or running; then 503."
    )
    job_retention_s: float = Field(900.0, ge=60, description="Job records older than this are deleted.")
    job_stop_grace_s: float = Field(
        5.0, ge=0, le=30, description="On worker stop, how long running jobs may finish before they are failed."
    )
    # The per-request instrumentation, one switch each. All on in a deployment; each can be
    # turned off alone, to measure what it costs.
    access_log: bool = Field(True, description="One JSON access line per request (twinstack.access).")
    metrics: bool = Field(True, description="Per-request Prometheus metrics (counts, durations, in flight).")
    request_id: bool = Field(
        True, description="Take X-Request-ID from the proxy (or mint one), echo it, and put it in logs and errors."
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return [ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]
        return value
