"""``mwl-broker serve`` as users run it, with TLS ports on: DCMTK ``echoscu +tls`` and
``findscu +tls`` on the DICOM TLS port, ``openssl s_client`` sending an ORM^O01 to the MLLP TLS
port and reading the AA, client certificates required; the plain ports keep working."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hl7_ingest.mllp import END_BLOCK, frame
from tests.support.broker import BROKER_AE, BrokerProcess, running_broker
from tests.support.certs import Certificates
from tests.support.items import mwl_item
from tests.support.net import free_port
from tests.support.tools import echo, findscu, openssl_exchange

pytestmark = pytest.mark.interop

ORDER = (Path(__file__).resolve().parent.parent / "data" / "hl7" / "orm_o01_nw.hl7").read_bytes()


@pytest.fixture(scope="module")
def tls_ports() -> dict[str, int]:
    return {"dicom": free_port(), "hl7": free_port()}


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates, tls_ports: dict[str, int]
) -> Iterator[BrokerProcess]:
    environment = {
        "BROKER_DICOM_TLS_PORT": str(tls_ports["dicom"]),
        "BROKER_HL7_TLS_PORT": str(tls_ports["hl7"]),
        "BROKER_TLS_CERT": str(certs.server.cert),
        "BROKER_TLS_KEY": str(certs.server.key),
        "BROKER_TLS_CA": str(certs.ca),
        "BROKER_TLS_CLIENT_CERT": "required",
    }
    yield from running_broker(tmp_path_factory.mktemp("tls-broker"), environment)


def dcmtk_tls(certs: Certificates) -> list[str]:
    return ["+tls", str(certs.client.key), str(certs.client.cert), "+cf", str(certs.ca)]


def test_health_reports_the_tls_ports(broker: BrokerProcess, tls_ports: dict[str, int]) -> None:
    listeners = httpx.get(f"{broker.base_url}/api/health", timeout=5).json()["listeners"]
    assert listeners["dicom"]["tls_port"] == tls_ports["dicom"]
    assert listeners["hl7"]["tls_port"] == tls_ports["hl7"]


def test_echoscu_and_findscu_over_tls(
    broker: BrokerProcess, certs: Certificates, tls_ports: dict[str, int], tmp_path: Path
) -> None:
    item = mwl_item(patient_id="TLS-P1", accession="TLS-A1")
    posted = httpx.post(
        f"{broker.base_url}/api/mwlitems", json=item, headers=broker.headers, timeout=10
    )
    assert posted.status_code in (200, 201), posted.text
    done = echo(tls_ports["dicom"], BROKER_AE, tls=dcmtk_tls(certs))
    assert done.returncode == 0, done.stdout + done.stderr
    found = findscu(
        tls_ports["dicom"],
        BROKER_AE,
        tmp_path / "out",
        keys=["PatientID=TLS-P1", "AccessionNumber"],
        tls=dcmtk_tls(certs),
    )
    assert found.returncode == 0, found.output
    assert [str(r.AccessionNumber) for r in found.responses] == ["TLS-A1"]
    without = echo(tls_ports["dicom"], BROKER_AE, tls=["+tla", "+cf", str(certs.ca)])
    assert without.returncode != 0  # BROKER_TLS_CLIENT_CERT=required
    assert echo(broker.dicom_port, BROKER_AE).returncode == 0  # the plain port as before


def test_openssl_s_client_sends_an_order_over_mllp_tls(
    broker: BrokerProcess, certs: Certificates, tls_ports: dict[str, int]
) -> None:
    for modality in ("CT", "CR"):  # the order's procedures
        station = {"modality": modality, "ae_title": f"{modality}01"}
        made = httpx.post(
            f"{broker.base_url}/api/stations", json=station, headers=broker.headers, timeout=10
        )
        assert made.status_code == 201, made.text
    args = ["-connect", f"127.0.0.1:{tls_ports['hl7']}", "-CAfile", str(certs.ca)]
    args += ["-verify_return_error", "-verify_hostname", "localhost"]
    args += ["-cert", str(certs.client.cert), "-key", str(certs.client.key)]
    answer = openssl_exchange(args, frame(ORDER), until=END_BLOCK)
    assert b"MSA|AA|MSG00001" in answer, answer
