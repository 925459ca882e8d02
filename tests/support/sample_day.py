"""A plausible day of a small radiology department, put in through the REST API."""

from __future__ import annotations

from typing import Any

import httpx

STATIONS = [
    ("CT", "CT01", "CT ROOM 1"),
    ("CT", "CT02", "CT ROOM 2"),
    ("MR", "MR01", "MRI 1.5T"),
    ("US", "US01", "ULTRASOUND"),
    ("CR", "DX01", "X-RAY 1"),
]

# time | station | modality | patient ID | name | birth date | sex | accession | procedure
_DAY = """
0730 | CT01 | CT | PAT1001 | MÜLLER^ANNA | 19560312 | F | ACC1001 | CT HEAD W/O CONTRAST
0800 | CT01 | CT | PAT1002 | OKAFOR^CHINEDU | 19790521 | M | ACC1002 | CT CHEST ABDOMEN PELVIS
0845 | CT01 | CT | PAT1003 | SILVA^MARIA^JOSE | 19880117 | F | ACC1003 | CT ANGIO PULMONARY
1000 | CT01 | CT | PAT1004 | NGUYEN^THI LAN | 19640930 | F | ACC1004 | CT LUMBAR SPINE
1330 | CT01 | CT | PAT1005 | JOHANSSON^ERIK | 19500704 | M | ACC1005 | CT HEAD W/O CONTRAST
0815 | CT02 | CT | PAT1006 | KOWALSKI^PIOTR | 19720211 | M | ACC1006 | CT ABDOMEN
0930 | CT02 | CT | PAT1007 | DUBOIS^CLAIRE | 19911103 | F | ACC1007 | CT SINUSES
1115 | CT02 | CT | PAT1008 | ROSSI^GIULIA | 19830826 | F | ACC1008 | CT KNEE LEFT
0800 | MR01 | MR | PAT1009 | SMITH^JOHN | 19670415 | M | ACC1009 | MR BRAIN WITH CONTRAST
0900 | MR01 | MR | PAT1010 | GARCIA^LUCIA | 19950608 | F | ACC1010 | MR KNEE RIGHT
1030 | MR01 | MR | PAT1011 | YILMAZ^MEHMET | 19780120 | M | ACC1011 | MR LUMBAR SPINE
1400 | MR01 | MR | PAT1012 | TANAKA^HIROSHI | 19610929 | M | ACC1012 | MR PROSTATE
0830 | US01 | US | PAT1013 | BROWN^EMILY | 19990302 | F | ACC1013 | US ABDOMEN
0900 | US01 | US | PAT1014 | AHMED^FATIMA | 19870714 | F | ACC1014 | US THYROID
0945 | US01 | US | PAT1015 | MÜLLER^ANNA | 19560312 | F | ACC1015 | US CAROTID DOPPLER
0745 | DX01 | CR | PAT1016 | O'BRIEN^SEAN | 19450218 | M | ACC1016 | XR CHEST 2 VIEWS
0815 | DX01 | CR | PAT1017 | NOVAK^JANA | 20120509 | F | ACC1017 | XR WRIST RIGHT
1230 | DX01 | CR | PAT1018 | LEE^MIN-JUN | 19730827 | M | ACC1018 | XR CHEST 2 VIEWS
"""
DAY = [
    (t, st, m, (pid, name, bd, sex), proc, acc)
    for t, st, m, pid, name, bd, sex, acc, proc in (
        [f.strip() for f in line.split("|")] for line in _DAY.strip().splitlines()
    )
]

# accession -> status to move its step to, as the department would have it mid-morning
PROGRESS = {
    "ACC1001": "COMPLETED",
    "ACC1002": "STARTED",
    "ACC1006": "COMPLETED",
    "ACC1009": "COMPLETED",
    "ACC1010": "STARTED",
    "ACC1013": "COMPLETED",
    "ACC1014": "ARRIVED",
    "ACC1016": "COMPLETED",
    "ACC1017": "DISCONTINUED",
    "ACC1003": "READY",
}
CANCELED = {"ACC1007"}


def order_body(
    *,
    day: str,
    time: str,
    station: str,
    modality: str,
    patient: tuple[str, str, str, str],
    procedure: str,
    accession: str,
) -> dict[str, Any]:
    patient_id, name, birth_date, sex = patient
    return {
        "accession_number": accession,
        "patient": {"patient_id": patient_id, "name": name, "birth_date": birth_date, "sex": sex},
        "procedures": [
            {
                "description": procedure,
                "steps": [
                    {
                        "station_ae_titles": [station],
                        "start_date": day,
                        "start_time": time,
                        "modality": modality,
                        "description": procedure,
                    }
                ],
            }
        ],
    }


def seed(client: httpx.Client, day: str) -> dict[str, int]:
    """Stations and a day of orders; returns accession -> step id."""
    for modality, ae_title, name in STATIONS:
        client.post(
            "/api/stations",
            json={
                "modality": modality,
                "ae_title": ae_title,
                "station_name": name,
                "location": "" if ae_title not in ("CT02",) else "ER",
            },
        )
    steps: dict[str, int] = {}
    for time, station, modality, patient, procedure, accession in DAY:
        answer = client.post(
            "/api/orders",
            json=order_body(
                day=day,
                time=time,
                station=station,
                modality=modality,
                patient=patient,
                procedure=procedure,
                accession=accession,
            ),
        )
        answer.raise_for_status()
        order = answer.json()
        steps[accession] = order["procedures"][0]["steps"][0]["id"]
        if accession in CANCELED:
            reason = {"reason": "patient called in sick"}
            client.post(f"/api/orders/{order['id']}/cancel", json=reason).raise_for_status()
    for accession, status in PROGRESS.items():
        if status in ("COMPLETED", "DISCONTINUED"):
            client.post(f"/api/steps/{steps[accession]}/status/STARTED").raise_for_status()
        client.post(f"/api/steps/{steps[accession]}/status/{status}").raise_for_status()
    return steps
