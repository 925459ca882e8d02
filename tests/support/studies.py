"""Generated studies for the Storage SCP tests: small pydicom-made Part 10 files.

Pixel data is fake but well-formed: native frames for the uncompressed transfer syntaxes and
encapsulated fragments (``pydicom.encaps.encapsulate``) for the compressed ones, so no codec is
needed to send them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
# Start of a JPEG stream (SOI + APP0) and its end: enough to look like a JPEG frame.
_FAKE_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 12 + b"\xff\xd9"


@dataclass(frozen=True)
class SentInstance:
    path: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str


def _dataset(
    *, study_uid: str, series_uid: str, sop_uid: str, sop_class: str, number: int, **patient: str
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = patient.get("patient_name", "TEST^STORAGE")
    ds.PatientID = patient.get("patient_id", "PID-STORE")
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = patient.get("accession", "")
    ds.StudyDate = "20260101"
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "storage test"
    ds.Modality = "CT" if sop_class == CT_IMAGE else "OT"
    ds.SeriesNumber = str(number // 100)
    ds.InstanceNumber = str(number % 100)
    ds.Rows = 4
    ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def write_instance(
    folder: Path,
    *,
    study_uid: str,
    series_uid: str,
    transfer_syntax: str = ExplicitVRLittleEndian,
    sop_class: str = CT_IMAGE,
    number: int = 101,
    sop_uid: str | None = None,
    pixel_bytes: int = 16,
    **patient: str,
) -> SentInstance:
    """One Part 10 file in ``folder``; compressed syntaxes get encapsulated fake frames."""
    sop_uid = sop_uid or generate_uid()
    ds = _dataset(
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        sop_class=sop_class,
        number=number,
        **patient,
    )
    if transfer_syntax in (JPEGBaseline8Bit, RLELossless):
        frame = _FAKE_JPEG if transfer_syntax == JPEGBaseline8Bit else b"\x00" * 64
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds.NumberOfFrames = 1
        ds["PixelData"].is_undefined_length = True
    else:
        if pixel_bytes > 16:  # 8-bit, one sample: one byte a pixel
            ds.Rows, ds.Columns = pixel_bytes // 1000, 1000
        ds.PixelData = bytes(ds.Rows * ds.Columns)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sop_uid}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return SentInstance(path, study_uid, series_uid, sop_uid, sop_class, transfer_syntax)


def write_study(
    folder: Path,
    *,
    study_uid: str | None = None,
    series: tuple[tuple[str, int], ...] = (
        (ExplicitVRLittleEndian, 2),
        (ImplicitVRLittleEndian, 2),
        (JPEGBaseline8Bit, 1),
        (RLELossless, 1),
    ),
    **patient: str,
) -> list[SentInstance]:
    """A study of one series per (transfer syntax, instance count)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    sent = []
    for index, (syntax, count) in enumerate(series, start=1):
        series_uid = generate_uid()
        sop_class = SECONDARY_CAPTURE if syntax == JPEGBaseline8Bit else CT_IMAGE
        for number in range(1, count + 1):
            sent.append(
                write_instance(
                    folder,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    transfer_syntax=syntax,
                    sop_class=sop_class,
                    number=index * 100 + number,
                    **patient,
                )
            )
    return sent


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its file meta information (the data set as sent)."""
    raw = path.read_bytes()
    meta = dcmread(path, stop_before_pixels=True).file_meta
    # Group length (0002,0000) counts the bytes after itself: 128 preamble + 4 DICM + 12.
    return raw[132 + 12 + int(meta.FileMetaInformationGroupLength) :]
