"""Query/Retrieve over the stored index, on SQLite and PostgreSQL (PS3.4 C.6.1, C.6.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.db import SessionFactory
from app.domain.dicom_json import strings_of
from app.domain.qr import QrModel, parse_query
from app.services import qr
from tests.support.stored import SeriesSpec, index_files, make_study

LEVEL = "00080052"
PATIENT_ID = "00100020"
PATIENT_NAME = "00100010"
STUDY_UID = "0020000D"
STUDY_DATE = "00080020"
SERIES_UID = "0020000E"
SOP_UID = "00080018"
MODALITY = "00080060"


@pytest.fixture
def archive(session_factory: SessionFactory, tmp_path: Path) -> dict[str, Any]:
    storage = tmp_path / "storage"
    ct_mr = make_study(
        storage,
        patient_id="P1",
        patient_name="Doe^Jane",
        study_uid="1.2.3.1",
        accession="ACC1",
        study_date="20260105",
        series=(SeriesSpec("CT", 2), SeriesSpec("MR", 1)),
    )
    second = make_study(
        storage,
        patient_id="P1",
        patient_name="Doe^Jane",
        study_uid="1.2.3.2",
        accession="ACC2",
        study_date="20260110",
        series=(SeriesSpec("CT", 1),),
    )
    other = make_study(
        storage,
        patient_id="P2",
        patient_name="Roe^Richard",
        study_uid="1.2.3.3",
        accession="ACC3",
        study_date="20251231",
        study_time="2300",
        series=(SeriesSpec("MR", 1),),
    )
    index_files(session_factory, storage, [*ct_mr, *second, *other])
    return {"storage": storage, "files": [*ct_mr, *second, *other]}


def _find(
    session_factory: SessionFactory, model: QrModel, keys: dict[str, str], limit: int = 0
) -> list[dict[str, Any]]:
    query = parse_query(model, keys, name_case_insensitive=True)
    with session_factory() as session:
        return qr.find(session, query, retrieve_ae_title="BROKER", limit=limit)


def _values(answers: list[dict[str, Any]], tag: str) -> list[str]:
    return [v for a in answers for v in strings_of(a, tag)]


def test_patient_level_groups_studies_and_counts_all_of_them(
    session_factory: SessionFactory, archive: dict[str, Any]
) -> None:
    keys = {LEVEL: "PATIENT", PATIENT_ID: "", PATIENT_NAME: "doe*", "00201200": "",
            "00201202": "", "00201204": ""}  # fmt: skip
    answers = _find(session_factory, QrModel.PATIENT_ROOT, keys)
    assert len(answers) == 1
    [answer] = answers
    assert strings_of(answer, PATIENT_ID) == ["P1"]
    assert answer["00201200"]["Value"] == [2]
    assert answer["00201202"]["Value"] == [3]
    assert answer["00201204"]["Value"] == [4]
    assert answer[LEVEL]["Value"] == ["PATIENT"]
    assert answer["00080054"]["Value"] == ["BROKER"]
    assert set(answer) == {*keys, "00080054"}  # only what was asked


def test_study_level_date_range_modalities_and_counts(
    session_factory: SessionFactory, archive: dict[str, Any]
) -> None:
    keys = {LEVEL: "STUDY", STUDY_UID: "", STUDY_DATE: "20260101-", "00080061": "",
            "00201206": "", "00201208": ""}  # fmt: skip
    answers = _find(session_factory, QrModel.STUDY_ROOT, keys)
    assert _values(answers, STUDY_UID) == ["1.2.3.1", "1.2.3.2"]
    first = answers[0]
    assert first["00080061"]["Value"] == ["CT", "MR"]
    assert first["00201206"]["Value"] == [2]
    assert first["00201208"]["Value"] == [3]
    assert PATIENT_NAME not in first


def test_study_level_matches_modalities_in_study(
    session_factory: SessionFactory, archive: dict[str, Any]
) -> None:
    keys = {LEVEL: "STUDY", STUDY_UID: "", "00080061": "MR"}
    answers = _find(session_factory, QrModel.STUDY_ROOT, keys)
    assert _values(answers, STUDY_UID) == ["1.2.3.1", "1.2.3.3"]


def test_patient_root_study_level_is_within_the_patient(
    session_factory: SessionFactory, archive: dict[str, Any]
) -> None:
    keys = {LEVEL: "STUDY", PATIENT_ID: "P2", STUDY_UID: "", "00080050": ""}
    answers = _find(session_factory, QrModel.PATIENT_ROOT, keys)
    assert _values(answers, "00080050") == ["ACC3"]


def test_series_level_within_the_study(
    session_factory: SessionFactory, archive: dict[str, Any]
) -> None:
    keys = {LEVEL: "SERIES", STUDY_UID: "1.2.3.1", SERIES_UID: "", MODALITY: "",
            "00201209": ""}  # fmt: skip
    answers = _find(session_factory, QrModel.STUDY_ROOT, keys)
    assert _values(answers, MODALITY) == ["CT", "MR"]
    assert [a["00201209"]["Value"][0] for a in answers] == [2, 1]
    assert all(a[STUDY_UID]["Value"] == ["1.2.3.1"] for a in answers)


def test_image_level_list_of_uids(session_factory: SessionFactory, archive: dict[str, Any]) -> None:
    keys = {LEVEL: "SERIES", STUDY_UID: "1.2.3.1", SERIES_UID: "", MODALITY: "CT"}
    [series] = _find(session_factory, QrModel.STUDY_ROOT, keys)
    series_uid = series[SERIES_UID]["Value"][0]
    keys = {LEVEL: "IMAGE", STUDY_UID: "1.2.3.1", SERIES_UID: series_uid, SOP_UID: "",
            "00200013": ""}  # fmt: skip
    images = _find(session_factory, QrModel.STUDY_ROOT, keys)
    uids = _values(images, SOP_UID)
    assert len(uids) == 2
    keys[SOP_UID] = "\\".join([uids[1], "9.9.9"])
    assert _values(_find(session_factory, QrModel.STUDY_ROOT, keys), SOP_UID) == [uids[1]]


def test_name_matching_ignores_case_and_time_ranges_match_by_meaning(
    session_factory: SessionFactory, archive: dict[str, Any]
) -> None:
    keys = {LEVEL: "STUDY", STUDY_UID: "", PATIENT_NAME: "ROE^RICHARD", "00080030": "2200-"}
    assert _values(_find(session_factory, QrModel.STUDY_ROOT, keys), STUDY_UID) == ["1.2.3.3"]
    keys["00080030"] = "-2259"
    assert _find(session_factory, QrModel.STUDY_ROOT, keys) == []


def test_limit_and_retrieve_lists(session_factory: SessionFactory, archive: dict[str, Any]) -> None:
    keys = {LEVEL: "STUDY", STUDY_UID: ""}
    assert len(_find(session_factory, QrModel.STUDY_ROOT, keys, limit=2)) == 2
    query = parse_query(
        QrModel.PATIENT_ROOT, {LEVEL: "PATIENT", PATIENT_ID: "P1"},
        name_case_insensitive=True, retrieve=True,
    )  # fmt: skip
    with session_factory() as session:
        refs = qr.retrieve(session, query)
    storage: Path = archive["storage"]
    assert sorted(r.path for r in refs) == sorted(
        str(p.relative_to(storage)) for p in archive["files"][:4]
    )


def test_paging_gives_the_same_answers_and_stops_at_the_limit(
    session_factory: SessionFactory, archive: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {LEVEL: "SERIES", STUDY_UID: "1.2.3.1", SERIES_UID: "", MODALITY: ""}
    whole = _find(session_factory, QrModel.STUDY_ROOT, keys)
    patients = {LEVEL: "PATIENT", PATIENT_ID: "", "00201204": ""}
    all_patients = _find(session_factory, QrModel.PATIENT_ROOT, patients)
    monkeypatch.setattr(qr, "_CHUNK", 1)
    assert _find(session_factory, QrModel.STUDY_ROOT, keys) == whole
    assert _find(session_factory, QrModel.STUDY_ROOT, keys, limit=1) == whole[:1]
    # P1 has two studies: paging one study at a time still counts all of them
    assert _find(session_factory, QrModel.PATIENT_ROOT, patients, limit=1) == all_patients[:1]
    assert all_patients[0]["00201204"]["Value"] == [4]
