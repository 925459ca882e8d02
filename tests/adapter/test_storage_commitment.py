"""Storage Commitment Push Model SCP over real associations (PS3.4 J.3): a pynetdicom requester
sends the N-ACTION and takes the N-EVENT-REPORT on its association or on one the broker opens;
the outbox worker is run by hand, so retries are driven, never waited for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from app.config import TlsSettings
from app.db import session_scope
from app.domain.commitment import CommitmentRequest
from app.models import StorageCommitment
from app.services import commitment, outbox
from app.tls import client_context, server_context
from dicom_scp.commitment import resume
from tests.support.certs import make_certificates, tls_overrides
from tests.support.commitment import (
    CT,
    MR,
    CommitmentBroker,
    Requester,
    failure_reasons,
    referenced,
    register_requester,
)
from tests.support.net import free_port
from tests.support.settings import make_settings

UID = "1.2.826.0.1.3680043.8.498.9"
TX = f"{UID}.100"


@pytest.fixture
def broker(database_url: str, tmp_path: Path) -> Iterator[CommitmentBroker]:
    settings = make_settings(
        database_url,
        tmp_path,
        acse_timeout=5.0,
        dimse_timeout=5.0,
        network_timeout=10.0,
        outbox_retry_min=60.0,
    )
    server = CommitmentBroker(settings)
    yield server
    server.stop()


@pytest.fixture
def requester() -> Iterator[Requester]:
    peer = Requester()
    yield peer
    peer.stop()


def test_all_committed_reported_on_a_new_association_with_the_scp_role(
    broker: CommitmentBroker, requester: Requester
) -> None:
    register_requester(broker.factory, requester.ae_title, requester.listen())
    refs = [(CT, f"{UID}.1"), (CT, f"{UID}.2")]
    for sop_class, instance in refs:
        broker.store(sop_class, instance)

    assert requester.request(broker.port, TX, refs) == 0x0000
    checked = broker.wait_for_state(TX, "checked")
    assert checked.event_type == 1 and checked.delivery is not None
    assert broker.worker.run_once() == 1

    report = requester.report()
    assert report.event_type == 1
    assert not report.same_association and report.calling_ae == "MWLBROKER"
    # the broker proposed the SCP role and the requester accepted it (PS3.4 J.3.3.1.3)
    assert (report.as_scu, report.as_scp) == (True, False)
    assert report.dataset.TransactionUID == TX
    assert report.dataset.RetrieveAETitle == "MWLBROKER"
    assert referenced(report.dataset, "ReferencedSOPSequence") == refs
    assert "FailedSOPSequence" not in report.dataset

    done = broker.commitment(TX)
    assert done.state == "reported" and done.reported_at is not None
    assert done.reported_via == "new association"
    assert done.delivery is not None and done.delivery.state == "sent"


def test_missing_instance_and_class_conflict_are_failures(
    broker: CommitmentBroker, requester: Requester
) -> None:
    register_requester(broker.factory, requester.ae_title, requester.listen())
    broker.store(CT, f"{UID}.1")
    broker.store(CT, f"{UID}.3")
    refs = [(CT, f"{UID}.1"), (CT, f"{UID}.2"), (MR, f"{UID}.3")]

    assert requester.request(broker.port, TX, refs) == 0x0000
    broker.wait_for_state(TX, "checked")
    broker.worker.run_once()

    report = requester.report()
    assert report.event_type == 2
    assert referenced(report.dataset, "ReferencedSOPSequence") == [(CT, f"{UID}.1")]
    assert referenced(report.dataset, "FailedSOPSequence") == [(CT, f"{UID}.2"), (MR, f"{UID}.3")]
    assert failure_reasons(report.dataset) == {f"{UID}.2": 0x0112, f"{UID}.3": 0x0119}
    failed = {f.sop_instance_uid: f.failure_reason for f in broker.commitment(TX).failed}
    assert failed == {f"{UID}.2": 0x0112, f"{UID}.3": 0x0119}


def test_report_waits_in_the_outbox_until_the_requester_is_up(
    broker: CommitmentBroker, requester: Requester
) -> None:
    port = free_port()  # nothing listens there yet
    register_requester(broker.factory, requester.ae_title, port)
    broker.store(CT, f"{UID}.1")

    assert requester.request(broker.port, TX, [(CT, f"{UID}.1")]) == 0x0000
    broker.wait_for_state(TX, "checked")
    assert broker.worker.run_once() == 0
    waiting = broker.commitment(TX)
    assert waiting.state == "checked" and waiting.reported_at is None
    assert waiting.delivery is not None
    assert waiting.delivery.attempts == 1 and "association" in waiting.delivery.last_error
    assert broker.worker.run_once() == 0  # backed off: not due yet

    requester.listen(port)
    with session_scope(broker.factory) as session:
        outbox.retry_now(session, pk=waiting.delivery.outbox_id)
    assert broker.worker.run_once() == 1

    assert requester.report().event_type == 1
    done = broker.commitment(TX)
    assert done.state == "reported" and done.delivery is not None
    assert done.delivery.attempts == 2 and done.delivery.state == "sent"


def test_report_on_the_same_association_when_the_requester_keeps_it_open(
    broker: CommitmentBroker, requester: Requester
) -> None:
    broker.store(CT, f"{UID}.1")  # no remote AE: only the same association can take it

    assert requester.request(broker.port, TX, [(CT, f"{UID}.1")], keep_open=True) == 0x0000

    report = requester.report()
    assert report.same_association and report.event_type == 1
    assert referenced(report.dataset, "ReferencedSOPSequence") == [(CT, f"{UID}.1")]
    done = broker.wait_for_state(TX, "reported")
    assert done.reported_via == "same association" and done.delivery is None


def test_unknown_requester_keeps_the_result_as_undeliverable(
    broker: CommitmentBroker, requester: Requester
) -> None:
    broker.store(CT, f"{UID}.1")

    assert requester.request(broker.port, TX, [(CT, f"{UID}.1"), (CT, f"{UID}.2")]) == 0x0000

    kept = broker.wait_for_state(TX, "undeliverable")
    assert kept.event_type == 2 and kept.delivery is None
    assert [c.sop_instance_uid for c in kept.committed] == [f"{UID}.1"]
    assert [(f.sop_instance_uid, f.failure_reason) for f in kept.failed] == [(f"{UID}.2", 0x0112)]
    assert broker.worker.run_once() == 0


def test_requester_refusing_the_report_is_retried(
    broker: CommitmentBroker, requester: Requester
) -> None:
    requester.answer = 0x0110
    register_requester(broker.factory, requester.ae_title, requester.listen())
    broker.store(CT, f"{UID}.1")

    requester.request(broker.port, TX, [(CT, f"{UID}.1")])
    broker.wait_for_state(TX, "checked")
    assert broker.worker.run_once() == 0

    pending = broker.commitment(TX)
    assert pending.state == "checked" and pending.delivery is not None
    assert "0x0110" in pending.delivery.last_error


@pytest.mark.parametrize(
    ("tx", "refs", "action", "status"),
    [
        ("", [(CT, f"{UID}.1")], {}, 0x0115),  # no Transaction UID
        ("not-a-uid", [(CT, f"{UID}.1")], {}, 0x0115),
        (TX, [], {}, 0x0115),  # no Referenced SOP Sequence
        (TX, [(CT, "")], {}, 0x0115),  # an item without its instance
        (TX, [(CT, f"{UID}.1"), (CT, f"{UID}.1")], {}, 0x0115),  # referenced twice
        (TX, [(CT, f"{UID}.1")], {"action_type": 2}, 0x0123),
        (TX, [(CT, f"{UID}.1")], {"instance": f"{UID}.55"}, 0x0112),
    ],
)
def test_malformed_n_action_is_refused_and_not_recorded(
    broker: CommitmentBroker,
    requester: Requester,
    tx: str,
    refs: list[tuple[str, str]],
    action: dict[str, object],
    status: int,
) -> None:
    assert requester.request(broker.port, tx, refs, **action) == status
    with session_scope(broker.factory) as session:
        assert commitment.list_commitments(session) == []


def test_repeated_n_action_is_the_same_request_and_a_reused_uid_is_refused(
    broker: CommitmentBroker, requester: Requester
) -> None:
    broker.store(CT, f"{UID}.1")
    refs = [(CT, f"{UID}.1")]
    assert requester.request(broker.port, TX, refs) == 0x0000
    broker.wait_for_state(TX, "undeliverable")

    assert requester.request(broker.port, TX, refs) == 0x0000  # our response was lost
    assert requester.request(broker.port, TX, [(CT, f"{UID}.2")]) == 0x0110
    assert broker.commitment(TX).requested[0].sop_instance_uid == f"{UID}.1"


def test_a_request_left_pending_by_a_stopped_broker_is_taken_up(
    broker: CommitmentBroker, requester: Requester
) -> None:
    register_requester(broker.factory, requester.ae_title, requester.listen())
    broker.store(CT, f"{UID}.1")
    with session_scope(broker.factory) as session:
        commitment.record(
            session,
            requester=requester.ae_title,
            request=CommitmentRequest.parse(TX, [(CT, f"{UID}.1")]),
        )
    assert resume(broker.server.commitment_context()) == 0  # too young: maybe still in hand
    with session_scope(broker.factory) as session:
        row = session.exec(select(StorageCommitment)).one()
        row.received_at = row.received_at - timedelta(minutes=5)
        session.add(row)

    assert resume(broker.server.commitment_context()) == 1

    assert broker.commitment(TX).state == "checked"
    assert broker.worker.run_once() == 1
    assert requester.report().event_type == 1


def test_a_tls_requester_is_not_sent_to_in_plain_tcp(
    broker: CommitmentBroker, requester: Requester
) -> None:
    register_requester(broker.factory, requester.ae_title, requester.listen(), tls=True)
    broker.store(CT, f"{UID}.1")

    requester.request(broker.port, TX, [(CT, f"{UID}.1")])
    broker.wait_for_state(TX, "checked")
    assert broker.worker.run_once() == 0

    waiting = broker.commitment(TX)
    assert waiting.delivery is not None and "TLS" in waiting.delivery.last_error
    assert requester.reports == []


def test_a_tls_requester_gets_the_report_over_tls(
    database_url: str, tmp_path: Path, requester: Requester
) -> None:
    """PS3.15 B.9: a requester marked ``tls`` is reached with the broker's client context; it
    requires the broker's certificate, so a plain or unauthenticated report could not land."""
    certs = make_certificates(tmp_path / "certs")
    settings = make_settings(database_url, tmp_path, outbox_retry_min=60.0, **tls_overrides(certs))
    peer_side = server_context(
        TlsSettings(
            cert=certs.server.cert, key=certs.server.key, ca=certs.ca, client_cert="required"
        )
    )
    broker = CommitmentBroker(settings, client=client_context(settings.tls))
    try:
        register_requester(
            broker.factory, requester.ae_title, requester.listen(ssl_context=peer_side), tls=True
        )
        broker.store(CT, f"{UID}.1")

        requester.request(broker.port, TX, [(CT, f"{UID}.1")])
        broker.wait_for_state(TX, "checked")
        assert broker.worker.run_once() == 1

        assert [r.event_type for r in requester.reports] == [1]
        assert broker.commitment(TX).state == "reported"
    finally:
        broker.stop()
