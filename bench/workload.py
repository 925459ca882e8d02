"""The benchmark's worklist: N scheduled steps from a fixed seed, as ``.wl`` files.

The same files are imported into the broker (``mwl-broker import-wl``, which is timed) and
served by DCMTK ``wlmscpfs``, so both answer from identical items. Files are kept in a cache
folder per (size, seed): generating 100,000 of them takes a while and they never change.

Shape: ``STATIONS`` stations (``ST0``...), each with one modality, over ``DAYS`` days from
``FIRST_DAY``, 08:00-17:50; about three steps per patient.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian

STATIONS = 20
DAYS = 28
FIRST_DAY = 20261201
MODALITIES = ("CT", "MR", "US", "CR", "DX")
UID_ROOT = "1.2.826.0.1.3680043.10.9999"


def station_modality(station: int) -> str:
    return MODALITIES[station % len(MODALITIES)]


def day(offset: int) -> str:
    return str(FIRST_DAY + offset)


@dataclass(frozen=True)
class Step:
    index: int
    patient: int
    station: int
    day: int
    time: str

    @property
    def study_uid(self) -> str:
        return f"{UID_ROOT}.{self.index + 1}"

    @property
    def sps_id(self) -> str:
        return f"S{self.index}"

    @property
    def station_ae(self) -> str:
        return f"ST{self.station}"

    @property
    def modality(self) -> str:
        return station_modality(self.station)


def steps(count: int, seed: int) -> list[Step]:
    rng = random.Random(seed)
    patients = max(1, count // 3)
    return [
        Step(
            index=index,
            patient=rng.randrange(patients),
            station=rng.randrange(STATIONS),
            day=rng.randrange(DAYS),
            time=f"{rng.randrange(8, 18):02d}{rng.randrange(0, 60, 10):02d}00",
        )
        for index in range(count)
    ]


def _el(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


def item_json(step: Step) -> dict[str, Any]:
    """The step as a DICOM JSON worklist item (PS3.4 K.6.1.2.1)."""
    return {
        "00080005": _el("CS", "ISO_IR 100"),
        "00100010": _el("PN", {"Alphabetic": f"PATIENT{step.patient}^BENCH"}),
        "00100020": _el("LO", f"P{step.patient}"),
        "00100030": _el("DA", "19700101"),
        "00100040": _el("CS", "O"),
        "00080050": _el("SH", f"ACC{step.index}"),
        "00080090": _el("PN", {"Alphabetic": "REFERRING^DOC"}),
        "0020000D": _el("UI", step.study_uid),
        "00401001": _el("SH", f"RP{step.index}"),
        "00321060": _el("LO", f"{step.modality} EXAM"),
        "00400100": {
            "vr": "SQ",
            "Value": [
                {
                    "00400001": _el("AE", step.station_ae),
                    "00400002": _el("DA", day(step.day)),
                    "00400003": _el("TM", step.time),
                    "00080060": _el("CS", step.modality),
                    "00400009": _el("SH", step.sps_id),
                    "00400006": _el("PN", {"Alphabetic": "PERFORMING^DOC"}),
                    "00400007": _el("LO", f"{step.modality} EXAM"),
                    "00400010": _el("SH", f"STATION{step.station}"),
                }
            ],
        },
    }


def write_wl(step: Step, path: Path) -> None:
    ds = Dataset.from_json(item_json(step))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)


def worklist_folder(cache: Path, count: int, seed: int) -> Path:
    """``cache/wl-<count>-<seed>/BENCH/*.wl`` (+ ``lockfile``, as wlmscpfs wants it)."""
    root = cache / f"wl-{count}-{seed}"
    folder = root / "BENCH"
    done = root / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for step in steps(count, seed):
        write_wl(step, folder / f"{step.index:06d}.wl")
    (folder / "lockfile").touch()
    done.touch()
    return folder
