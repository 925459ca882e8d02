"""``dicom_scp.wlparse``: where the fast reader answers, it answers as pydicom does."""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from bench.workload import Step, steps, write_wl
from dicom_scp.wlparse import dataset_json

EXAMPLE_DUMPS = sorted(Path("/usr/share/doc/dcmtk/examples/wlistdb/OFFIS").glob("*.dump"))
STEP = Step(index=1, patient=1430, station=9, day=2, time="102000")
IMPLICIT, EXPLICIT = b"1.2.840.10008.1.2\0", b"1.2.840.10008.1.2.1\0"


def _pydicom_json(data: bytes) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = dcmread(io.BytesIO(data), force=True).to_json_dict()
    plain: dict[str, Any] = json.loads(json.dumps(raw))
    return {k: v for k, v in plain.items() if not k.startswith("0002")}


def _same_as_pydicom(data: bytes) -> bool:
    """``True`` when the fast reader answered (and then it must equal pydicom)."""
    fast = dataset_json(data)
    if fast is None:
        return False
    reference = _pydicom_json(data)
    assert fast == reference
    assert list(fast) == list(reference)
    return True


def test_the_benchmark_files_are_read_as_pydicom_reads_them(tmp_path: Path) -> None:
    for step in steps(50, seed=1):
        write_wl(step, tmp_path / "item.wl")
        assert _same_as_pydicom((tmp_path / "item.wl").read_bytes())


@pytest.mark.parametrize("options", [[], ["+te"], ["+u"], ["+te", "+u"]])
def test_dcmtk_files_are_read_as_pydicom_reads_them(tmp_path: Path, options: list[str]) -> None:
    dump2dcm = shutil.which("dump2dcm")
    if dump2dcm is None or not EXAMPLE_DUMPS:
        pytest.skip("DCMTK (dump2dcm and its example worklist) is not installed")
    answered = 0
    for dump in EXAMPLE_DUMPS:
        out = tmp_path / f"{dump.stem}.wl"
        subprocess.run([dump2dcm, "-q", *options, str(dump), str(out)], check=True)
        answered += _same_as_pydicom(out.read_bytes())
    assert answered == len(EXAMPLE_DUMPS)


# ---------------------------------------------------------------------------------------------
# Generated files: odd padding, empty and multiple values, character sets, nested sequences.

_TAGS = [
    (0x00080050, "SH"), (0x00080090, "PN"), (0x00100010, "PN"), (0x00100020, "LO"),
    (0x00100030, "DA"), (0x00100040, "CS"), (0x00104000, "LT"), (0x0020000D, "UI"),
    (0x00321060, "LO"), (0x00400001, "AE"), (0x00400003, "TM"), (0x00101010, "AS"),
    (0x00101030, "DS"), (0x00400100, "SQ"), (0x00081110, "SQ"), (0x00400006, "PN"),
]  # fmt: skip
_PIECES = ["A", "Z9", "ABC", "1.2", " ", "  ", "\0", "\\", "^", "=", "é", "山", "\t", "\x1b$B"]
_CHARSETS = [None, "", "ISO_IR 100", "ISO_IR 192", "ISO_IR 144"]


def _element(tag: int, vr: str, value: bytes | None, implicit: bool) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    length = 0xFFFFFFFF if value is None else len(value)
    if implicit:
        header = struct.pack("<HHI", group, elem, length)
    elif vr in ("SQ", "UT"):
        header = struct.pack("<HH2s2xI", group, elem, vr.encode(), length)
    else:
        header = struct.pack("<HH2sH", group, elem, vr.encode(), length)
    return header + (value or b"")


def _dataset(rng: random.Random, charset: str | None, depth: int, implicit: bool) -> bytes:
    elements: list[tuple[int, bytes]] = []
    if charset is not None and depth == 0:
        text = charset.encode() + b" " * (len(charset) % 2)
        elements.append((0x00080005, _element(0x00080005, "CS", text, implicit)))
    for tag, vr in rng.sample(_TAGS, rng.randrange(1, 7)):
        if vr == "SQ":
            if depth < 2:
                elements.append((tag, _sequence(rng, tag, charset, depth, implicit)))
            continue
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 6)))
        encoding = "utf_8" if charset == "ISO_IR 192" else rng.choice(["latin_1", "utf_8"])
        raw = text.encode(encoding, errors="replace")
        raw += rng.choice([b" ", b"\0"]) * (len(raw) % 2)
        elements.append((tag, _element(tag, vr, raw, implicit)))
    return b"".join(encoded for _, encoded in sorted(elements))


def _sequence(
    rng: random.Random, tag: int, charset: str | None, depth: int, implicit: bool
) -> bytes:
    items = b""
    for _ in range(rng.randrange(0, 3)):
        body = _dataset(rng, charset, depth + 1, implicit)
        if rng.random() < 0.5:  # undefined length, closed by an item delimiter
            items += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + body
            items += struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        else:
            items += struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
    if rng.random() < 0.5:
        end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return _element(tag, "SQ", None, implicit) + items + end
    return _element(tag, "SQ", items, implicit)


def _file(rng: random.Random) -> bytes:
    implicit = rng.random() < 0.5
    syntax = IMPLICIT if implicit else EXPLICIT
    meta = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(syntax)) + syntax
    preamble = b"\0" * 128 + b"DICM" if rng.random() < 0.5 else b""
    return preamble + meta + _dataset(rng, rng.choice(_CHARSETS), 0, implicit)


def test_generated_files_are_read_as_pydicom_reads_them_or_left_to_it() -> None:
    rng = random.Random(20261201)
    answered = sum(_same_as_pydicom(_file(rng)) for _ in range(1500))
    assert answered > 200  # the plain cases do take the fast path


@pytest.mark.parametrize(
    "change",
    [
        (b"1.2.840.10008.1.2\0", b"1.2.840.10008.1.2.2"),  # big endian
        (b"ST9 ", b"ST\xe9 "),  # not ASCII in an AE title
        (b"ISO_IR 100", b"ISO_IR 144"),  # a character set read by pydicom only
        (b"PATIENT1430^BENCH ", b"PATIENT1430=BENCH "),  # a PN ideographic group
        (b"\x10\x00\x40\x00\x02\x00\x00\x00O ", b"\x11\x00\x40\x00\x02\x00\x00\x00O "),  # private
    ],
)
def test_other_shapes_are_left_to_pydicom(tmp_path: Path, change: tuple[bytes, bytes]) -> None:
    write_wl(STEP, tmp_path / "item.wl")
    data = (tmp_path / "item.wl").read_bytes()
    assert change[0] in data and dataset_json(data) is not None
    assert dataset_json(data.replace(*change)) is None


def test_no_file_meta_or_truncated_bytes_are_left_to_pydicom(tmp_path: Path) -> None:
    write_wl(STEP, tmp_path / "item.wl")
    data = (tmp_path / "item.wl").read_bytes()
    meta_end = 8 + len(IMPLICIT)
    assert dataset_json(data[meta_end:]) is None
    assert dataset_json(data[:-3]) is None
    assert dataset_json(b"not DICOM") is None
