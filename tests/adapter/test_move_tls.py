"""C-MOVE to a remote AE whose ``remote_ae`` row says ``tls``: the C-STORE sub-association goes
over TLS with the broker's certificate (the destination requires it), never in plain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelMove,
)

from app.config import TlsSettings
from app.db import session_scope
from app.models import RemoteAe
from app.tls import server_context
from tests.support.certs import Certificates, tls_overrides
from tests.support.scp import Scp, start_scp
from tests.support.stored import SeriesSpec, index_files, make_study

MOVE = StudyRootQueryRetrieveInformationModelMove
STUDY_UID = "1.2.826.0.1.3680043.10.543.89.1"


@pytest.fixture
def scp(sqlite_url: str, tmp_path: Path, certs: Certificates) -> Iterator[Scp]:
    server = start_scp(sqlite_url, tmp_path, **tls_overrides(certs))
    storage = server.settings.storage.dir
    paths = make_study(storage, study_uid=STUDY_UID, series=(SeriesSpec("CT", 2),))
    index_files(server.factory, storage, paths)
    yield server
    server.stop()


@pytest.fixture
def tls_destination(certs: Certificates) -> Iterator[tuple[int, list[str]]]:
    """A Storage SCP on TLS that requires a client certificate from the test CA."""
    received: list[str] = []

    def on_store(event: evt.Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    context = server_context(
        TlsSettings(
            cert=certs.server.cert, key=certs.server.key, ca=certs.ca, client_cert="required"
        )
    )
    ae = AE(ae_title="TLSDEST")
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
        ssl_context=context,
    )
    assert server is not None
    yield int(server.server_address[1]), received
    server.shutdown()


def move(scp: Scp, destination: str) -> list[int]:
    ae = AE(ae_title="QRSCU")
    ae.add_requested_context(MOVE)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="MWLBROKER")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = STUDY_UID
    statuses = [
        int(status.Status) for status, _ in assoc.send_c_move(identifier, destination, MOVE)
    ]
    assoc.release()
    return statuses


def add_remote(scp: Scp, title: str, port: int, *, tls: bool) -> None:
    with session_scope(scp.factory) as session:
        session.add(
            RemoteAe(ae_title=title, host="127.0.0.1", port=port, tls=tls, services=["store"])
        )


def test_move_to_a_tls_destination_goes_over_tls(
    scp: Scp, tls_destination: tuple[int, list[str]]
) -> None:
    port, received = tls_destination
    add_remote(scp, "TLSDEST", port, tls=True)
    assert move(scp, "TLSDEST")[-1] == 0x0000
    assert len(received) == 2


def test_the_same_destination_without_the_tls_flag_gets_nothing(
    scp: Scp, tls_destination: tuple[int, list[str]]
) -> None:
    """Marked plain, the sub-association fails the TLS port: nothing is delivered."""
    port, received = tls_destination
    add_remote(scp, "TLSDEST", port, tls=False)
    assert move(scp, "TLSDEST")[-1] != 0x0000
    assert received == []
