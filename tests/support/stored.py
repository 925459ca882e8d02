"""Stored studies for Query/Retrieve tests: pydicom-made Part 10 files and their index rows.

Until the Storage SCP's write path is merged, ``index_files`` writes the stored_study/series/
instance rows directly; it may later call the storage service instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from sqlmodel import select

from app.db import SessionFactory, session_scope
from app.domain.matching import person_name_key
from app.models import RemoteAe, StoredInstance, StoredSeries, StoredStudy

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_SOP_CLASS = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}


@dataclass(frozen=True)
class SeriesSpec:
    modality: str = "CT"
    instances: int = 2
    transfer_syntax: str = ExplicitVRLittleEndian
    description: str = ""


def _instance(
    study: Dataset, series_uid: str, number: int, spec: SeriesSpec, series_number: int
) -> Dataset:
    ds = Dataset()
    for elem in study:
        ds.add(elem)
    ds.SOPClassUID = _SOP_CLASS.get(spec.modality, CT_IMAGE_STORAGE)
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.Modality = spec.modality
    ds.SeriesNumber = series_number
    ds.SeriesDescription = spec.description
    ds.InstanceNumber = number
    ds.Rows, ds.Columns = 4, 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    ds.add_new(0x00091010, "LO", "private value")  # private data must survive unchanged
    ds.add_new(0x00090010, "LO", "TEST CREATOR")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = spec.transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def make_study(
    folder: Path,
    *,
    patient_id: str = "P1",
    patient_name: str = "DOE^JANE",
    birth_date: str = "19700101",
    sex: str = "F",
    study_uid: str | None = None,
    accession: str = "ACC1",
    study_date: str = "20260105",
    study_time: str = "101500",
    study_description: str = "CT HEAD",
    series: Sequence[SeriesSpec] = (SeriesSpec(),),
    charset: str | None = None,
) -> list[Path]:
    """Part 10 files of one study, one folder per instance file, under ``folder``."""
    study = Dataset()
    if charset:
        study.SpecificCharacterSet = charset
    study.PatientName = patient_name
    study.PatientID = patient_id
    study.PatientBirthDate = birth_date
    study.PatientSex = sex
    study.StudyInstanceUID = study_uid or generate_uid()
    study.StudyDate = study_date
    study.StudyTime = study_time
    study.AccessionNumber = accession
    study.StudyID = "1"
    study.ReferringPhysicianName = "REF^DOC"
    study.StudyDescription = study_description
    paths: list[Path] = []
    for s_index, spec in enumerate(series, start=1):
        series_uid = generate_uid()
        for number in range(1, spec.instances + 1):
            ds = _instance(study, series_uid, number, spec, s_index)
            path = folder / study.StudyInstanceUID / series_uid / f"{ds.SOPInstanceUID}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def _study_row(ds: Dataset) -> StoredStudy:
    name = str(ds.get("PatientName", ""))
    return StoredStudy(
        study_instance_uid=ds.StudyInstanceUID,
        patient_id=ds.get("PatientID", ""),
        patient_name=name,
        patient_name_key=person_name_key(name),
        patient_birth_date=ds.get("PatientBirthDate", ""),
        patient_sex=ds.get("PatientSex", ""),
        study_date=ds.get("StudyDate", ""),
        study_time=ds.get("StudyTime", ""),
        accession_number=ds.get("AccessionNumber", ""),
        study_id=ds.get("StudyID", ""),
        referring_physician_name=str(ds.get("ReferringPhysicianName", "")),
        study_description=ds.get("StudyDescription", ""),
    )


def index_files(session_factory: SessionFactory, storage_dir: Path, paths: Iterable[Path]) -> None:
    """Index rows for files that lie under ``storage_dir`` (paths kept relative to it)."""
    with session_scope(session_factory) as session:
        for path in paths:
            ds = dcmread(path, stop_before_pixels=True)
            study = session.exec(
                select(StoredStudy).where(StoredStudy.study_instance_uid == ds.StudyInstanceUID)
            ).first()
            if study is None:
                study = _study_row(ds)
                session.add(study)
                session.flush()
            series = session.exec(
                select(StoredSeries).where(StoredSeries.series_instance_uid == ds.SeriesInstanceUID)
            ).first()
            if series is None:
                assert study.id is not None
                series = StoredSeries(
                    study_pk=study.id,
                    series_instance_uid=ds.SeriesInstanceUID,
                    modality=ds.get("Modality", ""),
                    series_number=str(ds.get("SeriesNumber", "")),
                    series_description=ds.get("SeriesDescription", ""),
                )
                session.add(series)
                session.flush()
            assert series.id is not None
            session.add(
                StoredInstance(
                    series_pk=series.id,
                    sop_instance_uid=ds.SOPInstanceUID,
                    sop_class_uid=ds.SOPClassUID,
                    transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
                    instance_number=str(ds.get("InstanceNumber", "")),
                    path=str(path.relative_to(storage_dir)),
                    size_bytes=path.stat().st_size,
                )
            )


def add_remote_ae(
    session_factory: SessionFactory, ae_title: str, port: int, services: Sequence[str] = ("store",)
) -> None:
    with session_scope(session_factory) as session:
        session.add(
            RemoteAe(ae_title=ae_title, host="127.0.0.1", port=port, services=list(services))
        )


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part 10 file: the bytes after its File Meta Information."""
    from pynetdicom.dsutils import split_dataset

    _meta, offset = split_dataset(path)
    return path.read_bytes()[offset:]


__all__ = [
    "ImplicitVRLittleEndian",
    "SeriesSpec",
    "add_remote_ae",
    "dataset_bytes",
    "index_files",
    "make_study",
]
