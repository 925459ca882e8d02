"""The outbox payload of an MPPS forwarded to a downstream SCP, typed at both ends."""

from __future__ import annotations

import pytest

from app.domain.reports import ForwardedMpps

DATASET = {"00400252": {"vr": "CS", "Value": ["COMPLETED"]}}


def test_round_trip_keeps_the_stored_shape() -> None:
    forwarded = ForwardedMpps("1.2.9.1", DATASET)
    payload = forwarded.to_payload()
    assert payload == {"sop_instance_uid": "1.2.9.1", "dataset": DATASET}
    assert ForwardedMpps.from_payload(payload) == forwarded


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"sop_instance_uid": "1.2"},
        {"dataset": DATASET},
        {"sop_instance_uid": "1", "dataset": []},
    ],
)
def test_a_malformed_payload_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ForwardedMpps.from_payload(payload)
