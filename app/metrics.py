"""Prometheus metrics of this process: every definition in one place, one registry.

Adapters import the metric objects from here and count what crosses their edge; the HTTP
listener serves the registry at ``GET /metrics`` (``app.api.metrics``). The registry is
process-local (one broker process runs one uvicorn worker), so each process behind the load
balancer is scraped on its own. Gauges read from the database (outbox backlog, MPPS by status)
are the same in every broker on one database: they are set at scrape time from
``app.services.gauges`` (take ``max()`` over instances, not ``sum()``).

Names follow the Prometheus conventions: ``mwl_`` prefix, ``_total`` for counters, base units
(seconds). Labels have small fixed value sets (no AE titles, no addresses), so a hostile peer
cannot grow the registry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

from app.domain.mpps import MppsStatus
from app.schemas import OperationalGauges

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REGISTRY = CollectorRegistry(auto_describe=True)
# Process basics: CPU, memory, open file descriptors, start time; Python version and GC.
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

# --- DICOM (PS3.8 associations; the hooks are in dicom_scp/observe.py) ----------------------

DICOM_CONNECTIONS_UNASSOCIATED = Gauge(
    "mwl_dicom_connections_unassociated",
    "TCP connections on the DICOM port that have not (yet) become an association",
    registry=REGISTRY,
)
DICOM_ASSOCIATIONS_OPEN = Gauge(
    "mwl_dicom_associations_open", "DICOM associations established and not ended", registry=REGISTRY
)
DICOM_ASSOCIATIONS_ACCEPTED = Counter(
    "mwl_dicom_associations_accepted", "DICOM associations accepted", registry=REGISTRY
)
DICOM_ASSOCIATIONS_REJECTED = Counter(
    "mwl_dicom_associations_rejected",
    "DICOM associations refused (A-ASSOCIATE-RJ), by reason",
    ["reason"],
    registry=REGISTRY,
)
DICOM_ASSOCIATIONS_ABORTED = Counter(
    "mwl_dicom_associations_aborted",
    "DICOM associations ended by A-ABORT or A-P-ABORT (either side)",
    registry=REGISTRY,
)
DICOM_ASSOCIATIONS_RELEASED = Counter(
    "mwl_dicom_associations_released", "DICOM associations ended by A-RELEASE", registry=REGISTRY
)
DicomStats = Callable[[], Mapping[str, int]]
_dicom_sources: list[DicomStats] = []
_sources_lock = threading.Lock()


def watch_dicom(source: DicomStats) -> None:
    """Read ``source()`` (``associations_open``, ``connections_unassociated``) at each scrape:
    the DICOM listener registers its ``stats`` when it starts."""
    with _sources_lock:
        _dicom_sources.append(source)


def unwatch_dicom(source: DicomStats) -> None:
    with _sources_lock:
        if source in _dicom_sources:
            _dicom_sources.remove(source)


def _dicom_total(key: str) -> float:
    with _sources_lock:
        sources = list(_dicom_sources)
    return float(sum(source().get(key, 0) for source in sources))


DICOM_ASSOCIATIONS_OPEN.set_function(lambda: _dicom_total("associations_open"))
DICOM_CONNECTIONS_UNASSOCIATED.set_function(lambda: _dicom_total("connections_unassociated"))

REJECT_REASONS = ("calling_ae", "called_ae", "limit", "other")
for _reason in REJECT_REASONS:
    DICOM_ASSOCIATIONS_REJECTED.labels(_reason)

FIND_MODELS = ("worklist", "query_retrieve")
FIND_DURATION = Histogram(
    "mwl_dicom_find_duration_seconds",
    "C-FIND from the request to the final response, by information model",
    ["model"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
for _model in FIND_MODELS:
    FIND_DURATION.labels(_model)

# --- HL7 v2 ------------------------------------------------------------------------------

HL7_NO_ACK = "none"  # closed without an ACK (database down, BROKER_HL7_DB_DOWN=close)
HL7_OUTCOMES = ("AA", "AE", "AR", HL7_NO_ACK)
HL7_MESSAGES = Counter(
    "mwl_hl7_messages",
    "Inbound HL7 messages by acknowledgement code (none: closed without an ACK)",
    ["ack"],
    registry=REGISTRY,
)
for _code in HL7_OUTCOMES:
    HL7_MESSAGES.labels(_code)

# --- the database, read at scrape time -----------------------------------------------------

OUTBOX_PENDING = Gauge(
    "mwl_outbox_pending", "Outbox messages not yet delivered (all brokers)", registry=REGISTRY
)
OUTBOX_OLDEST_AGE = Gauge(
    "mwl_outbox_oldest_pending_age_seconds",
    "Age of the oldest undelivered outbox message; 0 when none is pending",
    registry=REGISTRY,
)
MPPS_INSTANCES = Gauge(
    "mwl_mpps_instances",
    "MPPS instances by Performed Procedure Step Status",
    ["status"],
    registry=REGISTRY,
)
SCRAPE_DATABASE_UP = Gauge(
    "mwl_metrics_database_up",
    "1 when the database gauges of this scrape could be read, else 0 (they keep old values)",
    registry=REGISTRY,
)


def set_database_gauges(gauges: OperationalGauges, *, now: datetime) -> None:
    """Copy one scrape's database reading into the gauges."""
    OUTBOX_PENDING.set(gauges.outbox_pending)
    oldest = gauges.outbox_oldest_created_at
    if oldest is not None and oldest.tzinfo is None:  # the columns hold UTC without a zone
        oldest = oldest.replace(tzinfo=UTC)
    OUTBOX_OLDEST_AGE.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    for status in MppsStatus:
        MPPS_INSTANCES.labels(status.value).set(gauges.mpps_by_status.get(status.value, 0))
    SCRAPE_DATABASE_UP.set(1)


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
