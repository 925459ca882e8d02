"""The DICOM front door over real sockets: what a hostile or broken peer can and cannot hold.

Each scenario is one an attacker-minded test found holding association slots or memory
(issue 9); the listener runs in-process with short deadlines so that each close is seen in
seconds, and every test ends by showing that a modality still gets its C-ECHO answered.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from tests.support.dicom_wire import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    P_DATA_TF,
    RawPeer,
    associate_rq,
    c_find_rq,
    implicit,
    n_create_rq,
    n_set_rq,
    overrun,
    p_data,
    pdu,
    rss_bytes,
)
from tests.support.net import wait_until
from tests.support.scp import Scp, start_scp

# Short enough to see each close in seconds; long enough for a modality's own association on
# a loaded machine (ARTIM runs from connect until its A-ASSOCIATE-RQ has been read).
ARTIM = 1.0
MB = 1024 * 1024
RSS_MARGIN = 48 * MB  # far below what buffering the declared lengths would take


def scp_with(url: str, tmp_path: Path, **dicom: Any) -> Scp:
    return start_scp(url, tmp_path, dicom={"artim_timeout": ARTIM, "network_timeout": 2.0, **dicom})


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path) -> Iterator[Scp]:
    server = scp_with(sqlite_url, tmp_path)
    yield server
    server.stop()


def echo_status(port: int, calling: str = "MODALITY") -> int | None:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="MWLBROKER")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else None
    finally:
        assoc.release()


def settled(scp: Scp) -> None:
    """Every connection of the test is gone from the counts."""
    wait_until(lambda: scp.server.stats().connections_open == 0, what="connections to close")


def associated_peer(port: int, calling: str = "MODALITY", **rq: Any) -> RawPeer:
    peer = RawPeer(port)
    answer = peer.associate(associate_rq(calling=calling, **rq))
    assert answer.pdu_type == A_ASSOCIATE_AC
    return peer


# -- before association: ARTIM, garbage, stray PDUs, huge lengths -----------------------------


def test_a_stalled_header_is_closed_at_artim(scp: Scp) -> None:
    peer = RawPeer(scp.port)
    peer.send(b"\x01\x00\x00")
    started = time.monotonic()
    assert peer.closed_within(10.0)
    assert time.monotonic() - started < 5.0
    assert scp.server.stats().aborted_by_watchdog.get("artim", 0) >= 1
    settled(scp)
    assert echo_status(scp.port) == 0


def test_a_request_dribbled_a_byte_at_a_time_is_closed_at_artim(scp: Scp) -> None:
    peer = RawPeer(scp.port)
    request = associate_rq()
    started = time.monotonic()
    sent = 0
    while sent < len(request) and peer.send(request[sent : sent + 1]):
        sent += 1
        if peer.closed_within(0.1):
            break
    assert sent < len(request), "the whole request went through a byte at a time"
    assert time.monotonic() - started < 5.0
    assert scp.server.stats().aborted_by_watchdog.get("artim", 0) >= 1
    assert echo_status(scp.port) == 0


@pytest.mark.parametrize(
    ("data", "reason", "abort_reason"),
    [
        (bytes([0x99]) + os.urandom(999), "unknown_pdu", 1),
        (p_data(1, c_find_rq(), command=True), "unexpected_pdu", 2),
        (pdu(0x05, bytes(4)), "unexpected_pdu", 2),
        (pdu(0x01, b"", declared=0xFFFFFFFF), "associate_rq_length", 6),
        (associate_rq(padding=200_000), "associate_rq_length", 6),
    ],
    ids=["random-bytes", "p-data-first", "release-first", "4gb-associate-rq", "oversize-rq"],
)
def test_anything_but_a_reasonable_associate_rq_is_aborted_first(
    scp: Scp, data: bytes, reason: str, abort_reason: int
) -> None:
    peer = RawPeer(scp.port)
    peer.send(data)
    answer = peer.read_pdu()
    assert answer.pdu_type == A_ABORT
    assert answer.body[2:] == bytes([2, abort_reason])  # source: service provider
    assert peer.closed_within(5.0)
    assert scp.server.stats().refused.get(reason) == 1
    settled(scp)
    assert echo_status(scp.port) == 0


def test_idle_sockets_fill_only_the_connection_cap(sqlite_url: str, tmp_path: Path) -> None:
    scp = scp_with(sqlite_url, tmp_path, max_connections=4, max_associations=1)
    try:
        idle = [RawPeer(scp.port) for _ in range(4)]
        wait_until(lambda: scp.server.stats().connections_open == 4, what="4 open connections")
        over = RawPeer(scp.port)
        assert over.closed_within(2.0), "the connection past the cap stayed open"
        assert scp.server.stats().refused.get("connections", 0) >= 1
        # ARTIM frees the cap; idle sockets never counted as associations
        assert all(peer.closed_within(5.0) for peer in idle)
        assert echo_status(scp.port) == 0
    finally:
        scp.stop()


def test_unassociated_connections_do_not_count_as_associations(
    sqlite_url: str, tmp_path: Path
) -> None:
    scp = scp_with(sqlite_url, tmp_path, max_associations=1, artim_timeout=30.0)
    try:
        idle = [RawPeer(scp.port) for _ in range(5)]
        wait_until(lambda: scp.server.stats().connections_not_associated == 5, what="idle")
        assert echo_status(scp.port) == 0
        for peer in idle:
            peer.close()
    finally:
        scp.stop()


# -- association limits ----------------------------------------------------------------------


def test_the_limit_counts_established_associations(sqlite_url: str, tmp_path: Path) -> None:
    scp = scp_with(sqlite_url, tmp_path, max_associations=1, network_timeout=30.0)
    try:
        held = associated_peer(scp.port)
        assert scp.server.stats().associations_established == 1
        refused = RawPeer(scp.port).associate()
        assert refused.pdu_type == A_ASSOCIATE_RJ
        assert refused.body[1:4] == bytes([2, 3, 2])
        held.close()
        settled(scp)
        assert echo_status(scp.port) == 0
    finally:
        scp.stop()


def test_one_calling_ae_cannot_take_every_association(sqlite_url: str, tmp_path: Path) -> None:
    scp = scp_with(sqlite_url, tmp_path, max_associations_per_ae=2, network_timeout=30.0)
    try:
        held = [associated_peer(scp.port, calling="GREEDY") for _ in range(2)]
        third = RawPeer(scp.port).associate(associate_rq(calling="GREEDY"))
        assert third.pdu_type == A_ASSOCIATE_RJ
        assert third.body[1:4] == bytes([2, 3, 2])
        assert scp.server.stats().refused.get("calling_ae_associations") == 1
        assert echo_status(scp.port, calling="MODALITY") == 0
        for peer in held:
            peer.close()
    finally:
        scp.stop()


def test_an_unknown_calling_ae_is_refused_permanently_even_when_full(
    sqlite_url: str, tmp_path: Path
) -> None:
    scp = scp_with(
        sqlite_url, tmp_path, allowed_calling_aes=["CT1"], max_associations=1, network_timeout=30
    )
    try:
        held = associated_peer(scp.port, calling="CT1")
        refused = RawPeer(scp.port).associate(associate_rq(calling="STRANGER"))
        assert refused.pdu_type == A_ASSOCIATE_RJ
        assert refused.body[1:4] == bytes([1, 1, 3])
        held.close()
    finally:
        scp.stop()


def test_services_of_a_calling_ae_limit_its_presentation_contexts(
    sqlite_url: str, tmp_path: Path
) -> None:
    scp = scp_with(sqlite_url, tmp_path, allowed_calling_aes=["CT1:echo", "MR1"])
    try:
        ae = AE(ae_title="CT1")
        ae.add_requested_context(Verification)
        ae.add_requested_context(ModalityWorklistInformationFind)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
        assert assoc.is_established
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        rejected = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
        assoc.release()
        assert accepted == {Verification}
        assert rejected == {ModalityWorklistInformationFind: 0x03}
        assert echo_status(scp.port, calling="MR1") == 0
    finally:
        scp.stop()


# -- after association: stalls, slow readers, huge P-DATA ------------------------------------


def test_an_association_stalled_mid_p_data_is_closed(scp: Scp) -> None:
    peer = associated_peer(scp.port)
    peer.send(p_data(1, c_find_rq(), command=True)[:20])
    assert peer.closed_within(10.0)
    settled(scp)
    assert echo_status(scp.port) == 0


def test_a_modality_that_never_reads_its_matches_is_closed(sqlite_url: str, tmp_path: Path) -> None:
    scp = scp_with(sqlite_url, tmp_path, max_associations=1)
    try:
        for n in range(300):
            scp.add(patient_id=f"P{n}", accession=f"A{n}", sps_id=f"S{n}", study_uid=None)
        peer = RawPeer(scp.port, rcvbuf=4096)
        assert peer.associate(associate_rq()).pdu_type == A_ASSOCIATE_AC
        identifier = Dataset()
        for keyword in ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate"):
            setattr(identifier, keyword, "")
        identifier.ScheduledProcedureStepSequence = [Dataset()]
        peer.send(
            p_data(3, c_find_rq(), command=True) + p_data(3, implicit(identifier), command=False)
        )
        wait_until(
            lambda: scp.server.stats().connections_open == 0,
            timeout=20.0,
            what="the broker to give up on a peer that does not read",
        )
        assert echo_status(scp.port) == 0
        peer.close()
    finally:
        scp.stop()


@pytest.mark.parametrize("size", [16 * MB, 64 * MB])
def test_a_huge_p_data_is_aborted_before_it_is_read(scp: Scp, size: int) -> None:
    peer = associated_peer(scp.port)
    before = rss_bytes()
    peer.send(pdu(P_DATA_TF, b"", declared=size))
    chunk = bytes(MB)
    sent = 0
    while sent < size and peer.send(chunk):
        sent += len(chunk)
    assert sent < size, "the broker read the whole oversize PDU"
    assert rss_bytes() - before < RSS_MARGIN
    assert scp.server.stats().refused.get("pdu_length") == 1
    settled(scp)
    assert echo_status(scp.port) == 0


# -- malformed data sets --------------------------------------------------------------------


def _find_identifier() -> bytes:
    ds = Dataset()
    ds.PatientName = "DOE^J*"
    ds.PatientID = ""
    return implicit(ds)


@pytest.mark.parametrize(
    "identifier",
    [overrun(_find_identifier()), _find_identifier()[:-3], b"\x10\x00\x10\x00\xff\xff\xff\xff"],
    ids=["length-overrun", "cut-short", "undefined-length-string"],
)
def test_an_undecodable_identifier_is_refused(scp: Scp, identifier: bytes) -> None:
    peer = associated_peer(scp.port)
    peer.send(p_data(3, c_find_rq(), command=True) + p_data(3, identifier, command=False))
    answer = peer.dimse_response()
    assert answer.Status == 0xA900
    assert "cannot be decoded" in answer.ErrorComment
    peer.close()


def _mpps_attributes() -> bytes:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS1"
    return implicit(ds)


@pytest.mark.parametrize("request_set", [n_create_rq, n_set_rq], ids=["n-create", "n-set"])
def test_an_undecodable_mpps_data_set_is_refused(scp: Scp, request_set: Any) -> None:
    peer = associated_peer(scp.port)
    data = overrun(_mpps_attributes())
    peer.send(p_data(5, request_set("1.2.3.4.5"), command=True) + p_data(5, data, command=False))
    answer = peer.dimse_response()
    assert answer.Status == 0x0110
    assert "cannot be decoded" in answer.ErrorComment
    peer.close()


def test_an_endless_fragmented_identifier_is_aborted(scp: Scp) -> None:
    """Each P-DATA within the limit, the message not: pynetdicom would join them all."""
    peer = associated_peer(scp.port)
    before = rss_bytes()
    fragment = p_data(3, bytes(200_000), command=False, last=False)
    assert peer.send(p_data(3, c_find_rq(), command=True))
    sent = 0
    while sent < 64 * MB and peer.send(fragment):
        sent += len(fragment)
    assert sent < 64 * MB, "the broker kept joining fragments"
    assert rss_bytes() - before < RSS_MARGIN
    assert scp.server.stats().refused.get("message_length") == 1
    settled(scp)
    assert echo_status(scp.port) == 0
