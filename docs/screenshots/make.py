"""Screenshots of the staff page for the README, at 1366×768, from a broker with a sample day.

Run with ``make screenshots``. Starts a broker in-process on free ports over a temporary SQLite
database, puts in a day of orders (REST), one order over HL7 (MLLP) and one exam's progress over
DICOM MPPS, then photographs the board, the timeline, the order form and a step's details with
Debian's Chromium (never a downloaded browser).
"""

from __future__ import annotations

import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]  # noqa: E402

from app.migrations import upgrade  # noqa: E402
from tests.support.mpps import n_create, ssas_item  # noqa: E402
from tests.support.sample_day import seed  # noqa: E402
from tests.support.web import (  # noqa: E402
    CHROMIUM_ARGS,
    VIEWPORT,
    chromium_or_skip,
    sign_in,
    start_web_broker,
)

OUT = ROOT / "docs" / "screenshots"
DAY = "20261201"
HL7_ORDER = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|MWLBROKER|RADIOLOGY|20261130170000||ORM^O01|RIS-58213|P|2.3.1",
        "PID|1||PAT2001^^^HOSP||HANSEN^INGRID||19690214|F",
        "PV1|1|O|RAD^101^2^HOSP",
        f"ORC|NW|PL2001^RIS|FL2001^RAD||SC||^^^{DAY}1100^^R||20261130170000|||5678^HOUSE^GREGORY",
        "OBR|1|PL2001^RIS|FL2001^RAD|CTCHEST^CT Chest^L||||||||||||5678^HOUSE^GREGORY"
        f"||ACC2001|RP2001|SPS2001||||CT|||^^^{DAY}1100^^R",
        "ZDS|1.2.826.0.1.3680043.10.543.2001^MWLBROKER^Application^DICOM",
    ]
)


def send_hl7(port: int, message: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\x0b" + message.encode() + b"\x1c\x0d")
        answer = b""
        while not answer.endswith(b"\x1c\x0d"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode(errors="replace")


def start_exam(dicom_port: int, study_uid: str, accession: str, rp_id: str, sps_id: str) -> None:
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", dicom_port, ae_title="MWLBROKER")
    assert assoc.is_established
    try:
        ds = n_create(
            ssas_item(study_uid, accession, rp_id, sps_id),
            PatientID="PAT2001",
            PatientName="HANSEN^INGRID",
            PatientBirthDate="19690214",
            PerformedProcedureStepStartDate=DAY,
            PerformedProcedureStepStartTime="110400",
            PerformedProcedureStepDescription="CT CHEST",
        )
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, study_uid + ".7")
        assert status.Status == 0, status
    finally:
        assoc.release()


def main() -> int:
    chromium = chromium_or_skip()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/screens.db"
        upgrade(url)
        web = start_web_broker(url, Path(tmp))
        try:
            with web.api() as api:
                seed(api, DAY)
                ack = send_hl7(web.broker.ports["hl7"], HL7_ORDER)
                assert "|AA|" in ack, ack
                step = next(
                    r
                    for r in api.get("/api/board", params={"date": DAY}).json()
                    if r["accession_number"] == "ACC2001"
                )
            start_exam(
                web.dicom_port,
                step["study_instance_uid"],
                "ACC2001",
                step["requested_procedure_id"],
                step["sps_id"],
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                context = browser.new_context(
                    base_url=web.base_url,
                    viewport=VIEWPORT,  # type: ignore[arg-type]
                    locale="en-GB",  # the page's own dates and times (native inputs follow the OS)
                )
                page = context.new_page()
                sign_in(page, "alice", path=f"/?date={DAY}")
                expect(page.locator("tr.step-row")).to_have_count(19)
                page.screenshot(path=str(OUT / "board.png"))

                page.get_by_role("button", name="Timeline").click()
                expect(page.locator(".tl-block")).to_have_count(19)
                page.screenshot(path=str(OUT / "timeline.png"))

                page.get_by_role("button", name="List").click()
                page.get_by_role("button", name="+ New order").click()
                dialog = page.locator("#order-dialog")
                dialog.get_by_label("Find by name or patient ID").fill("müller")
                dialog.get_by_role("button", name="MÜLLER, ANNA").first.click()
                dialog.get_by_label("Procedure", exact=True).fill("CT ABDOMEN WITH CONTRAST")
                dialog.get_by_label("Modality", exact=True).fill("CT")
                dialog.get_by_label("Station (AE title)").select_option("CT02")
                dialog.get_by_label("Time", exact=True).fill("15:30")
                dialog.get_by_label("Accession number").fill("ACC1002")
                dialog.get_by_role("button", name="Create order").click()
                expect(dialog.locator('[data-error-for="accession_number"]')).to_contain_text(
                    "already used"
                )
                page.screenshot(path=str(OUT / "order-form.png"))
                page.keyboard.press("Escape")

                page.locator("tr.step-row", has_text="HANSEN, INGRID").get_by_role(
                    "button", name="Details"
                ).first.click()
                panel = page.locator("#details")
                expect(panel.locator(".drawer-section", has_text="HL7 messages")).to_contain_text(
                    "RIS-58213"
                )
                # The panel's head stays; show what only the details have: MPPS, history, HL7.
                panel.locator(".drawer-section", has_text="Performed (MPPS)").evaluate(
                    "section => section.scrollIntoView({block: 'start'})"
                )
                page.screenshot(path=str(OUT / "step-details.png"))
                browser.close()
        finally:
            web.broker.stop()
    for name in ("board", "timeline", "order-form", "step-details"):
        print(OUT / f"{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
