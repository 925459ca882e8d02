"""MPPS SCP handlers (PS3.4 Annex F): N-CREATE, N-SET and N-GET.

Each decodes the data set to DICOM JSON, calls one service, and encodes the answer or maps the
domain error through ``dicom_scp.status.MPPS_ERROR_STATUS``. The service validates everything
(pynetdicom does not).
"""

from __future__ import annotations

import logging
from io import BytesIO
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dsutils import decode

from app.db import session_scope
from app.domain.actor import Actor
from app.domain.dicom_json import JsonDataset, validate_json_dataset
from app.domain.errors import DomainError
from app.domain.mpps import StartPerformedStep, UpdatePerformedStep
from app.domain.status import AuditSource
from app.services import mpps
from dicom_scp.handlers import ScpContext, malformed_data_set
from dicom_scp.status import NStatus, mpps_failure, status_dataset

LOG = logging.getLogger(__name__)

Result = tuple[int | Dataset, Dataset | None]


def _json(ds: Dataset) -> JsonDataset:
    return validate_json_dataset(ds.to_json_dict())


def _uid(event: evt.Event, name: str) -> str:
    return str(getattr(event.request, name, None) or "")


def _tag(error: DomainError) -> int | None:
    return tag_for_keyword(error.field) if error.field else None


def _actor(event: evt.Event, uid: str) -> Actor:
    """The audit trail's actor: the calling AE title, with the MPPS UID as the context."""
    return Actor(AuditSource.DICOM, str(event.assoc.requestor.ae_title).strip(), context=uid)


def _run(ctx: ScpContext, what: str, uid: str, call: Any, echo: Dataset | None = None) -> Result:
    """Run one service call in its own transaction; map errors.

    The answer is the stored data set; ``echo`` is that data set already decoded (N-CREATE
    stores the request's whole), which spares building it again from DICOM JSON."""
    try:
        with session_scope(ctx.session_factory) as session:
            found = call(session)
            answer = echo if echo is not None else Dataset.from_json(found.attributes)
            status = found.status
    except DomainError as exc:
        LOG.info("MPPS %s %s refused: %s", what, uid, exc.message)
        return mpps_failure(exc, _tag(exc), identifier_list=what == "N-SET"), None
    except Exception:
        LOG.exception("MPPS %s %s failed", what, uid)
        return status_dataset(NStatus.PROCESSING_FAILURE, f"{what} failed; see the log"), None
    LOG.info("MPPS %s %s: %s", what, uid, status)
    return int(NStatus.SUCCESS), answer


def _echo(event: evt.Event, parameter: str) -> Dataset:
    """The request's data set, decoded again but lazily: its elements stay raw, so encoding it
    for the answer copies their bytes instead of encoding every value (it was already read
    whole, as DICOM JSON, by ``_decoded``)."""
    stream: BytesIO | None = getattr(event.request, parameter, None)
    if stream is None:  # a test's event carries a decoded data set
        return Dataset(event.attribute_list)
    syntax = event.context.transfer_syntax
    ds = decode(stream, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
    ds.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian)
    return ds


def _decoded(event: evt.Event, attribute: str, parameter: str) -> JsonDataset | Dataset:
    """The data set as DICOM JSON, or the failure to answer with.

    A data set that cannot be decoded whole (an element running past its end, PS3.5 7.1) is
    refused with 0x0110 Processing failure before any of it is used: 0x0107 Attribute List
    Error is a warning, and 0x0106 Invalid Attribute Value would claim a value was read.
    """
    malformed = malformed_data_set(event, parameter)
    if malformed is not None:
        LOG.info("MPPS data set refused: cannot be decoded: %s", malformed)
        return status_dataset(
            NStatus.PROCESSING_FAILURE, f"data set cannot be decoded: {malformed}"
        )
    try:
        return _json(getattr(event, attribute))
    except Exception:
        LOG.exception("MPPS data set could not be decoded")
        return status_dataset(NStatus.PROCESSING_FAILURE, "data set could not be decoded")


def handle_n_create(event: evt.Event, ctx: ScpContext) -> Result:
    """N-CREATE: the SCU supplies the SOP Instance UID (PS3.4 F.7.2.1.2)."""
    uid = _uid(event, "AffectedSOPInstanceUID")
    if not uid:
        return status_dataset(
            NStatus.MISSING_ATTRIBUTE, "MPPS N-CREATE needs an Affected SOP Instance UID"
        ), None
    attributes = _decoded(event, "attribute_list", "AttributeList")
    if isinstance(attributes, Dataset):
        return attributes, None
    try:
        command = StartPerformedStep.from_json(uid, attributes)
    except DomainError as exc:
        LOG.info("MPPS N-CREATE %s refused: %s", uid, exc.message)
        return mpps_failure(exc, _tag(exc), identifier_list=False), None
    return _run(
        ctx,
        "N-CREATE",
        uid,
        lambda s: mpps.create(
            s,
            command=command,
            delivery=ctx.delivery,
            actor=_actor(event, uid),
        ),
        echo=_echo(event, "AttributeList"),
    )


def handle_n_set(event: evt.Event, ctx: ScpContext) -> Result:
    uid = _uid(event, "RequestedSOPInstanceUID")
    modifications = _decoded(event, "modification_list", "ModificationList")
    if isinstance(modifications, Dataset):
        return modifications, None
    return _run(
        ctx,
        "N-SET",
        uid,
        lambda s: mpps.update(
            s,
            command=UpdatePerformedStep(uid, modifications),
            delivery=ctx.delivery,
            actor=_actor(event, uid),
        ),
    )


def handle_n_get(event: evt.Event, ctx: ScpContext) -> Result:
    """N-GET (MPPS Retrieve): the stored attributes, or those requested."""
    uid = _uid(event, "RequestedSOPInstanceUID")
    result = _run(ctx, "N-GET", uid, lambda s: mpps.get(s, uid=uid))
    status, ds = result
    if ds is None:
        return result
    wanted = {int(tag) for tag in event.attribute_identifiers or []}
    if wanted:
        for elem in list(ds):
            if int(elem.tag) not in wanted:
                del ds[elem.tag]
    return status, ds
