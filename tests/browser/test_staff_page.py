"""The staff page in headless Chromium against the real broker: sign-in, the board, editing,
live MPPS status, roles and CSRF. Readiness is always polled (``expect``), never slept."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from app.runtime import Broker
from tests.support.mpps import n_create, n_set, ssas_item
from tests.support.settings import make_settings
from tests.support.storescp import c_store
from tests.support.studies import write_study
from tests.support.tools import findscu
from tests.support.web import DAY, WebBroker, order, sign_in

LIVE_TIMEOUT = 5_000  # ms; an event arrives well within a second, the margin is for slow CI


def post_order(web: WebBroker, **fields: Any) -> dict[str, Any]:
    with web.api() as api:
        answer = api.post("/api/orders", json=order(**fields))
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def row(page: Page, text: str) -> Any:
    return page.locator("tr.step-row", has_text=text)


def section(page: Page, title: str) -> Any:
    """A section of the details panel, by its heading."""
    heading = page.get_by_role("heading", name=title, exact=True)
    return page.locator("#details .drawer-section").filter(has=heading)


def test_sign_in_and_out(page: Page) -> None:
    page.goto("/api/board?date=" + DAY)
    assert "Not authenticated" in page.content() or "sign in" in page.content()
    sign_in(page, "alice")
    expect(page).to_have_url(re.compile(rf"/\?date={DAY}"))
    expect(page.locator(".who")).to_contain_text("alice")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_wrong_password_is_shown_on_the_form(page: Page) -> None:
    page.goto("/login")
    page.locator("#login-username").fill("alice")
    page.locator("#login-password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-form .form-error")).to_contain_text("wrong user name or password")


def test_create_order_is_on_the_board_and_the_worklist(
    page: Page, web: WebBroker, tmp_path: Path
) -> None:
    sign_in(page, "sam")
    page.get_by_role("button", name="+ New order").click()
    dialog = page.locator("#order-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("New patient", exact=True).check()
    dialog.get_by_label("Family name", exact=True).fill("WALKER")
    dialog.get_by_label("Given name", exact=True).fill("INGRID")
    dialog.get_by_label("Patient ID", exact=True).fill("WALKIN1")
    dialog.get_by_label("Birth date", exact=True).fill("1975-04-03")
    dialog.get_by_label("Procedure", exact=True).fill("CT HEAD W/O CONTRAST")
    dialog.get_by_label("Modality", exact=True).fill("CT")
    dialog.get_by_label("Station (AE title)", exact=True).select_option("CT02")
    expect(dialog.get_by_label("Date", exact=True)).to_have_value("2026-12-01")
    # A missing time is refused next to the field, and nothing is sent.
    dialog.get_by_role("button", name="Create order").click()
    expect(dialog.locator('[data-error-for="procedures.steps.start_time"]')).to_contain_text("time")
    dialog.get_by_label("Time", exact=True).fill("10:30")
    dialog.get_by_role("button", name="Create order").click()
    expect(dialog).to_be_hidden()

    created = row(page, "WALKER, INGRID")
    expect(created).to_contain_text("10:30")
    expect(created.locator(".badge")).to_have_text("Scheduled")
    expect(page.locator("section.station", has_text="CT02")).to_contain_text("WALKER, INGRID")

    found = findscu(
        web.dicom_port,
        "MWLBROKER",
        tmp_path / "find",
        keys=[
            "PatientName=WALKER*",
            "PatientID=",
            "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CT02",
            f"ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate={DAY}",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime=",
        ],
    )
    assert found.returncode == 0, found.output
    assert [(str(r.PatientName), r.PatientID) for r in found.responses] == [
        ("WALKER^INGRID", "WALKIN1")
    ]
    step = found.responses[0].ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepStartTime.startswith("1030")


def test_server_validation_errors_are_shown_next_to_the_field(page: Page, web: WebBroker) -> None:
    post_order(web, name="FIRST^ONE", patient_id="P-DUP", accession="DUP1")
    sign_in(page, "sam")
    page.get_by_role("button", name="+ New order").click()
    dialog = page.locator("#order-dialog")
    dialog.get_by_label("Find by name or patient ID", exact=True).fill("first")
    dialog.get_by_role("button", name=re.compile("FIRST, ONE")).click()
    expect(dialog.locator("#patient-chosen")).to_contain_text("P-DUP")
    dialog.get_by_label("Procedure", exact=True).fill("CT CHEST")
    dialog.get_by_label("Modality", exact=True).fill("CT")
    dialog.get_by_label("Station (AE title)", exact=True).select_option("CT01")
    dialog.get_by_label("Time", exact=True).fill("08:00")
    dialog.get_by_label("Accession number").fill("DUP1")
    dialog.get_by_role("button", name="Create order").click()
    error = dialog.locator('[data-error-for="accession_number"]')
    expect(error).to_contain_text("already used")
    expect(dialog.get_by_label("Accession number")).to_have_attribute("aria-invalid", "true")
    expect(dialog.get_by_label("Accession number")).to_be_focused()


@pytest.mark.parametrize(
    "web", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_mpps_turns_the_badge_started_then_completed_without_reload(
    page: Page, web: WebBroker
) -> None:
    created = post_order(web, name="MPPS^PATIENT", patient_id="P-MPPS", accession="ACC-MPPS")
    procedure = created["procedures"][0]
    step = procedure["steps"][0]
    sign_in(page, "vic")
    badge = row(page, "MPPS, PATIENT").locator(".badge")
    expect(badge).to_have_text("Scheduled")
    page.evaluate("window.__sameDocument = true")

    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", web.dicom_port, ae_title="MWLBROKER")
    assert assoc.is_established
    try:
        uid = "1.2.826.0.1.3680043.10.543.77"
        item = ssas_item(
            procedure["study_instance_uid"],
            "ACC-MPPS",
            procedure["requested_procedure_id"],
            step["sps_id"],
        )
        ds = n_create(item, PatientID="P-MPPS", PatientName="MPPS^PATIENT")
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        assert status.Status == 0
        expect(badge).to_have_text("Started", timeout=LIVE_TIMEOUT)
        status, _ = assoc.send_n_set(n_set("COMPLETED"), ModalityPerformedProcedureStep, uid)
        assert status.Status == 0
        expect(badge).to_have_text("Completed", timeout=LIVE_TIMEOUT)
    finally:
        assoc.release()
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


def test_reschedule_and_cancel(page: Page, web: WebBroker) -> None:
    created = post_order(web, name="MOVE^ME", patient_id="P-MOVE", accession="ACC-MOVE")
    step_id = created["procedures"][0]["steps"][0]["id"]
    sign_in(page, "sam")
    target = row(page, "MOVE, ME")
    target.get_by_role("button", name=re.compile("^Reschedule")).click()
    dialog = page.locator("#edit-dialog")
    dialog.get_by_label("Time", exact=True).fill("11:45")
    dialog.get_by_label("Station (AE title)", exact=True).select_option("CT02")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    moved = page.locator("section.station", has_text="CT02").locator("tr", has_text="MOVE, ME")
    expect(moved).to_contain_text("11:45")
    with web.api() as api:
        step = api.get(f"/api/steps/{step_id}").json()
    assert step["start_time"] == "114500" and step["station_ae_titles"] == ["CT02"]

    moved.get_by_role("button", name=re.compile("^Cancel")).click()
    dialog = page.locator("#cancel-dialog")
    dialog.get_by_role("button", name="Cancel order").click()
    expect(dialog.locator('[data-error-for="reason"]')).to_contain_text("reason")
    dialog.get_by_label("Reason", exact=True).fill("patient called: ill today")
    dialog.get_by_role("button", name="Cancel order").click()
    expect(dialog).to_be_hidden()
    expect(row(page, "MOVE, ME").locator(".badge")).to_have_text("Canceled")
    expect(row(page, "MOVE, ME").get_by_role("button", name=re.compile("^Cancel"))).to_have_count(0)
    with web.api() as api:
        assert api.get(f"/api/steps/{step_id}").json()["status"] == "CANCELED"


def test_details_panel_opens_and_closes_with_the_keyboard(page: Page, web: WebBroker) -> None:
    post_order(web, name="DETAIL^DORA", patient_id="P-DET", accession="ACC-DET")
    sign_in(page, "vic")
    button = row(page, "DETAIL, DORA").get_by_role("button", name=re.compile("^Details"))
    button.focus()
    page.keyboard.press("Enter")
    panel = page.locator("#details")
    expect(panel).to_be_visible()
    expect(section(page, "Patient")).to_contain_text("P-DET")
    expect(section(page, "Order")).to_contain_text("ACC-DET")
    expect(section(page, "History")).to_contain_text("Created order")
    expect(section(page, "History")).to_contain_text("token:browser-tests")
    expect(page).to_have_url(re.compile(r"step=\d+"))
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(button).to_be_focused()


def test_timeline_shows_a_block_per_step(page: Page, web: WebBroker) -> None:
    post_order(web, name="TIME^LINE", patient_id="P-TL", accession="ACC-TL", time="1315")
    sign_in(page, "vic")
    page.get_by_role("button", name="Timeline").click()
    block = page.locator(".tl-block", has_text="13:15")
    expect(block).to_be_visible()
    expect(block).to_have_class(re.compile("s-scheduled"))
    expect(page).to_have_url(re.compile("view=timeline"))


def test_a_viewer_has_no_edit_controls_and_the_api_refuses(page: Page, web: WebBroker) -> None:
    post_order(web, name="LOOK^ONLY", patient_id="P-VIEW", accession="ACC-VIEW")
    sign_in(page, "vic")
    expect(row(page, "LOOK, ONLY")).to_be_visible()
    expect(page.get_by_role("button", name="+ New order")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^(Reschedule|Cancel)"))).to_have_count(0)
    expect(page.locator("#order-dialog, #edit-dialog, #cancel-dialog")).to_have_count(0)
    status = page.evaluate(
        """async (body) => (await fetch("/api/orders", {
            method: "POST", body: JSON.stringify(body),
            headers: {"Content-Type": "application/json",
                      "X-CSRF-Token": document.body.dataset.csrf},
        })).status""",
        order(name="NOT^ALLOWED", patient_id="P-NO", accession="ACC-NO"),
    )
    assert status == 403
    page.goto("/admin")
    expect(page).to_have_url(re.compile(r"/\?|/$"))


def test_a_change_without_the_csrf_token_is_refused(page: Page, web: WebBroker) -> None:
    created = post_order(web, name="CSRF^TEST", patient_id="P-CSRF", accession="ACC-CSRF")
    sign_in(page, "sam")
    # A form post carries the session cookie but no token.
    answer = page.request.post(
        f"/api/orders/{created['id']}/cancel", form={"reason": "forged"}, fail_on_status_code=False
    )
    assert answer.status == 403
    status = page.evaluate(
        f"""async () => (await fetch("/api/orders/{created["id"]}/cancel", {{
            method: "POST", headers: {{"Content-Type": "application/json"}}, body: "{{}}",
        }})).status"""
    )
    assert status == 403
    with web.api() as api:
        steps = api.get(f"/api/orders/{created['id']}").json()["procedures"][0]["steps"]
    assert steps[0]["status"] == "SCHEDULED"


def test_admin_adds_a_user_and_a_token(page: Page) -> None:
    sign_in(page, "alice", path="/admin")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    form = page.locator("#user-form")
    form.get_by_label("User name", exact=True).fill("nina")
    form.get_by_label("Password", exact=True).fill("a long enough password")
    form.get_by_label("Role", exact=True).select_option("viewer")
    form.get_by_role("button", name="Add user").click()
    nina = page.locator("#users tr", has_text="nina")
    expect(nina).to_contain_text("active")
    nina.get_by_label("Role of nina", exact=True).select_option("scheduler")
    expect(page.locator("#toast")).to_contain_text("nina is now scheduler")
    nina.get_by_role("button", name="Deactivate").click()
    expect(nina).to_contain_text("deactivated")

    tokens = page.locator("#token-form")
    tokens.get_by_label("Name", exact=True).fill("ris")
    tokens.get_by_role("button", name="Make token").click()
    secret = page.locator("#new-secret-value")
    expect(secret).to_have_text(re.compile(r"^mwl_"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#tokens tr", has_text="ris").get_by_role("button", name="Revoke").click()
    expect(page.locator("#tokens tr", has_text="ris")).to_contain_text("revoked")


def test_the_page_recovers_by_itself_after_a_broker_restart(
    page: Page, web: WebBroker, sqlite_url: str, tmp_path: Path
) -> None:
    sign_in(page, "vic")
    page.evaluate("window.__sameDocument = true")
    port = web.broker.ports["http"]
    web.broker.stop()
    expect(page.locator("#live")).to_have_text("Reconnecting…")
    web.broker = Broker(make_settings(sqlite_url, tmp_path, http_port=port))
    web.broker.start()
    expect(page.locator("#live")).to_have_text("Live", timeout=LIVE_TIMEOUT * 3)
    post_order(web, name="BACK^AGAIN", patient_id="P-BACK", accession="ACC-BACK")
    expect(row(page, "BACK, AGAIN")).to_be_visible(timeout=LIVE_TIMEOUT)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


def test_images_received_show_on_the_row_and_in_the_details(
    page: Page, web: WebBroker, tmp_path: Path
) -> None:
    created = post_order(web, name="IMAGE^PATIENT", patient_id="P-IMG", accession="ACC-IMG")
    study_uid = created["procedures"][0]["study_instance_uid"]
    sign_in(page, "vic")
    images = row(page, "IMAGE, PATIENT").locator(".images-badge")
    expect(images).to_have_count(0)
    page.evaluate("window.__sameDocument = true")
    sent = write_study(
        tmp_path / "sent",
        study_uid=study_uid,
        series=((ExplicitVRLittleEndian, 2), (ExplicitVRLittleEndian, 1)),
        accession="ACC-IMG",
        patient_id="P-IMG",
    )
    assert c_store(web.dicom_port, *(s.path for s in sent)) == [0, 0, 0]
    expect(images).to_have_text("3 img · 2 ser", timeout=LIVE_TIMEOUT)
    expect(images).to_have_attribute("title", "Images received: 3 images in 2 series")
    row(page, "IMAGE, PATIENT").get_by_role("button", name="Details").click()
    received = section(page, "Images received")
    expect(received).to_contain_text("2 series · 3 images")
    expect(received).to_contain_text(study_uid)
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"


def test_a_scheduler_links_an_unlinked_study_to_the_open_exam(
    page: Page, web: WebBroker, tmp_path: Path
) -> None:
    post_order(web, name="LINK^ME", patient_id="P-LINK", accession="ACC-LINK")
    sent = write_study(
        tmp_path / "sent",
        series=((ExplicitVRLittleEndian, 1),),
        accession="FROM-ELSEWHERE",
        patient_id="P-OTHER",
    )
    assert c_store(web.dicom_port, sent[0].path) == [0]
    sign_in(page, "sam")
    row(page, "LINK, ME").get_by_role("button", name="Details").click()
    unlinked = section(page, "Unlinked studies")
    expect(unlinked).to_contain_text(sent[0].study_uid)
    unlinked.get_by_role("button", name="Link to this exam").click()
    expect(section(page, "Images received")).to_contain_text(sent[0].study_uid)
    expect(row(page, "LINK, ME").locator(".images-badge")).to_have_text("1 img · 1 ser")
    expect(section(page, "Unlinked studies")).to_have_count(0)
    with web.api() as api:
        assert api.get("/api/studies", params={"unlinked": True}).json() == []
