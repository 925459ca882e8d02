"""The whole process in-process: every listener on a free port, health, clean stop; the CLI."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pynetdicom import AE

from app.cli import main
from app.runtime import Broker
from tests.support.settings import make_settings


def test_broker_starts_on_free_ports_and_stops(sqlite_url: str, tmp_path: Path) -> None:
    broker = Broker(make_settings(sqlite_url, tmp_path))
    ports = broker.start()
    try:
        assert set(ports) == {"dicom", "hl7", "http"} and all(ports.values())
        health = httpx.get(f"http://127.0.0.1:{ports['http']}/api/health", timeout=5)
        assert health.status_code == 200
        body = health.json()
        assert body["listeners"]["dicom"] == {
            "up": True,
            "port": ports["dicom"],
            "tls_port": None,  # BROKER_DICOM_TLS_PORT is off by default
            "ae_title": "MWLBROKER",
        }
        ae = AE()
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", ports["dicom"], ae_title="MWLBROKER")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        broker.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{ports['http']}/api/health", timeout=2)


def test_only_one_front_end(sqlite_url: str, tmp_path: Path) -> None:
    broker = Broker(make_settings(sqlite_url, tmp_path), only="dicom")
    try:
        assert set(broker.start()) == {"dicom"}
    finally:
        broker.stop()


def test_invalid_setting_stops_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROKER_AE_TITLE", "THIS-TITLE-IS-FAR-TOO-LONG")
    assert main(["conformance"]) == 2
    err = capsys.readouterr().err
    assert "BROKER_AE_TITLE" in err and "16 characters" in err


def test_serve_refuses_an_unmigrated_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROKER_DATABASE_URL", f"sqlite:///{tmp_path}/new.db")
    monkeypatch.setenv("BROKER_DICOM_PORT", "0")
    monkeypatch.setenv("BROKER_HTTP_PORT", "0")
    assert main(["serve"]) == 2
    assert "run 'mwl-broker db upgrade'" in capsys.readouterr().err


def test_db_upgrade_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BROKER_DATABASE_URL", f"sqlite:///{tmp_path}/sub/dir/new.db")
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "sub" / "dir" / "new.db").exists()
