"""The strict walk over received data sets (dicom_scp.wire): every transfer syntax the broker
accepts, and each way an encoding can run past its end."""

from __future__ import annotations

import struct
import zlib

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode

from dicom_scp.wire import MAX_INFLATED, MalformedDataSet, check_encoded

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
SYNTAXES = {
    IMPLICIT: (True, True, False),
    EXPLICIT: (False, True, False),
    BIG: (False, False, False),
    DEFLATED: (False, True, True),
}


def identifier() -> Dataset:
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.PatientID = ""
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "CT01"
    ds.ScheduledProcedureStepSequence = [step, Dataset()]
    return ds


def encoded(ts: str, ds: Dataset | None = None) -> bytes:
    raw = encode(ds or identifier(), *SYNTAXES[ts])
    assert raw is not None
    return raw


@pytest.mark.parametrize("ts", sorted(SYNTAXES))
def test_whole_data_sets_pass(ts: str) -> None:
    check_encoded(encoded(ts), ts)
    check_encoded(b"", ts) if ts != DEFLATED else None


def test_undefined_length_sequences_and_items_pass() -> None:
    item = struct.pack("<HHL", 0x0008, 0x0060, 2) + b"CT"
    sq = (
        struct.pack("<HHL", 0x0040, 0x0100, 0xFFFFFFFF)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + item
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )
    check_encoded(sq, IMPLICIT)
    with pytest.raises(MalformedDataSet, match="without its delimiter"):
        check_encoded(sq[:-8], IMPLICIT)
    with pytest.raises(MalformedDataSet, match="without its delimiter"):
        check_encoded(sq[:-16], IMPLICIT)


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_every_cut_inside_an_element_is_found(ts: str) -> None:
    raw = encoded(ts)
    boundaries = _element_starts(raw, ts)
    for cut in range(1, len(raw)):
        if cut in boundaries:
            continue
        with pytest.raises(MalformedDataSet):
            check_encoded(raw[:cut], ts)


def _element_starts(raw: bytes, ts: str) -> set[int]:
    """Top-level element boundaries: a cut there leaves a whole, shorter data set."""
    starts = {0, len(raw)}
    pos = 0
    endian = ">" if ts == BIG else "<"
    while pos < len(raw):
        if ts == IMPLICIT:
            (length,) = struct.unpack_from(endian + "L", raw, pos + 4)
            pos += 8 + length
        else:
            vr = raw[pos + 4 : pos + 6]
            if vr in (b"SQ", b"OB", b"UN", b"UT", b"OW"):
                (length,) = struct.unpack_from(endian + "L", raw, pos + 8)
                pos += 12 + length
            else:
                (length,) = struct.unpack_from(endian + "H", raw, pos + 6)
                pos += 8 + length
        starts.add(pos)
    return starts


def test_an_overrunning_length_names_its_element() -> None:
    raw = encoded(IMPLICIT)
    bad = raw[:4] + struct.pack("<L", 400) + raw[8:]
    with pytest.raises(MalformedDataSet) as info:
        check_encoded(bad, IMPLICIT)
    assert info.value.tag == 0x00100010
    assert "(0010,0010)" in str(info.value)


def test_an_invalid_vr_is_refused() -> None:
    raw = bytearray(encoded(EXPLICIT))
    raw[4:6] = b"\x00\x01"
    with pytest.raises(MalformedDataSet, match="invalid VR"):
        check_encoded(bytes(raw), EXPLICIT)


def test_stray_delimiters_are_refused() -> None:
    with pytest.raises(MalformedDataSet):
        check_encoded(struct.pack("<HHL", 0xFFFE, 0xE00D, 0), IMPLICIT)
    with pytest.raises(MalformedDataSet):
        check_encoded(struct.pack("<HHL", 0xFFFE, 0xE000, 0), IMPLICIT)


def test_deep_nesting_is_refused() -> None:
    ds = Dataset()
    inner = ds
    for _ in range(40):
        child = Dataset()
        inner.ScheduledProcedureStepSequence = [child]
        inner = child
    with pytest.raises(MalformedDataSet, match="deeper"):
        check_encoded(encoded(IMPLICIT, ds), IMPLICIT)


def test_a_deflate_bomb_is_refused_before_it_unfolds() -> None:
    element = struct.pack("<HHHH", 0x0010, 0x4000, 0x5455, 0)  # (0010,4000) UT, long form
    body = element[:6] + b"\0\0" + struct.pack("<L", MAX_INFLATED * 2) + bytes(MAX_INFLATED * 2)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = compressor.compress(body) + compressor.flush()
    assert len(bomb) < 64 * 1024
    with pytest.raises(MalformedDataSet, match="unfolds"):
        check_encoded(bomb, DEFLATED)
    with pytest.raises(MalformedDataSet, match="inflated"):
        check_encoded(b"not deflate at all", DEFLATED)
