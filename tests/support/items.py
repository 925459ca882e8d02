"""Worklist items as DICOM JSON (PS3.18 Annex F), with defaults a test overrides by keyword."""

from __future__ import annotations

from typing import Any


def mwl_item(
    *,
    patient_id: str = "P1",
    name: str | dict[str, str] = "DOE^JANE",
    accession: str = "A1",
    study_uid: str | None = "1.2.3.4.1",
    sps_id: str = "SPS1",
    station: str | list[str] = "CT01",
    date: str = "20261201",
    time_: str = "083000",
    modality: str = "CT",
    status: str | None = None,
    birth_date: str = "19800101",
    sex: str = "F",
    extra: dict[str, Any] | None = None,
    step_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A DICOM JSON worklist item (PS3.18 Annex F) with sensible defaults."""
    pn = name if isinstance(name, dict) else {"Alphabetic": name}
    stations = station if isinstance(station, list) else [station]
    step: dict[str, Any] = {
        "00400001": {"vr": "AE", "Value": stations},
        "00400002": {"vr": "DA", "Value": [date]},
        "00400003": {"vr": "TM", "Value": [time_]},
        "00080060": {"vr": "CS", "Value": [modality]},
        "00400009": {"vr": "SH", "Value": [sps_id]},
        "00400006": {"vr": "PN", "Value": [{"Alphabetic": "HOUSE^GREGORY"}]},
        "00400007": {"vr": "LO", "Value": ["CT HEAD"]},
        **(step_extra or {}),
    }
    if status:
        step["00400020"] = {"vr": "CS", "Value": [status]}
    item: dict[str, Any] = {
        "00100010": {"vr": "PN", "Value": [pn]},
        "00100020": {"vr": "LO", "Value": [patient_id]},
        "00100030": {"vr": "DA", "Value": [birth_date]},
        "00100040": {"vr": "CS", "Value": [sex]},
        "00080050": {"vr": "SH", "Value": [accession]},
        "00401001": {"vr": "SH", "Value": ["RP1"]},
        "00321060": {"vr": "LO", "Value": ["CT of the head"]},
        "00400100": {"vr": "SQ", "Value": [step]},
        **(extra or {}),
    }
    if study_uid:
        item["0020000D"] = {"vr": "UI", "Value": [study_uid]}
    return item
