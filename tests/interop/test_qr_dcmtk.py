"""Query/Retrieve with DCMTK: findscu -S/-P at every level, movescu to a DCMTK storescp and
getscu back, with the received data sets byte-identical to the stored files (PS3.4 Annex C)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.uid import ImplicitVRLittleEndian

from tests.support.net import free_port, wait_until
from tests.support.scp import Scp, start_scp
from tests.support.stored import (
    SeriesSpec,
    add_remote_ae,
    dataset_bytes,
    index_files,
    make_study,
)
from tests.support.tools import dimse_statuses, findscu, require_tool, run_tool

pytestmark = pytest.mark.interop

AE = "MWLBROKER"
STUDY_UID = "1.2.826.0.1.3680043.10.543.77.1"
OTHER_STUDY_UID = "1.2.826.0.1.3680043.10.543.77.2"


@dataclass
class Archive:
    scp: Scp
    storage: Path
    files: list[Path]  # of STUDY_UID


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Iterator[Archive]:
    scp = start_scp(database_url, tmp_path, ae_title=AE)
    storage = scp.settings.storage.dir
    files = make_study(
        storage,
        patient_id="QR-1",
        patient_name="Doe^Jane",
        study_uid=STUDY_UID,
        accession="QRACC1",
        series=(SeriesSpec("CT", 2), SeriesSpec("MR", 1, ImplicitVRLittleEndian)),
    )
    other = make_study(
        storage, patient_id="QR-2", patient_name="Roe^Rick", study_uid=OTHER_STUDY_UID
    )
    index_files(scp.factory, storage, [*files, *other])
    try:
        yield Archive(scp, storage, files)
    finally:
        scp.stop()


def _find(archive: Archive, tmp_path: Path, model: str, keys: list[str], name: str) -> list:
    result = findscu(archive.scp.port, AE, tmp_path / name, keys=keys, model=model, debug=True)
    assert result.returncode == 0, result.output
    return result.responses


def test_findscu_study_root_at_each_level(archive: Archive, tmp_path: Path) -> None:
    studies = _find(
        archive, tmp_path, "-S",
        ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName=doe*",
         "ModalitiesInStudy", "NumberOfStudyRelatedInstances"],
        "study",
    )  # fmt: skip
    assert [str(r.StudyInstanceUID) for r in studies] == [STUDY_UID]
    assert list(studies[0].ModalitiesInStudy) == ["CT", "MR"]
    assert int(studies[0].NumberOfStudyRelatedInstances) == 3
    assert studies[0].QueryRetrieveLevel == "STUDY"
    assert studies[0].RetrieveAETitle == AE
    series = _find(
        archive, tmp_path, "-S",
        ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={STUDY_UID}", "SeriesInstanceUID",
         "Modality", "NumberOfSeriesRelatedInstances"],
        "series",
    )  # fmt: skip
    assert [(r.Modality, int(r.NumberOfSeriesRelatedInstances)) for r in series] == [
        ("CT", 2),
        ("MR", 1),
    ]
    images = _find(
        archive, tmp_path, "-S",
        ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={STUDY_UID}",
         f"SeriesInstanceUID={series[0].SeriesInstanceUID}", "SOPInstanceUID",
         "InstanceNumber"],
        "image",
    )  # fmt: skip
    assert [int(r.InstanceNumber) for r in images] == [1, 2]
    assert "PatientName" not in images[0]  # only requested keys come back


def test_findscu_patient_root_at_each_level(archive: Archive, tmp_path: Path) -> None:
    patients = _find(
        archive, tmp_path, "-P",
        ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
         "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedInstances"],
        "patient",
    )  # fmt: skip
    assert [(r.PatientID, int(r.NumberOfPatientRelatedInstances)) for r in patients] == [
        ("QR-1", 3),
        ("QR-2", 2),
    ]
    studies = _find(
        archive, tmp_path, "-P",
        ["QueryRetrieveLevel=STUDY", "PatientID=QR-2", "StudyInstanceUID", "StudyDate"],
        "study",
    )  # fmt: skip
    assert [str(r.StudyInstanceUID) for r in studies] == [OTHER_STUDY_UID]
    series = _find(
        archive, tmp_path, "-P",
        ["QueryRetrieveLevel=SERIES", "PatientID=QR-1", f"StudyInstanceUID={STUDY_UID}",
         "SeriesInstanceUID", "Modality=MR"],
        "series",
    )  # fmt: skip
    assert [r.Modality for r in series] == ["MR"]
    images = _find(
        archive, tmp_path, "-P",
        ["QueryRetrieveLevel=IMAGE", "PatientID=QR-1", f"StudyInstanceUID={STUDY_UID}",
         f"SeriesInstanceUID={series[0].SeriesInstanceUID}", "SOPInstanceUID", "SOPClassUID"],
        "image",
    )  # fmt: skip
    assert [r.SOPClassUID for r in images] == ["1.2.840.10008.5.1.4.1.1.4"]


def test_findscu_without_a_level_is_refused(archive: Archive, tmp_path: Path) -> None:
    result = findscu(
        archive.scp.port, AE, tmp_path / "bad", keys=["StudyInstanceUID"], model="-S",
        debug=True,
    )  # fmt: skip
    assert dimse_statuses(result.output)[-1] == 0xA900


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen(
        [require_tool("storescp"), "-aet", "STORESCP", "+B", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _listening(port), what="storescp listening")
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _assert_identical(stored: list[Path], received: list[Path]) -> None:
    expected = sorted(dataset_bytes(p) for p in stored)
    assert sorted(dataset_bytes(p) for p in received) == expected


def test_movescu_sends_the_study_byte_identical(
    archive: Archive, storescp: tuple[int, Path], tmp_path: Path
) -> None:
    port, out = storescp
    add_remote_ae(archive.scp.factory, "STORESCP", port)
    done = run_tool(
        [require_tool("movescu"), "-S", "-d", "-aec", AE, "-aem", "STORESCP",
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY_UID}",
         "127.0.0.1", str(archive.scp.port)]
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    received = sorted(out.glob("*"))
    assert len(received) == 3
    _assert_identical(archive.files, received)


def test_movescu_to_an_unknown_destination_gets_a801(archive: Archive) -> None:
    done = run_tool(
        [require_tool("movescu"), "-P", "-d", "-aec", AE, "-aem", "NOWHERE",
         "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=QR-1",
         "127.0.0.1", str(archive.scp.port)]
    )  # fmt: skip
    assert "0xa801" in (done.stdout + done.stderr).lower()


def test_getscu_retrieves_the_study_byte_identical(archive: Archive, tmp_path: Path) -> None:
    """getscu offers one context per storage class and pynetdicom accepts Explicit VR Little
    Endian in it: the CT files (stored so) arrive unchanged, the MR file stored in Implicit VR
    is not transcoded: its sub-operation fails and the final status is 0xB000 (PS3.4
    C.4.3.3.1). getscu 3.6.7 does not read that response's identifier (the Failed SOP Instance
    UID List), so it reports a P-DATA PDU on release; the list itself is checked with
    pynetdicom in the adapter tests."""
    out = tmp_path / "got"
    out.mkdir()
    done = run_tool(
        [require_tool("getscu"), "-S", "-d", "+B", "-od", str(out), "-aec", AE,
         "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY_UID}",
         "127.0.0.1", str(archive.scp.port)]
    )  # fmt: skip
    output = (done.stdout + done.stderr).lower()
    _assert_identical(archive.files[:2], sorted(out.glob("*")))
    assert "0xb000" in output
    assert re.search(r"number of completed suboperations\s*:\s*2", output)
    assert re.search(r"number of failed suboperations\s*:\s*1", output)
