"""``dicom_scp.wlimport.import_paths``: DCMTK worklist files into the database, idempotently."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from sqlalchemy import func
from sqlmodel import select

from app.cli import main
from app.db import SessionFactory, create_db_engine, create_session_factory
from app.domain.worklist import parse_worklist_query
from app.models import Patient, ScheduledProcedureStep
from app.services import worklist
from dicom_scp import wlimport
from dicom_scp.wlimport import import_paths
from tests.support.ci import IN_CI

EXAMPLE_DB = Path("/usr/share/doc/dcmtk/examples/wlistdb/OFFIS")
EXAMPLE_DUMPS = sorted(EXAMPLE_DB.glob("*.dump"))


@pytest.fixture
def factory(sqlite_url: str) -> Iterator[SessionFactory]:
    engine = create_db_engine(sqlite_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
def example_folder(tmp_path: Path) -> Path:
    """DCMTK's example worklist as ``*.wl`` files (and its lockfile), like wlmscpfs serves it."""
    dump2dcm = shutil.which("dump2dcm")
    if dump2dcm is None or not EXAMPLE_DUMPS:
        message = "DCMTK (dump2dcm and its example worklist) is not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path / "wlistdb" / "OFFIS"
    folder.mkdir(parents=True)
    for dump in EXAMPLE_DUMPS:
        subprocess.run([dump2dcm, "-q", str(dump), str(folder / f"{dump.stem}.wl")], check=True)
    (folder / "lockfile").touch()
    return folder


def _count(factory: SessionFactory, model: type[ScheduledProcedureStep] | type[Patient]) -> int:
    with factory() as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def _items(factory: SessionFactory) -> list[dict[str, Any]]:
    with factory() as session:
        return list(worklist.find(session, query=parse_worklist_query({})))


def test_the_dcmtk_example_folder_imports_completely(
    factory: SessionFactory, example_folder: Path
) -> None:
    report = import_paths([example_folder.parent], factory)  # found recursively
    assert report.failures == []
    assert report.imported == len(EXAMPLE_DUMPS) == 10
    assert _count(factory, ScheduledProcedureStep) == 10
    assert _count(factory, Patient) == 4  # VIVALDI, HAYDN, BEETHOVEN, MOZART
    first = next(
        i for i in _items(factory) if i["0020000D"]["Value"] == ["1.2.276.0.7230010.3.2.101"]
    )
    assert first["00100010"]["Value"] == [{"Alphabetic": "VIVALDI^ANTONIO"}]
    step = first["00400100"]["Value"][0]
    assert step["00400001"]["Value"] == ["AA32", "AA33"]
    assert step["00400009"]["Value"] == ["SPD3445"]
    assert "00080005" not in first  # the file's character set is not stored: JSON is Unicode


def test_reimport_creates_no_duplicates(factory: SessionFactory, example_folder: Path) -> None:
    first = import_paths([example_folder], factory)
    assert (first.created, first.updated) == (10, 0)
    again = import_paths([example_folder], factory)
    assert again.imported == 10 and again.failures == []
    assert (again.created, again.updated) == (0, 10)
    assert _count(factory, ScheduledProcedureStep) == 10


def test_a_file_without_identifiers_gets_the_same_derived_ones_every_time(
    factory: SessionFactory, example_folder: Path, tmp_path: Path
) -> None:
    ds = dcmread(example_folder / "wklist1.wl")
    del ds.StudyInstanceUID
    del ds.RequestedProcedureID
    del ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID
    bare = tmp_path / "bare.WL"  # explicit file: imported whatever its suffix's case
    ds.save_as(bare)
    for _ in range(2):
        report = import_paths([bare], factory)
        assert report.imported == 1, report.failures
    items = _items(factory)
    assert len(items) == 1
    uid = items[0]["0020000D"]["Value"][0]
    assert str(uid).startswith("2.25.")


def test_a_garbage_file_is_reported_while_the_others_import(
    factory: SessionFactory, example_folder: Path
) -> None:
    garbage = example_folder / "garbage.wl"
    garbage.write_bytes(b"this is not a DICOM file\n" * 10)
    nested = example_folder / "sub" / "INCOMPLETE.WL"
    nested.parent.mkdir()
    ds = dcmread(example_folder / "wklist2.wl")
    del ds.PatientID
    ds.save_as(nested)

    report = import_paths([example_folder], factory)

    assert report.imported == 10
    reasons = {failure.path.name: failure.reason for failure in report.failures}
    assert set(reasons) == {"garbage.wl", "INCOMPLETE.WL"}
    assert "not a DICOM data set" in reasons["garbage.wl"]
    assert reasons["INCOMPLETE.WL"] == "PatientID (Type 1) is missing or empty"
    assert _count(factory, ScheduledProcedureStep) == 10


