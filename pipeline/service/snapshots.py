"""``POST /snapshots``: a consistent backup of the store, taken while the service keeps answering.

Runs in a worker thread on the service's own client (an embedded store admits one process, so the CLI
cannot snapshot it while the service runs), under the store's ingest lock like ``DELETE /documents``:
it waits ``service.ingest_lock_timeout`` for a running ingest job, then 503. Queries take no lock and
go on. Snapshots go into ``service.snapshot_dir`` (default ``<store>-snapshots``), one folder per
name; a client names it (letters, digits, ``._-``) or gets a UTC timestamp. Each one is an audit line.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, Field

from pipeline.service.deps import ServiceState, get_state
from pipeline.service.middleware import request_id_var
from pipeline.service.schemas import API_RESPONSES, ErrorBody
from pipeline.store.snapshot import Manifest, SnapshotError, create_snapshot, default_snapshot_dir

logger = logging.getLogger("pipeline.service.audit")

StateDep = Annotated[ServiceState, Depends(get_state)]
router = APIRouter(tags=["snapshots"], responses=API_RESPONSES)


class SnapshotRequest(BaseModel):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="Folder name under service.snapshot_dir (default: a UTC timestamp)")


@router.post(
    "/snapshots",
    response_model=Manifest,
    status_code=201,
    summary="Back up the store: every collection, the docstore and the cache, with a manifest",
    description="Consistent (taken under the ingest lock, after a flush) while queries go on; 409 if the name exists; 503 while an ingest job writes.",
    responses={409: {"model": ErrorBody, "description": "A snapshot of this name exists"}, 503: {"model": ErrorBody, "description": "An ingest job holds the store; retry when it is done"}},
)
async def create(state: StateDep, body: Annotated[SnapshotRequest | None, Body()] = None) -> Manifest:
    name = (body.name if body else None) or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = default_snapshot_dir(state.settings) / name

    def make() -> Manifest:
        try:
            return create_snapshot(state.settings, dest, client=state.client(), lock_timeout=state.settings.service.ingest_lock_timeout)
        except SnapshotError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from exc

    manifest = await anyio.to_thread.run_sync(make)
    logger.info("snapshot created: %s", name, extra={"points": sum(manifest.collections.values()), "documents": manifest.documents, "request_id": request_id_var.get("")})
    # Server paths stay on the server (as in every other response): the snapshot by its name only.
    return manifest.model_copy(update={"store": "<store>", "path": f"<snapshot_dir>/{name}"})
