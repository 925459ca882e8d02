"""The generated DICOM conformance statement: the committed copy, settings and code tables."""

from __future__ import annotations

import os

import pytest

from app.config import Settings
from app.domain.mwl_attributes import TABLE_K6_1
from app.domain.worklist import SUPPORTED_MATCHING_KEYS
from dicom_scp.conformance import render
from dicom_scp.server import SOP_CLASSES, TRANSFER_SYNTAXES
from dicom_scp.status import DimseStatus
from tests.support.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "docs" / "conformance.md"


@pytest.fixture(autouse=True)
def no_broker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendered from the defaults: BROKER_* variables of the shell must not leak in."""
    for name in list(os.environ):
        if name.startswith("BROKER_"):
            monkeypatch.delenv(name)


def default_settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def default_text() -> str:
    return render(default_settings())


def test_committed_statement_is_up_to_date(default_text: str) -> None:
    assert COMMITTED.exists(), "docs/conformance.md is missing: run `make conformance`"
    assert COMMITTED.read_text(encoding="utf-8") == default_text, (
        "docs/conformance.md differs from the statement the code generates: "
        "run `make conformance` (with no BROKER_* variables set) and commit the result"
    )


def test_render_is_deterministic(default_text: str) -> None:
    assert render(default_settings()) == default_text


def test_render_reflects_settings() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        ae_title="RIS_WL_01",
        dicom_port=4242,
        mwl_name_case_insensitive=False,
        allowed_calling_aes=["CT_SCANNER_1", "MR_ROOM_2"],
        mwl_max_results=250,
        max_associations=7,
    )
    text = render(settings)
    assert "`RIS_WL_01`" in text
    assert "TCP port 4242" in text
    assert "is case-sensitive (literal)" in text
    assert "case-insensitive (`" not in text
    assert "`CT_SCANNER_1`, `MR_ROOM_2`" in text
    assert "reason 3 (calling-AE-title-not-recognized)" in text
    assert "at most 250 items are returned per query" in text
    assert "sends 250 Pending responses and then 0xA700" in text
    assert "At most 7 associations" in text
    assert text != render(default_settings())


def test_render_states_default_policies(default_text: str) -> None:
    assert "is case-insensitive (`BROKER_MWL_NAME_CASE_INSENSITIVE` is true)" in default_text
    assert "Any Calling AE Title is accepted" in default_text
    assert "reason 7 (called-AE-title-not-recognized)" in default_text
    assert "result 2, source 3, reason 2" in default_text
    assert "at most 1000 items are returned per query" in default_text


def test_optional_settings_change_the_text() -> None:
    no_cap = render(Settings(_env_file=None, mwl_max_results=0))  # type: ignore[call-arg]
    assert "the number of matches is not limited" in no_cap
    open_called = render(Settings(_env_file=None, require_called_ae=False))  # type: ignore[call-arg]
    assert "The Called AE Title is not checked" in open_called


def test_tables_come_from_the_code(default_text: str) -> None:
    for keyword in SUPPORTED_MATCHING_KEYS:
        assert f"| {keyword} |" in default_text, keyword
    for uid, name in SOP_CLASSES:
        assert uid in default_text, name
    for uid in TRANSFER_SYNTAXES:
        assert uid in default_text, uid
    for status in DimseStatus:
        assert f"0x{int(status):04X}" in default_text, status.name


def test_implementation_identity_is_pynetdicoms(default_text: str) -> None:
    from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

    assert str(PYNETDICOM_IMPLEMENTATION_UID) in default_text
    assert PYNETDICOM_IMPLEMENTATION_VERSION in default_text


def test_every_table_k6_1_key_is_stated_with_matching_and_return_type(default_text: str) -> None:
    section = default_text.split("Every key of PS3.4 Table K.6-1", 1)[1]
    rows = [line for line in section.split("\n\n", 2)[1].splitlines() if line.startswith("| ")]
    for key in TABLE_K6_1:
        name = ">" * key.depth + key.name
        stated = [r for r in rows if r.startswith(f"| {name} |") or r.startswith(f"| {name} (")]
        assert len(stated) == 1, key.name
        cells = [c.strip() for c in stated[0].strip("|").split("|")]
        assert cells[2] == key.matching and cells[4] == key.return_type, cells
        assert cells[3] and cells[5], cells  # how it is matched; what an item without it gives


def test_render_states_the_front_door() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        allowed_calling_aes=["CT1:echo+find", "MR1"],
        max_associations_per_ae=0,
        dicom_max_connections=33,
        dicom_artim_timeout=2.5,
        max_associate_rq_bytes=20000,
    )
    text = render(settings)
    assert "`CT1` (echo, find), `MR1`" in text
    assert "result 3 (abstract-syntax-not-supported)" in text
    assert "At most 33 TCP connections" in text
    assert "within 2.5 s of connecting (ARTIM" in text
    assert "longer than 20000 bytes" in text
    assert "of them are of its Calling AE Title" not in text
    assert "of them are of its Calling AE Title" in render(default_settings())


def test_render_states_the_tls_port_and_profile() -> None:
    off = render(default_settings())
    assert "| DICOM TLS port (TCP) | off (`BROKER_DICOM_TLS_PORT`) |" in off
    assert "PS3.15 B.9), off in this configuration" in off
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        dicom_tls_port=2762,
        tls_cert="/etc/mwl/broker.crt",
        tls_key="/etc/mwl/broker.key",
        tls_ca="/etc/mwl/ca.pem",
        tls_client_cert="required",
    )
    text = render(settings)
    assert "| DICOM TLS port (TCP) | 2762 |" in text
    assert "TCP port 11112 and, over TLS (section 8), TCP port 2762" in text
    assert "Non-Downgrading TLS Secure Transport Connection Profile (PS3.15 B.9), on" in text
    assert "`ECDHE-RSA-AES128-GCM-SHA256`" in text and "TLS 1.1 and older" in text
    assert "(`BROKER_TLS_CLIENT_CERT` = required): required and checked" in text
