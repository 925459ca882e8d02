"""The Query/Retrieve SCP over real associations, pynetdicom as the SCU (PS3.4 C.4)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, Association, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from app.db import session_scope
from app.models import RemoteAe
from dicom_scp import qr as qr_adapter
from tests.support.scp import Scp, start_scp
from tests.support.stored import SeriesSpec, add_remote_ae, dataset_bytes, index_files, make_study

FIND = StudyRootQueryRetrieveInformationModelFind
GET = StudyRootQueryRetrieveInformationModelGet
MOVE = StudyRootQueryRetrieveInformationModelMove
STUDY_UID = "1.2.826.0.1.3680043.10.543.88.1"


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path, mwl_max_results=3)
    yield server
    server.stop()


@pytest.fixture
def files(scp: Scp) -> list[Path]:
    """Two CT files in Explicit VR Little Endian, one MR file in Implicit VR Little Endian."""
    storage = scp.settings.storage.dir
    paths = make_study(
        storage,
        study_uid=STUDY_UID,
        series=(SeriesSpec("CT", 2), SeriesSpec("MR", 1, ImplicitVRLittleEndian)),
    )
    index_files(scp.factory, storage, paths)
    return paths


def _study(**keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = STUDY_UID
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _associate(port: int, contexts: list[str], ae: AE | None = None, **kwargs: Any) -> Association:
    ae = ae or AE(ae_title="QRSCU")
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER", **kwargs)
    assert assoc.is_established
    return assoc


def _uids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _failed(identifier: Dataset) -> list[str]:
    value = identifier.FailedSOPInstanceUIDList
    return [value] if isinstance(value, str) else list(value)


def test_find_answers_with_level_and_retrieve_ae(scp: Scp, files: list[Path]) -> None:
    assoc = _associate(scp.port, [FIND])
    identifier = _study(ModalitiesInStudy="", NumberOfStudyRelatedInstances="")
    responses = list(assoc.send_c_find(identifier, FIND))
    assoc.release()
    statuses = [int(s.Status) for s, _ in responses]
    assert statuses == [0xFF00, 0x0000]
    answer = responses[0][1]
    assert answer is not None
    assert answer.QueryRetrieveLevel == "STUDY"
    assert answer.RetrieveAETitle == "MWLBROKER"
    assert list(answer.ModalitiesInStudy) == ["CT", "MR"]
    assert int(answer.NumberOfStudyRelatedInstances) == 3


def test_find_warns_when_a_return_key_carries_a_value(scp: Scp, files: list[Path]) -> None:
    assoc = _associate(scp.port, [FIND])
    responses = list(assoc.send_c_find(_study(NumberOfStudyRelatedSeries="2"), FIND))
    assoc.release()
    assert [int(s.Status) for s, _ in responses] == [0xFF01, 0x0000]


def test_find_stops_at_the_result_cap(scp: Scp) -> None:
    storage = scp.settings.storage.dir
    for index in range(4):
        uid = f"1.2.826.0.1.3680043.10.543.88.9{index}"
        index_files(scp.factory, storage, make_study(storage, study_uid=uid))
    assoc = _associate(scp.port, [FIND])
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    statuses = [int(s.Status) for s, _ in assoc.send_c_find(identifier, FIND)]
    assoc.release()
    assert statuses == [0xFF00, 0xFF00, 0xFF00, 0xA700]


def test_find_honours_c_cancel(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def many(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"0020000D": {"vr": "UI", "Value": [STUDY_UID]}}] * 300

    build = qr_adapter._response

    def slow(*args: Any) -> Dataset:
        time.sleep(0.02)  # responses slower than the network, so the cancel lands mid-way
        return build(*args)

    monkeypatch.setattr(qr_adapter.qr_service, "find", many)
    monkeypatch.setattr(qr_adapter, "_response", slow)
    server = start_scp(sqlite_url, tmp_path / "uncapped", mwl_max_results=0)
    try:
        assoc = _associate(server.port, [FIND])
        statuses = []
        for status, _ds in assoc.send_c_find(_study(), FIND):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                cx = next(c for c in assoc.accepted_contexts if c.abstract_syntax == FIND)
                assoc.send_c_cancel(1, cx.context_id)
        assoc.release()
    finally:
        server.stop()
    assert statuses[-1] == 0xFE00
    assert 1 <= len(statuses) - 1 < 300


def _get(port: int, storage_syntaxes: list[str]) -> tuple[list[Any], dict[str, bytes]]:
    received: dict[str, bytes] = {}

    def on_store(event: evt.Event) -> int:
        received[str(event.request.AffectedSOPInstanceUID)] = event.request.DataSet.getvalue()
        return 0x0000

    ae = AE(ae_title="QRSCU")
    ae.add_requested_context(GET)
    for storage in (CTImageStorage, MRImageStorage):
        ae.add_requested_context(storage, storage_syntaxes)
    roles = [build_role(CTImageStorage, scp_role=True), build_role(MRImageStorage, scp_role=True)]
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="MWLBROKER",
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    responses = list(assoc.send_c_get(_study(), GET))
    assoc.release()
    return responses, received


def test_get_sends_stored_bytes_and_lists_what_it_could_not_send(
    scp: Scp, files: list[Path]
) -> None:
    """The requestor accepts only Explicit VR LE: the Implicit VR MR file is not transcoded."""
    responses, received = _get(scp.port, [ExplicitVRLittleEndian])
    final, identifier = responses[-1]
    assert int(final.Status) == 0xB000
    assert int(final.NumberOfCompletedSuboperations) == 2
    assert int(final.NumberOfFailedSuboperations) == 1
    assert identifier is not None
    assert _failed(identifier) == _uids(files[2:])
    assert received == {p.stem: dataset_bytes(p) for p in files[:2]}
    remaining = [int(s.NumberOfRemainingSuboperations) for s, _ in responses[:-1]]
    assert remaining == [2, 1, 0]


def test_get_with_no_usable_context_fails_every_sub_operation(scp: Scp, files: list[Path]) -> None:
    responses, received = _get(scp.port, [ImplicitVRLittleEndian])
    final, identifier = responses[-1]
    assert int(final.Status) == 0xB000  # the MR file (Implicit VR) went through
    assert received == {files[2].stem: dataset_bytes(files[2])}
    assert identifier is not None
    assert sorted(_failed(identifier)) == sorted(_uids(files[:2]))


@pytest.fixture
def destination() -> Iterator[tuple[int, dict[str, bytes]]]:
    """A pynetdicom Storage SCP that accepts MR in Implicit VR LE only."""
    received: dict[str, bytes] = {}

    def on_store(event: evt.Event) -> int:
        received[str(event.request.AffectedSOPInstanceUID)] = event.request.DataSet.getvalue()
        received["originator"] = str(event.request.MoveOriginatorApplicationEntityTitle).encode()
        return 0x0000

    ae = AE(ae_title="DEST")
    ae.add_supported_context(MRImageStorage, [ImplicitVRLittleEndian])
    ae.add_supported_context(CTImageStorage, [ImplicitVRLittleEndian])
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    yield int(server.server_address[1]), received
    server.shutdown()


def test_move_counts_and_failed_list(
    scp: Scp, files: list[Path], destination: tuple[int, dict[str, bytes]]
) -> None:
    port, received = destination
    add_remote_ae(scp.factory, "DEST", port)
    assoc = _associate(scp.port, [MOVE])
    responses = list(assoc.send_c_move(_study(), "DEST", MOVE))
    assoc.release()
    final, identifier = responses[-1]
    assert int(final.Status) == 0xB000
    assert int(final.NumberOfCompletedSuboperations) == 1
    assert int(final.NumberOfFailedSuboperations) == 2
    assert identifier is not None
    assert sorted(_failed(identifier)) == sorted(_uids(files[:2]))
    assert received.pop("originator") == b"QRSCU"  # the C-MOVE requestor (PS3.7 9.3.1.1)
    assert received == {files[2].stem: dataset_bytes(files[2])}


def test_move_to_unknown_or_non_store_destination_is_a801(
    scp: Scp, files: list[Path], destination: tuple[int, dict[str, bytes]]
) -> None:
    add_remote_ae(scp.factory, "MPPSONLY", destination[0], services=("mpps",))
    with session_scope(scp.factory) as session:
        session.add(RemoteAe(ae_title="TLSDEST", host="127.0.0.1", port=1, tls=True,
                             services=["store"]))  # fmt: skip
    assoc = _associate(scp.port, [MOVE])
    for title in ("NOWHERE", "MPPSONLY", "TLSDEST"):
        responses = list(assoc.send_c_move(_study(), title, MOVE))
        assert [int(s.Status) for s, _ in responses] == [0xA801], title
    assoc.release()
    assert destination[1] == {}


def test_move_without_level_fails(scp: Scp, files: list[Path]) -> None:
    assoc = _associate(scp.port, [PatientRootQueryRetrieveInformationModelMove])
    identifier = Dataset()
    identifier.PatientID = "P1"
    responses = list(
        assoc.send_c_move(identifier, "DEST", PatientRootQueryRetrieveInformationModelMove)
    )
    assoc.release()
    assert int(responses[-1][0].Status) == 0xC514


def test_find_answers_non_ascii_names_in_the_request_character_set(scp: Scp) -> None:
    storage = scp.settings.storage.dir
    paths = make_study(storage, patient_name="MÜLLER^JOSÉ", charset="ISO_IR 100")
    index_files(scp.factory, storage, paths)
    assoc = _associate(scp.port, [FIND])
    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 100"
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "müller*"
    responses = list(assoc.send_c_find(identifier, FIND))
    assoc.release()
    answer = responses[0][1]
    assert answer is not None
    assert answer.SpecificCharacterSet == "ISO_IR 100"
    assert str(answer.PatientName) == "MÜLLER^JOSÉ"


def test_other_senders_of_file_paths_keep_pynetdicom_defaults(
    scp: Scp, files: list[Path], destination: tuple[int, dict[str, bytes]]
) -> None:
    """The raw sending switch is process-wide: a file path sent by other code is still read
    and converted to the accepted transfer syntax (Explicit -> Implicit VR here)."""
    port, received = destination
    ae = AE(ae_title="OTHER")
    ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="DEST")
    assert assoc.is_established
    status = assoc.send_c_store(files[0])
    assoc.release()
    assert int(status.Status) == 0x0000
    assert files[0].stem in received


def test_find_refusal_names_the_offending_element(scp: Scp) -> None:
    assoc = _associate(scp.port, [FIND])
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = "1.2*"
    [(status, _ds)] = list(assoc.send_c_find(identifier, FIND))
    assoc.release()
    assert int(status.Status) == 0xA900
    assert status.OffendingElement == 0x0020000D