def test_an_explicit_missing_file_is_a_failure(factory: SessionFactory, tmp_path: Path) -> None:
    report = import_paths([tmp_path / "absent.wl"], factory)
    assert report.imported == 0
    assert [f.path.name for f in report.failures] == ["absent.wl"]


def test_text_is_decoded_by_the_files_character_set(
    factory: SessionFactory, example_folder: Path, tmp_path: Path
) -> None:
    ds = dcmread(example_folder / "wklist1.wl")  # ISO_IR 100
    ds.PatientName = "MÜLLER^JOSÉ"
    latin1 = tmp_path / "latin1.wl"
    ds.save_as(latin1)
    assert "MÜLLER^JOSÉ".encode("latin-1") in latin1.read_bytes()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = "UTF8"
    ds.StudyInstanceUID = "1.2.3.4.192"
    ds.PatientName = "山田^太郎"
    utf8 = tmp_path / "utf8.wl"
    ds.save_as(utf8)

    report = import_paths([latin1, utf8], factory)

    assert report.imported == 2, report.failures
    names = {i["00100020"]["Value"][0]: i["00100010"]["Value"][0] for i in _items(factory)}
    assert names["AV35674"] == {"Alphabetic": "MÜLLER^JOSÉ"}
    assert names["UTF8"] == {"Alphabetic": "山田^太郎"}


class _Progress:
    def __init__(self) -> None:
        self.total: int | None = None
        self.done: list[int] = []

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, count: int) -> None:
        self.done.append(count)


def test_batches_parsed_by_worker_processes_give_the_same_result(
    factory: SessionFactory, example_folder: Path, sqlite_url: str
) -> None:
    (example_folder / "garbage.wl").write_bytes(b"not DICOM")
    progress = _Progress()

    report = import_paths([example_folder], factory, batch_size=3, workers=2, progress=progress)

    assert (report.created, report.updated) == (10, 0)
    assert [f.path.name for f in report.failures] == ["garbage.wl"]
    assert progress.total == 11 and progress.done == [3, 3, 3, 2]
    assert _count(factory, ScheduledProcedureStep) == 10
    assert list(report.reasons()) == [report.failures[0].reason]


def test_a_failed_joint_write_imports_the_batch_one_by_one(
    factory: SessionFactory, example_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_args: object, **_kwargs: object) -> list[int]:
        raise RuntimeError("joint write failed")

    monkeypatch.setattr(wlimport, "create_new_items", fail)

    report = import_paths([example_folder], factory, batch_size=4)

    assert (report.created, report.updated, report.failures) == (10, 0, [])
    assert _count(factory, ScheduledProcedureStep) == 10


def test_a_refused_update_leaves_the_other_updates_of_its_batch(
    factory: SessionFactory, example_folder: Path
) -> None:
    import_paths([example_folder], factory)
    moved = dcmread(example_folder / "wklist2.wl")
    moved.PatientID = "SOMEONE-ELSE"  # the same Study Instance UID for another patient
    moved.save_as(example_folder / "wklist2.wl")

    report = import_paths([example_folder], factory)  # the updates: one batch, then one by one

    assert (report.created, report.updated) == (0, 9)
    assert [f.path.name for f in report.failures] == ["wklist2.wl"]
    assert "belongs to another patient" in report.failures[0].reason
    assert (_count(factory, ScheduledProcedureStep), _count(factory, Patient)) == (10, 4)


def test_the_command_prints_a_summary_with_refused_files_by_reason(
    sqlite_url: str,
    example_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(5):
        (example_folder / f"garbage{n}.wl").write_bytes(b"this is not a DICOM file\n" * 10)
    monkeypatch.chdir(example_folder)  # no stray .env
    monkeypatch.setenv("BROKER_DATABASE_URL", sqlite_url)

    assert main(["import-wl", str(example_folder)]) == 1
    first = capsys.readouterr()
    assert main(["import-wl", str(example_folder)]) == 1
    again = capsys.readouterr()

    assert "imported 10 worklist file(s): 10 new, 0 updated; 5 refused" in first.out
    assert "imported 10 worklist file(s): 0 new, 10 updated; 5 refused" in again.out
    (line,) = [ln for ln in first.err.splitlines() if ln.startswith("refused")]
    assert line.startswith("refused 5: not a DICOM data set") and "and 2 more" in line
