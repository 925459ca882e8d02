"""The measurements: each returns latencies (seconds) or a rate, from real sockets only."""

from __future__ import annotations

import http.client
import socket
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

from bench.dimse import FindClient, MppsClient
from bench.workload import Step, day, station_modality

ROOT = Path(__file__).resolve().parent.parent
HL7_TEMPLATE = (ROOT / "tests" / "data" / "hl7" / "orm_o01_nw.hl7").read_text("latin-1")
START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)
    matches: int = 0
    refused: int = 0
    elapsed: float = 0.0

    def p(self, percent: int) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]

    @property
    def rate(self) -> float:
        return len(self.samples) / self.elapsed if self.elapsed else float("nan")


# --- C-FIND -----------------------------------------------------------------------------------


def station_query(station: int = 4, day_offset: int = 5) -> Dataset:
    """What a modality asks: its own station, today, the usual return keys."""
    ds = _return_keys()
    ds.ScheduledProcedureStepSequence[0].ScheduledStationAETitle = f"ST{station}"
    ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate = day(day_offset)
    return ds


def broad_query(station: int = 4, first_day: int = 5) -> Dataset:
    """One modality over one week, every station of it."""
    ds = _return_keys()
    item = ds.ScheduledProcedureStepSequence[0]
    item.Modality = station_modality(station)
    item.ScheduledProcedureStepStartDate = f"{day(first_day)}-{day(first_day + 6)}"
    return ds


def _return_keys() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyInstanceUID = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    step = Dataset()
    step.ScheduledStationAETitle = ""
    step.ScheduledProcedureStepStartDate = ""
    step.ScheduledProcedureStepStartTime = ""
    step.Modality = ""
    step.ScheduledPerformingPhysicianName = ""
    step.ScheduledProcedureStepDescription = ""
    step.ScheduledProcedureStepID = ""
    step.ScheduledStationName = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def sequential_finds(port: int, called: str, identifier: Dataset, count: int) -> Timing:
    client = FindClient("127.0.0.1", port, called, identifier)
    timing = Timing()
    client.find()  # warm-up: caches, connection pools
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        result = client.find()
        timing.samples.append(time.perf_counter() - began)
        timing.matches = result.matches
    timing.elapsed = time.perf_counter() - start
    return timing


