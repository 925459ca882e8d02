"""REST: ``GET /api/board`` (the staff page's day), on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.sample_day import order_body


def test_board_rows_for_a_day(client: TestClient) -> None:
    for time, station, accession in (("0900", "CT01", "ACC2"), ("0730", "MR01", "ACC1")):
        body = order_body(
            day="20261201",
            time=time,
            station=station,
            modality=station[:2],
            patient=("P-" + accession, "DOE^JANE", "19800101", "F"),
            procedure="HEAD",
            accession=accession,
        )
        assert client.post("/api/orders", json=body).status_code == 201
    answer = client.get("/api/board", params={"date": "20261201"})
    assert answer.status_code == 200
    rows = answer.json()
    assert [r["accession_number"] for r in rows] == ["ACC1", "ACC2"]
    assert set(rows[0]) == {
        "step_id", "order_id", "patient_pk", "patient_id", "patient_name", "birth_date", "sex",
        "accession_number", "requested_procedure_id", "procedure_description",
        "study_instance_uid", "sps_id", "station_ae_titles", "station_name", "modality",
        "start_date", "start_time", "status", "description", "updated_at", "images",
    }  # fmt: skip
    assert rows[0]["images"] is None  # nothing received yet
    assert rows[0]["station_ae_titles"] == ["MR01"] and rows[0]["status"] == "SCHEDULED"
    assert rows[0]["start_time"] == "073000" and rows[0]["patient_id"] == "P-ACC1"
    station = client.get("/api/board", params={"date": "20261201", "station": "CT01"}).json()
    assert [r["accession_number"] for r in station] == ["ACC2"]
    assert client.get("/api/board", params={"date": "20261202"}).json() == []


def test_board_needs_a_date_and_a_signed_in_viewer(
    client: TestClient, anonymous: TestClient
) -> None:
    assert client.get("/api/board").status_code == 422
    bad = client.get("/api/board", params={"date": "20261301"})
    assert bad.status_code == 422 and bad.json()["field"] == "date"
    assert anonymous.get("/api/board", params={"date": "20261201"}).status_code == 401
    assert anonymous.get("/api/events").status_code == 401
