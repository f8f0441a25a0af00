"""Shared per-request pieces: the JSON body gate and the clients the lifespan created
(downstream, database, jobs).

Each is ``async def``: FastAPI runs a plain ``def`` dependency in the thread pool, a hop to
another thread and back on every request for what is an attribute lookup."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, Request

from twinstack_contract.errors import require_json
from twinstack_db.session import AsyncDatabase
from twinstack_runtime.jobs import JobRunner


async def json_body(request: Request) -> None:
    """415 for a non-JSON body, before FastAPI tries to parse it (same rule as Flask)."""
    require_json(request.headers.get("content-type"))


async def get_downstream(request: Request) -> httpx.AsyncClient:
    return request.app.state.downstream


async def get_jobs(request: Request) -> JobRunner:
    return request.app.state.jobs


async def get_db(request: Request) -> AsyncDatabase:
    return request.app.state.db


DownstreamDep = Annotated[httpx.AsyncClient, Depends(get_downstream)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
DbDep = Annotated[AsyncDatabase, Depends(get_db)]
JsonBody = Depends(json_body)