def concurrent_finds(
    port: int, called: str, identifiers: list[Dataset], clients: int, per_client: int
) -> Timing:
    """``clients`` modalities at once, each its own station, each ``per_client`` associations."""
    timing = Timing()
    lock = threading.Lock()

    def modality(index: int) -> None:
        # Its own Calling AE too: the broker limits the associations of one AE at a time.
        identifier = identifiers[index % len(identifiers)]
        client = FindClient("127.0.0.1", port, called, identifier, calling=f"BENCH{index:03d}")
        for _ in range(per_client):
            began = time.perf_counter()
            try:
                client.find()
            except Exception:
                with lock:
                    timing.refused += 1
                continue
            with lock:
                timing.samples.append(time.perf_counter() - began)

    threads = [threading.Thread(target=modality, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timing.elapsed = time.perf_counter() - start
    return timing


def pynetdicom_finds(port: int, called: str, identifier: Dataset, count: int) -> Timing:
    """The same query from the pynetdicom SCU (decodes every response): for reference."""
    timing = Timing()
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        ae = AE(ae_title="BENCHSCU")
        ae.add_requested_context(ModalityWorklistInformationFind)
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not assoc.is_established:
            timing.refused += 1
            continue
        timing.matches = sum(
            1 for _s, ds in assoc.send_c_find(identifier, ModalityWorklistInformationFind) if ds
        )
        assoc.release()
        timing.samples.append(time.perf_counter() - began)
    timing.elapsed = time.perf_counter() - start
    return timing


# --- MPPS --------------------------------------------------------------------------------------


def _n_create(step: Step) -> Dataset:
    ssas = Dataset()
    ssas.StudyInstanceUID = step.study_uid
    ssas.ReferencedStudySequence = []
    ssas.AccessionNumber = f"ACC{step.index}"
    ssas.RequestedProcedureID = f"RP{step.index}"
    ssas.RequestedProcedureDescription = ""
    ssas.ScheduledProcedureStepID = step.sps_id
    ssas.ScheduledProcedureStepDescription = ""
    ssas.ScheduledProtocolCodeSequence = []
    ds = Dataset()
    ds.ScheduledStepAttributesSequence = [ssas]
    ds.PatientName = f"PATIENT{step.patient}^BENCH"
    ds.PatientID = f"P{step.patient}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = f"PPS{step.index}"
    ds.PerformedStationAETitle = step.station_ae
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = day(step.day)
    ds.PerformedProcedureStepStartTime = step.time
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = ""
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = step.modality
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def _n_set(step: Step) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedProcedureStepEndDate = day(step.day)
    ds.PerformedProcedureStepEndTime = "235900"
    series = Dataset()
    series.PerformingPhysicianName = ""
    series.ProtocolName = "BENCH"
    series.OperatorsName = ""
    series.SeriesInstanceUID = f"{step.study_uid}.1"
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    series.ReferencedImageSequence = []
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    ds.PerformedSeriesSequence = [series]
    return ds


def mpps_uid(step: Step, run: str = "9") -> str:
    """A fresh MPPS SOP Instance UID per step (and per ``run``, so runs can share a database)."""
    return f"{step.study_uid}.{run}"


def mpps_pairs(port: int, called: str, steps: list[Step], run: str = "9") -> Timing:
    """N-CREATE (IN PROGRESS) then N-SET (COMPLETED) per step, over one association, from the
    raw-socket client: every request is encoded before the clock starts, of every answer only
    the Status is read, so the time is the server's (and the wire's)."""
    timing = Timing()
    with MppsClient("127.0.0.1", port, called) as client:
        pairs = [client.encode(mpps_uid(s, run), _n_create(s), _n_set(s)) for s in steps]
        start = time.perf_counter()
        for pair in pairs:
            began = time.perf_counter()
            if client.pair(pair) == (0, 0):
                timing.samples.append(time.perf_counter() - began)
            else:
                timing.refused += 1
        timing.elapsed = time.perf_counter() - start
    return timing


def pynetdicom_mpps_pairs(port: int, called: str, steps: list[Step], run: str = "8") -> Timing:
    """The same pairs from the pynetdicom SCU (it encodes and decodes every data set, which costs
    about as much client CPU as the server spends): for reference."""
    ae = AE(ae_title="BENCHSCU")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        raise SystemExit("MPPS association refused")
    timing = Timing()
    start = time.perf_counter()
    try:
        for step in steps:
            began = time.perf_counter()
            uid = mpps_uid(step, run)
            status, _ = assoc.send_n_create(_n_create(step), ModalityPerformedProcedureStep, uid)
            ok = status and status.Status == 0
            status, _ = assoc.send_n_set(_n_set(step), ModalityPerformedProcedureStep, uid)
            if ok and status and status.Status == 0:
                timing.samples.append(time.perf_counter() - began)
            else:
                timing.refused += 1
    finally:
        assoc.release()
    timing.elapsed = time.perf_counter() - start
    return timing


# --- HL7 ---------------------------------------------------------------------------------------


def hl7_order(index: int) -> bytes:
    """ORM^O01 NW with two requested procedures (CT and CR), distinct everything."""
    text = HL7_TEMPLATE.replace("MSG00001", f"BENCH{index}").replace("PAT001^", f"B{index}^")
    for old in ("ACC0001", "ACC0002", "RP0001", "RP0002", "SPS0001"):
        text = text.replace(old, f"{old[:2]}{index}{old[-1]}")
    uid = f"2.55.3.{index + 1}"
    text = text.replace("2.55.3.1001", f"{uid}1").replace("2.55.3.1002", f"{uid}2")
    return START_BLOCK + text.encode("latin-1") + END_BLOCK


def _read_ack(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END_BLOCK):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the broker closed the MLLP connection")
        data += chunk
    return data


def hl7_intake(port: int, messages: list[bytes], connections: int) -> Timing:
    """Send ``messages`` over ``connections`` MLLP connections, each waiting for every ACK."""
    timing = Timing()
    lock = threading.Lock()

    def sender(part: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for payload in part:
                began = time.perf_counter()
                sock.sendall(payload)
                ack = _read_ack(sock)
                with lock:
                    if b"MSA|AA|" in ack:
                        timing.samples.append(time.perf_counter() - began)
                    else:
                        timing.refused += 1

    parts = [messages[n::connections] for n in range(connections)]
    threads = [threading.Thread(target=sender, args=(part,)) for part in parts]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timing.elapsed = time.perf_counter() - start
    return timing


# --- REST --------------------------------------------------------------------------------------


def rest_search(port: int, token: str, path: str, count: int) -> Timing:
    """GET ``path`` ``count`` times over one keep-alive connection."""
    timing = Timing()
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}"}
    _get(connection, path, headers)  # warm-up
    start = time.perf_counter()
    for _ in range(count):
        began = time.perf_counter()
        _get(connection, path, headers)
        timing.samples.append(time.perf_counter() - began)
    timing.elapsed = time.perf_counter() - start
    connection.close()
    return timing


def _get(connection: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> None:
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: HTTP {response.status}")


def median_ms(timing: Timing) -> float:
    return statistics.median(timing.samples) * 1000 if timing.samples else float("nan")


Measure = Callable[[], Timing]
