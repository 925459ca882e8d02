"""Association admission and per-AE services (dicom_scp.admission), and the front door's
deadlines and PDU header rules on a fake clock (no sockets)."""

from __future__ import annotations

import socket

import pytest

from dicom_scp.admission import AdmissionPolicy, RejectReason, allowed_sop_classes, service_of
from dicom_scp.transport import FrontDoor, TransportPolicy

VERIFICATION = "1.2.840.10008.1.1"
MWL = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
COMMITMENT = "1.2.840.10008.1.20.1"


def policy(**overrides: object) -> AdmissionPolicy:
    values: dict[str, object] = {
        "ae_title": "MWLBROKER",
        "require_called_ae": True,
        "calling_ae_services": {},
        "max_associations": 3,
        "max_associations_per_ae": 2,
        **overrides,
    }
    return AdmissionPolicy(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("uid", "service"),
    [
        (VERIFICATION, "echo"),
        (MWL, "find"),
        (MPPS, "mpps"),
        (CT_STORAGE, "store"),
        (STUDY_MOVE, "move"),
        (STUDY_GET, "get"),
        (COMMITMENT, "commit"),
        ("1.2.3.4", None),
    ],
)
def test_each_sop_class_has_its_service(uid: str, service: str | None) -> None:
    assert service_of(uid) == service


def test_services_select_sop_classes() -> None:
    every = {VERIFICATION, MWL, MPPS, CT_STORAGE, "1.2.3.4"}
    assert allowed_sop_classes(None, every) == every
    assert allowed_sop_classes(frozenset({"echo", "mpps"}), every) == {VERIFICATION, MPPS}
    # C-GET returns instances over Storage contexts of the same association
    assert allowed_sop_classes(frozenset({"get"}), every | {STUDY_GET}) == {STUDY_GET, CT_STORAGE}


def test_permanent_rejections_come_before_limits() -> None:
    rules = policy(calling_ae_services={"CT1": None})
    assert rules.check("STRANGER", "MWLBROKER", 3, 2) is RejectReason.CALLING_AE
    assert rules.check("CT1", "OTHER", 3, 2) is RejectReason.CALLED_AE
    assert rules.check("CT1", "MWLBROKER", 3, 0) is RejectReason.ASSOCIATIONS
    assert rules.check("CT1", "MWLBROKER", 2, 2) is RejectReason.CALLING_AE_ASSOCIATIONS
    assert rules.check("CT1", "MWLBROKER", 2, 1) is None


def test_no_per_ae_limit_and_any_called_ae() -> None:
    rules = policy(max_associations_per_ae=0, require_called_ae=False)
    assert rules.check("CT1", "ANYTHING", 2, 99) is None


def test_services_of_an_ae() -> None:
    rules = policy(calling_ae_services={"CT1": frozenset({"echo"}), "MR1": None})
    assert rules.services_of("CT1") == frozenset({"echo"})
    assert rules.services_of("MR1") is None
    assert policy().services_of("ANY") is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def door(clock: FakeClock, **limits: object) -> FrontDoor:
    values: dict[str, object] = {
        "artim_timeout": 5.0,
        "idle_timeout": 60.0,
        "max_association_seconds": 600.0,
        "max_connections": 3,
        "max_pdu_length": 1000,
        "max_associate_rq_length": 500,
        **limits,
    }
    return FrontDoor(TransportPolicy(**values), policy(), clock)  # type: ignore[arg-type]


def test_deadlines_on_a_fake_clock() -> None:
    clock = FakeClock()
    front = door(clock)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        idle, busy, old = (front.open(a, ("127.0.0.1", 1)) for a, _ in pairs)
        assert idle and busy and old
        assert front.open(pairs[0][1], ("127.0.0.1", 2)) is None  # the cap
        assert front.admit(busy, "CT1", "MWLBROKER") is None
        assert front.admit(old, "CT1", "MWLBROKER") is None
        clock.now += 5.5
        assert [r for _, r in front.expired(clock.now)] == ["artim"]
        assert front.sweep() == 1
        clock.now += 30
        front.touch(busy)
        clock.now += 30.5
        assert [(c is old, r) for c, r in front.expired(clock.now)] == [(True, "idle")]
        front.touch(old)
        clock.now += 600
        assert [r for _, r in front.expired(clock.now)] == ["lifetime", "lifetime"]
        stats = front.stats()
        assert (stats.connections_open, stats.associations_established) == (2, 2)
        assert stats.refused == {"connections": 1}
        assert stats.aborted_by_watchdog == {"artim": 1}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_pdu_headers_before_and_after_association() -> None:
    clock = FakeClock()
    front = door(clock)
    a, b = socket.socketpair()
    try:
        conn = front.open(a, ("127.0.0.1", 1))
        assert conn is not None
        assert front.check_header(conn, 0x01, 500) is None
        assert front.check_header(conn, 0x01, 501) is RejectReason.ASSOCIATE_RQ_LENGTH
        assert front.check_header(conn, 0x04, 10) is RejectReason.UNEXPECTED_PDU
        assert front.check_header(conn, 0x07, 4) is RejectReason.UNEXPECTED_PDU
        assert front.check_header(conn, 0x42, 4) is RejectReason.UNKNOWN_PDU
        assert front.admit(conn, "CT1", "MWLBROKER") is None
        assert front.check_header(conn, 0x04, 1000) is None
        assert front.check_header(conn, 0x04, 1001) is RejectReason.PDU_LENGTH
        assert front.check_header(conn, 0x05, 4) is None
        assert front.check_header(conn, 0x05, 0xFFFFFFFF) is RejectReason.PDU_LENGTH
    finally:
        a.close()
        b.close()


def test_a_release_request_frees_the_slot_before_the_socket_closes() -> None:
    """Read as a header, A-RELEASE-RQ (or A-ABORT) ends the association for the limits: the
    same modality associating again at once is not refused for it. The lingering socket is
    then closed at ARTIM from the release, not at the idle timeout."""
    clock = FakeClock()
    front = FrontDoor(door(clock).transport, policy(max_associations_per_ae=1), clock)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        first, second, third = (front.open(a, ("127.0.0.1", 1)) for a, _ in pairs)
        assert first and second and third
        assert front.admit(first, "CT1", "MWLBROKER") is None
        assert front.admit(second, "CT1", "MWLBROKER") is RejectReason.CALLING_AE_ASSOCIATIONS
        assert front.check_header(first, 0x05, 4) is None
        assert front.admit(third, "CT1", "MWLBROKER") is None
        assert front.check_header(third, 0x07, 4) is None
        stats = front.stats()
        assert (stats.associations_established, stats.connections_not_associated) == (0, 3)
        clock.now += 5.5
        assert sorted(r for _, r in front.expired(clock.now)) == ["artim"] * 3
    finally:
        for a, b in pairs:
            a.close()
            b.close()
