"""A bounded DICOM Upper Layer fuzz corpus against the in-process listener.

Random bytes, truncated, oversized and huge-length PDUs, bit flips of a valid A-ASSOCIATE-RQ and
of a P-DATA carrying a C-FIND, stray P-DATA, malformed identifiers and MPPS data sets. After each
case the listener must still answer a C-ECHO. Hypothesis runs derandomized (the same corpus on
every run) with a small, fixed number of examples per kind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from app.migrations import upgrade
from tests.support.dicom_wire import (
    A_ASSOCIATE_AC,
    RawPeer,
    associate_rq,
    c_find_rq,
    implicit,
    n_create_rq,
    n_set_rq,
    p_data,
    pdu,
)
from tests.support.scp import Scp, start_scp

CASES = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# pynetdicom's DUL thread dies on a command set without its required elements (the association
# then ends without an A-ABORT), and pydicom warns about unknown tags: neither is a failure here.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
LISTEN = 0.15  # seconds a case waits for the broker's answer before it hangs up


@pytest.fixture(scope="module")
def scp() -> Iterator[Scp]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        url = f"sqlite:///{path / 'fuzz.db'}"
        upgrade(url)
        server = start_scp(
            url, path, dicom={"artim_timeout": 2.0, "network_timeout": 2.0, "max_connections": 40}
        )
        server.add()
        yield server
        server.stop()


def echo_ok(port: int) -> bool:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and int(status.Status) == 0
    finally:
        assoc.release()


def hit(scp: Scp, data: bytes, *, associated: bool = False) -> None:
    peer = RawPeer(scp.port)
    try:
        if associated:
            assert peer.associate().pdu_type == A_ASSOCIATE_AC
        peer.send(data)
        peer.closed_within(LISTEN)
    finally:
        peer.close()
    assert echo_ok(scp.port), f"the listener no longer answers C-ECHO: {scp.server.stats()}"


def flip(data: bytes, positions: list[int]) -> bytes:
    out = bytearray(data)
    for bit in positions:
        out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def _identifier() -> bytes:
    ds = Dataset()
    ds.PatientName = "DOE*"
    ds.PatientID = ""
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledProcedureStepStartDate = "20261201-20261231"
    ds.ScheduledProcedureStepSequence = [step]
    return implicit(ds)


def _mpps() -> bytes:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS1"
    ds.ScheduledStepAttributesSequence = [Dataset()]
    return implicit(ds)


RQ = associate_rq()
FIND = p_data(3, c_find_rq(), command=True) + p_data(3, _identifier(), command=False)
BITS = st.lists(st.integers(min_value=0, max_value=8 * 4096), min_size=1, max_size=8)


@CASES
@given(st.binary(min_size=1, max_size=4096))
def test_random_bytes(scp: Scp, data: bytes) -> None:
    hit(scp, data)


@CASES
@given(st.integers(min_value=1, max_value=len(RQ) - 1))
def test_truncated_associate_rq(scp: Scp, cut: int) -> None:
    hit(scp, RQ[:cut])


@CASES
@given(BITS)
def test_bit_flipped_associate_rq(scp: Scp, bits: list[int]) -> None:
    hit(scp, flip(RQ, bits))


@CASES
@given(
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
    st.binary(max_size=512),
    st.booleans(),
)
def test_any_header_and_declared_length(
    scp: Scp, pdu_type: int, declared: int, body: bytes, associated: bool
) -> None:
    hit(scp, pdu(pdu_type, body, declared=declared), associated=associated)


@CASES
@given(BITS, st.booleans())
def test_bit_flipped_c_find(scp: Scp, bits: list[int], associated: bool) -> None:
    hit(scp, flip(FIND, bits), associated=associated)


@CASES
@given(st.integers(min_value=1, max_value=len(FIND) - 1))
def test_truncated_c_find(scp: Scp, cut: int) -> None:
    hit(scp, FIND[:cut], associated=True)


@CASES
@given(st.one_of(st.binary(max_size=600), BITS.map(lambda b: flip(_identifier(), b))))
def test_malformed_identifiers(scp: Scp, identifier: bytes) -> None:
    hit(
        scp,
        p_data(3, c_find_rq(), command=True) + p_data(3, identifier, command=False),
        associated=True,
    )


@CASES
@given(
    st.one_of(st.binary(max_size=600), BITS.map(lambda b: flip(_mpps(), b))),
    st.sampled_from([n_create_rq, n_set_rq]),
)
def test_malformed_mpps_data_sets(scp: Scp, data: bytes, command: object) -> None:
    request = command("1.2.826.0.1.3680043.10.1.1")  # type: ignore[operator]
    hit(scp, p_data(5, request, command=True) + p_data(5, data, command=False), associated=True)
