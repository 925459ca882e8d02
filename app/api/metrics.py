"""``GET /metrics``: this process's Prometheus metrics (``app.metrics``).

Not public by default: it needs a viewer session or API token (Prometheus sends one with
``authorization: {credentials_file: ...}``), unless ``BROKER_METRICS_PUBLIC`` opens it
(``app.main`` decides when the router is included). Counts of associations and messages tell
an attacker on the network what talks to the broker and when. The database gauges are read
here, at scrape time, in one short session.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app import metrics
from app.db import session_scope
from app.models import utcnow
from app.services import gauges

LOG = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


def _read_database(request: Request) -> None:
    try:
        with session_scope(request.app.state.session_factory) as session:
            reading = gauges.read(session)
    except Exception as exc:  # the process metrics are still worth serving
        LOG.warning("metrics: database gauges unavailable: %s", type(exc).__name__)
        metrics.SCRAPE_DATABASE_UP.set(0)
        return
    metrics.set_database_gauges(reading, now=utcnow())


@router.get("/metrics")
async def scrape(request: Request) -> Response:
    await run_in_threadpool(_read_database, request)
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
