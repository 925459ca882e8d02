/* The schedule board: one day of exams by station, as a list or a timeline; details, editing,
   and live updates over server-sent events. All data comes from the REST API. */
"use strict";

(() => {
  const { api, el, me, canEdit, personName, dicomDate, dicomTime, fromIsoDate, fromIsoTime } = MWL;
  const $ = (id) => document.getElementById(id);

  const STATUSES = ["SCHEDULED", "ARRIVED", "READY", "STARTED", "DEPARTED", "COMPLETED", "DISCONTINUED", "CANCELED"];
  const FINAL = new Set(["COMPLETED", "DISCONTINUED", "CANCELED"]);
  const STATUS_LABEL = {
    SCHEDULED: "Scheduled", ARRIVED: "Arrived", READY: "Ready", STARTED: "Started",
    DEPARTED: "Departed", COMPLETED: "Completed", DISCONTINUED: "Discontinued", CANCELED: "Canceled",
  };
  const ENTITY_LABEL = { scheduled_procedure_step: "step", requested_procedure: "procedure", mpps: "MPPS" };
  const ACTION_LABEL = { create: "Created", update: "Changed", status: "Status of", cancel: "Canceled", delete: "Deleted", link: "Linked", images_received: "Images received for", study_linked: "Study linked to" };
  const SLOT_MINUTES = 30; // a step has a start, not a length: blocks are drawn this long
  const HOUR_PX = 130; // the narrowest an hour of the timeline gets (it scrolls sideways beyond)

  const state = {
    day: "", modality: "", station: "", q: "", view: "list",
    rows: [], stations: [], openStep: null, loaded: false,
  };

  /* ---------------------------------------------------------------- URL and controls */

  function todayDicom() {
    const d = new Date();
    return `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, "0")}${String(d.getDate()).padStart(2, "0")}`;
  }
  function shiftDay(day, delta) {
    const d = new Date(+day.slice(0, 4), +day.slice(4, 6) - 1, +day.slice(6, 8) + delta);
    return `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, "0")}${String(d.getDate()).padStart(2, "0")}`;
  }
  function readUrl() {
    const p = new URLSearchParams(location.search);
    const day = p.get("date") || "";
    state.day = /^\d{8}$/.test(day) ? day : todayDicom();
    state.modality = p.get("modality") || "";
    state.station = p.get("station") || "";
    state.q = p.get("q") || "";
    state.view = p.get("view") === "timeline" ? "timeline" : "list";
    const step = parseInt(p.get("step") || "", 10);
    state.openStep = Number.isFinite(step) ? step : null;
  }
  function writeUrl() {
    const p = new URLSearchParams();
    p.set("date", state.day);
    if (state.modality) p.set("modality", state.modality);
    if (state.station) p.set("station", state.station);
    if (state.q) p.set("q", state.q);
    if (state.view !== "list") p.set("view", state.view);
    if (state.openStep !== null) p.set("step", String(state.openStep));
    history.replaceState(null, "", "?" + p.toString());
  }
  function syncControls() {
    $("day").value = dicomDate(state.day);
    $("f-q").value = state.q;
    $("view-list").setAttribute("aria-pressed", String(state.view === "list"));
    $("view-timeline").setAttribute("aria-pressed", String(state.view === "timeline"));
    $("list").hidden = state.view !== "list";
    $("timeline").hidden = state.view !== "timeline";
  }
  function fillSelect(select, values, current, allLabel) {
    const keep = current && !values.includes(current) ? [current] : [];
    select.replaceChildren(
      ...(allLabel ? [el("option", { value: "" }, allLabel)] : []),
      ...[...values, ...keep].map((v) => el("option", { value: v, selected: v === current }, v)),
    );
    select.value = current || (allLabel ? "" : values[0] || "");
  }
  function refreshFilterOptions() {
    const modalities = new Set(state.stations.map((s) => s.modality));
    const titles = new Set(state.stations.map((s) => s.ae_title));
    for (const row of state.rows) {
      modalities.add(row.modality);
      row.station_ae_titles.forEach((t) => titles.add(t));
    }
    fillSelect($("f-modality"), [...modalities].sort(), state.modality, "All");
    fillSelect($("f-station"), [...titles].sort(), state.station, "All");
    const datalist = $("modality-options");
    if (datalist) datalist.replaceChildren(...[...modalities].sort().map((m) => el("option", { value: m })));
  }

  /* ---------------------------------------------------------------- loading */

  let loadSeq = 0;
  async function load() {
    const seq = ++loadSeq;
    const p = new URLSearchParams({ date: state.day });
    if (state.modality) p.set("modality", state.modality);
    if (state.station) p.set("station", state.station);
    if (state.q) p.set("q", state.q);
    const result = await api("GET", "/api/board?" + p.toString());
    if (seq !== loadSeq) return; // a newer request is on its way
    const banner = $("board-error");
    if (!result.ok) {
      banner.textContent = `The schedule could not be loaded: ${(result.data && result.data.detail) || "the broker answered " + result.status}.`;
      banner.hidden = false;
      return;
    }
    banner.hidden = true;
    state.rows = result.data;
    state.loaded = true;
    render();
  }
  async function loadStations() {
    const result = await api("GET", "/api/stations");
    state.stations = result.ok ? result.data : [];
    if (state.loaded) render();
    else refreshFilterOptions();
  }

  /* ---------------------------------------------------------------- rendering */

  function badge(status) {
    return el("span", { class: `badge s-${status.toLowerCase()}`, dataset: { status } }, STATUS_LABEL[status] || status);
  }
  function imagesBadge(images) {
    if (!images || !images.instances) return null;
    const text = `${images.instances} image${images.instances === 1 ? "" : "s"} in ${images.series} series`;
    return el("span", { class: "images-badge", dataset: { images: String(images.instances) }, title: `Images received: ${text}`, "aria-label": `Images received: ${text}` },
      `${images.instances} img · ${images.series} ser`);
  }
  function stationKey(row) {
    return row.station_ae_titles.join(", ") || "No station";
  }
  function stationName(row) {
    if (row.station_name) return row.station_name;
    const known = state.stations.find((s) => s.ae_title === row.station_ae_titles[0] && s.station_name);
    return known ? known.station_name : "";
  }
  function groups() {
    const map = new Map();
    for (const row of state.rows) {
      const key = stationKey(row);
      if (!map.has(key)) map.set(key, []);
      map.get(key).push(row);
    }
    return [...map.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  }

  function render() {
    const date = new Date(+state.day.slice(0, 4), +state.day.slice(4, 6) - 1, +state.day.slice(6, 8));
    const title = date.toLocaleDateString(undefined, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
    $("day-title").textContent = (state.day === todayDicom() ? "Today · " : "") + title;
    const counts = {};
    for (const row of state.rows) counts[row.status] = (counts[row.status] || 0) + 1;
    const summary = $("day-summary");
    summary.replaceChildren(
      el("span", { class: "summary-total" }, `${state.rows.length} exam${state.rows.length === 1 ? "" : "s"}`),
      ...STATUSES.filter((s) => counts[s]).map((s) => el("span", { class: "summary-item" }, badge(s), ` ${counts[s]}`)),
    );
    const filtered = Boolean(state.modality || state.station || state.q);
    $("empty").hidden = state.rows.length > 0;
    $("empty-filtered").hidden = !filtered;
    refreshFilterOptions();
    renderList();
    renderTimeline();
  }

  function actionButtons(row) {
    const details = el("button", { type: "button", class: "btn btn-small", "data-action": "details", "aria-label": `Details of ${personName(row.patient_name)} at ${dicomTime(row.start_time)}` }, "Details");
    if (!canEdit() || FINAL.has(row.status)) return [details];
    return [
      details,
      el("button", { type: "button", class: "btn btn-small", "data-action": "edit", "aria-label": `Reschedule ${personName(row.patient_name)} at ${dicomTime(row.start_time)}` }, "Reschedule"),
      el("button", { type: "button", class: "btn btn-small btn-danger-quiet", "data-action": "cancel", "aria-label": `Cancel the order of ${personName(row.patient_name)} at ${dicomTime(row.start_time)}` }, "Cancel"),
    ];
  }

  function renderList() {
    const list = $("list");
    const sections = groups().map(([key, rows]) => {
      const active = rows.filter((r) => r.status === "STARTED").length;
      return el("section", { class: "station" },
        el("h2", { class: "station-head" },
          el("span", { class: "station-name" }, key),
          stationName(rows[0]) ? el("span", { class: "station-sub" }, stationName(rows[0])) : null,
          el("span", { class: "station-count" }, `${rows.length} exam${rows.length === 1 ? "" : "s"}${active ? ` · ${active} running` : ""}`)),
        el("table", { class: "steps" },
          el("thead", {}, el("tr", {},
            el("th", { scope: "col", class: "c-time" }, "Time"),
            el("th", { scope: "col" }, "Patient"),
            el("th", { scope: "col" }, "Procedure"),
            el("th", { scope: "col", class: "c-acc" }, "Accession"),
            el("th", { scope: "col", class: "c-mod" }, "Modality"),
            el("th", { scope: "col", class: "c-status" }, "Status"),
            el("th", { scope: "col", class: "c-actions" }, el("span", { class: "sr-only" }, "Actions")))),
          el("tbody", {}, rows.map((row) => el("tr", {
            class: `step-row${FINAL.has(row.status) ? " is-final" : ""}${row.step_id === state.openStep ? " is-open" : ""}`,
            dataset: { stepId: String(row.step_id), status: row.status },
          },
            el("td", { class: "c-time" }, el("span", { class: "time" }, dicomTime(row.start_time))),
            el("td", { class: "c-patient" },
              el("span", { class: "pname" }, personName(row.patient_name)),
              el("span", { class: "pmeta" }, `ID ${row.patient_id}${row.birth_date ? " · " + dicomDate(row.birth_date) : ""}${row.sex ? " · " + row.sex : ""}`)),
            el("td", { class: "c-proc" },
              el("span", {}, row.procedure_description || row.description || "—"),
              row.description && row.description !== row.procedure_description ? el("span", { class: "pmeta" }, row.description) : null),
            el("td", { class: "c-acc mono" }, row.accession_number || "—"),
            el("td", { class: "c-mod" }, row.modality),
            el("td", { class: "c-status" }, badge(row.status), imagesBadge(row.images)),
            el("td", { class: "c-actions" }, el("div", { class: "row-actions" }, actionButtons(row))))))));
    });
    list.replaceChildren(...sections);
  }

  function minutesOf(time) {
    return parseInt(time.slice(0, 2), 10) * 60 + parseInt(time.slice(2, 4) || "0", 10);
  }

  function renderTimeline() {
    const box = $("timeline");
    if (!state.rows.length) { box.replaceChildren(); return; }
    const starts = state.rows.map((r) => minutesOf(r.start_time));
    // From the first exam's hour to the end of the last one, at least a working day's 8 hours.
    const from = Math.floor(Math.min(...starts) / 60) * 60;
    const to = Math.min(24 * 60, Math.max(from + 8 * 60, Math.ceil((Math.max(...starts) + SLOT_MINUTES) / 60) * 60));
    const span = to - from;
    const pct = (m) => `${((m - from) / span) * 100}%`;
    const hours = [];
    for (let m = from; m < to; m += 60) hours.push(m);

    const scale = el("div", { class: "tl-row tl-scale", "aria-hidden": "true" },
      el("div", { class: "tl-label" }),
      el("div", { class: "tl-track" }, hours.map((m) => {
        const tick = el("span", { class: "tl-hour" }, `${String(m / 60).padStart(2, "0")}:00`);
        tick.style.left = pct(m);
        return tick;
      })));

    const rows = groups().map(([key, rows]) => {
      // Lanes: a block that overlaps an earlier one at this station goes one lane down.
      const laneEnds = [];
      const blocks = rows.map((row) => {
        const start = minutesOf(row.start_time);
        let lane = laneEnds.findIndex((end) => end <= start);
        if (lane < 0) { lane = laneEnds.length; laneEnds.push(0); }
        laneEnds[lane] = start + SLOT_MINUTES;
        const block = el("button", {
          type: "button",
          class: `tl-block s-${row.status.toLowerCase()}`,
          dataset: { stepId: String(row.step_id), status: row.status, action: "details" },
          title: `${dicomTime(row.start_time)} ${personName(row.patient_name)} · ${row.procedure_description || row.description} · ${STATUS_LABEL[row.status]}`,
          "aria-label": `${dicomTime(row.start_time)}, ${personName(row.patient_name)}, ${row.procedure_description || row.description}, ${STATUS_LABEL[row.status]}`,
        },
          el("span", { class: "tl-time" }, dicomTime(row.start_time)),
          el("span", { class: "tl-name" }, (row.patient_name.split("^")[0] || "").trim()),
          el("span", { class: "tl-status" }, STATUS_LABEL[row.status]));
        block.style.left = pct(start);
        block.style.width = `calc(${(SLOT_MINUTES / span) * 100}% - 2px)`;
        block.style.top = `calc(${lane} * var(--lane-h) + 4px)`;
        return block;
      });
      const track = el("div", { class: "tl-track" }, hours.map((m) => {
        const line = el("span", { class: "tl-grid", "aria-hidden": "true" });
        line.style.left = pct(m);
        return line;
      }), blocks);
      track.style.height = `calc(${Math.max(1, laneEnds.length)} * var(--lane-h) + 8px)`;
      return el("div", { class: "tl-row", role: "group", "aria-label": `Station ${key}` },
        el("div", { class: "tl-label" }, el("strong", {}, key), el("span", { class: "pmeta" }, stationName(rows[0]) || `${rows.length} exam${rows.length === 1 ? "" : "s"}`)),
        track);
    });

    const now = new Date();
    box.style.setProperty("--track-min", `${(span / 60) * HOUR_PX}px`);
    box.replaceChildren(scale, ...rows);
    if (state.day === todayDicom()) {
      const m = now.getHours() * 60 + now.getMinutes();
      if (m >= from && m <= to) {
        for (const track of box.querySelectorAll(".tl-row:not(.tl-scale) .tl-track")) {
          const line = el("span", { class: "tl-now", "aria-hidden": "true" });
          line.style.left = pct(m);
          track.append(line);
        }
      }
    }
  }

  /* ---------------------------------------------------------------- details panel */

  function rowById(id) {
    return state.rows.find((r) => r.step_id === id) || null;
  }

  const dicomDateTime = (dt) => `${dicomDate(dt.slice(0, 8))} ${dicomTime(dt.slice(8))}`.trim();

  function dl(pairs) {
    return el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }
  function section(title, ...content) {
    return el("section", { class: "drawer-section" }, el("h3", {}, title), ...content);
  }
  function emptyNote(text) {
    return el("p", { class: "muted" }, text);
  }
  function changeList(before, after) {
    const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])];
    if (!keys.length) return null;
    const empty = (v) => v === undefined || v === null || v === "";
    const fmt = (v) => (empty(v) ? "∅" : typeof v === "object" ? JSON.stringify(v) : String(v));
    if (!before || !Object.keys(before).length) {
      // A creation: the values it was made with, on one line.
      const set = keys.filter((k) => !empty(after[k]));
      return el("p", { class: "created" }, set.map((k, i) => [i ? " · " : "", el("span", { class: "ck" }, k), " ", fmt(after[k])]));
    }
    return el("ul", { class: "changes" }, keys.map((k) => el("li", {},
      el("span", { class: "ck" }, k), " ", el("del", { class: "cb" }, fmt(before[k])), " → ", el("ins", { class: "ca" }, fmt(after ? after[k] : undefined)))));
  }

  /* What else an audit row says: its context (message, association) and detail (reason...). */
  function extras(h) {
    const parts = [];
    const add = (value) => {
      if (!value) return;
      if (typeof value === "string") { parts.push(value); return; }
      for (const [k, v] of Object.entries(value)) {
        if (v === "" || v === null || v === undefined) continue;
        parts.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
      }
    };
    if (h.context) parts.push(h.source === "HL7" ? `message ${h.context}` : h.context);
    add(h.detail);
    return parts.length ? el("div", { class: "pmeta" }, parts.join(" · ")) : null;
  }

  async function fetchDetails(stepId) {
    const details = await api("GET", `/api/steps/${stepId}/details`);
    if (details.ok && details.data) return details.data;
    // Before the details endpoint exists: the step and its order, without history.
    const step = await api("GET", `/api/steps/${stepId}`);
    if (!step.ok) return null;
    const row = rowById(stepId);
    let order = null;
    if (row) {
      const got = await api("GET", `/api/orders/${row.order_id}`);
      if (got.ok) order = got.data;
    }
    return { step: step.data, order, history: null, mpps: null, hl7_messages: null };
  }

  let detailsSeq = 0;
  async function openDetails(stepId, { focus = true } = {}) {
    const dialog = $("details");
    state.openStep = stepId;
    writeUrl();
    markOpenRow();
    if (focus) MWL.openDialog(dialog);
    else if (!dialog.open) dialog.showModal();
    const seq = ++detailsSeq;
    const [data, unlinked] = await Promise.all([fetchDetails(stepId), fetchUnlinked()]);
    if (seq !== detailsSeq || state.openStep !== stepId) return;
    if (data) data.unlinked = unlinked;
    renderDetails(stepId, data);
  }

  /* Studies the Storage SCP could not match to an order: a scheduler links one to the open exam. */
  async function fetchUnlinked() {
    if (!canEdit()) return [];
    const found = await api("GET", "/api/studies?unlinked=true&limit=20");
    return found.ok && Array.isArray(found.data) ? found.data : [];
  }
  async function linkStudy(studyId, stepId) {
    const done = await api("POST", `/api/studies/${studyId}/link`, { step_id: stepId });
    if (!done.ok) {
      MWL.toast(`The study could not be linked: ${(done.data && done.data.detail) || done.status}`, "error");
      return;
    }
    MWL.toast("Study linked to this exam.");
    load();
    openDetails(stepId, { focus: false });
  }
  function unlinkedSection(stepId, studies) {
    if (!studies || !studies.length) return null;
    return section("Unlinked studies", el("ul", { class: "events unlinked-studies" }, studies.map((st) => el("li", {},
      el("strong", {}, `${personName(st.patient_name) || "?"} · ID ${st.patient_id || "?"}`), " ",
      el("span", {}, [st.accession_number && `Acc. ${st.accession_number}`, st.study_date && dicomDate(st.study_date), `${st.instances} image${st.instances === 1 ? "" : "s"}`].filter(Boolean).join(" · ")),
      el("div", { class: "mono wrap pmeta" }, st.study_instance_uid),
      el("button", { type: "button", class: "btn btn-small", "data-study-id": String(st.id), onclick: () => linkStudy(st.id, stepId) }, "Link to this exam")))));
  }

  function renderDetails(stepId, data) {
    const body = $("details-body");
    if (!data) {
      $("details-title").textContent = "Exam not found";
      body.replaceChildren(emptyNote("This exam no longer exists."));
      return;
    }
    const step = data.step;
    const order = data.order;
    const patient = order && order.patient;
    const procedure = order && order.procedures.find((p) => p.steps.some((s) => s.id === step.id));
    $("details-title").textContent = `${dicomTime(step.start_time)} · ${patient ? personName(patient.name) : "Exam"}`;
    const editable = canEdit() && !FINAL.has(step.status);
    for (const id of ["details-edit", "details-cancel"]) {
      const button = $(id);
      if (button) button.hidden = !editable;
    }
    const parts = [
      el("div", { class: "drawer-status" }, badge(step.status), el("span", { class: "muted" }, `updated ${MWL.dateTime(step.updated_at)}`)),
      section("Patient", patient ? dl([
        ["Name", personName(patient.name)],
        ["Patient ID", patient.patient_id + (patient.issuer_of_patient_id ? ` (${patient.issuer_of_patient_id})` : "")],
        ["Birth date", dicomDate(patient.birth_date)],
        ["Sex", patient.sex],
      ]) : emptyNote("Not available.")),
      section("Exam", dl([
        ["Date and time", `${dicomDate(step.start_date)} ${dicomTime(step.start_time)}`],
        ["Station", step.station_ae_titles.join(", ") + (step.station_name ? ` (${step.station_name})` : "")],
        ["Modality", step.modality],
        ["Step", step.description],
        ["SPS ID", step.sps_id],
        ["Performing physician", personName(step.performing_physician)],
        ["Location", step.location],
      ])),
      section("Order", order ? dl([
        ["Accession number", order.accession_number],
        ["Procedure", procedure ? procedure.description : ""],
        ["Requested procedure ID", procedure ? procedure.requested_procedure_id : ""],
        ["Priority", procedure ? procedure.priority : ""],
        ["Study Instance UID", procedure ? el("span", { class: "mono wrap" }, procedure.study_instance_uid) : ""],
        ["Placer / filler order", [order.placer_order_number, order.filler_order_number].filter(Boolean).join(" / ")],
        ["Requesting physician", personName(order.requesting_physician)],
        ["Referring physician", personName(order.referring_physician_name)],
        ["Created", MWL.dateTime(order.created_at)],
      ]) : emptyNote("Not available.")),
      section("Performed (MPPS)", data.mpps === null ? emptyNote("Not available from this broker version.")
        : !data.mpps.length ? emptyNote("No MPPS received for this exam.")
        : el("ul", { class: "events" }, data.mpps.map((m) => el("li", {},
          el("strong", {}, m.status), " ",
          el("span", {}, [m.performed_station_ae_title, m.start_datetime && `from ${dicomDateTime(m.start_datetime)}`, m.end_datetime && `to ${dicomDateTime(m.end_datetime)}`].filter(Boolean).join(" ")),
          el("div", { class: "mono wrap pmeta" }, m.sop_instance_uid))))),
      section("Images received", !data.studies ? emptyNote("Not available from this broker version.")
        : !data.studies.length ? emptyNote("No images received for this exam.")
        : el("ul", { class: "events images-received" }, data.studies.map((st) => el("li", {},
          el("strong", {}, `${st.series.length} series · ${st.instances} image${st.instances === 1 ? "" : "s"}`), " ",
          el("span", {}, st.last_received_at ? `last ${MWL.dateTime(st.last_received_at)}` : ""),
          el("div", { class: "mono wrap pmeta" }, st.study_instance_uid),
          el("ul", { class: "series" }, st.series.map((se) => el("li", { class: "pmeta" },
            `${se.modality || "?"} ${se.series_number ? "#" + se.series_number : ""} ${se.series_description || ""} · ${se.instances}`))))))),
      unlinkedSection(stepId, data.unlinked),
      section("HL7 messages", data.hl7_messages === null ? emptyNote("Not available from this broker version.")
        : !data.hl7_messages.length ? emptyNote("No HL7 message behind this exam.")
        : el("table", { class: "mini" },
          el("thead", {}, el("tr", {}, ["Received", "Type", "Control ID", "From", "Outcome"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, data.hl7_messages.map((m) => el("tr", {},
            el("td", {}, MWL.dateTime(m.received_at)), el("td", {}, m.message_type),
            el("td", { class: "mono" }, m.control_id), el("td", {}, m.sending_application),
            el("td", {}, el("span", { class: `ack ack-${(m.outcome || "").toLowerCase()}` }, m.outcome))))))),
      section("History", data.history === null ? emptyNote("Not available from this broker version.")
        : !data.history.length ? emptyNote("No changes recorded.")
        : el("ol", { class: "events history" }, data.history.map((h) => el("li", {},
          el("div", { class: "ev-head" },
            el("strong", {}, `${ACTION_LABEL[h.action] || h.action} ${ENTITY_LABEL[h.entity] || h.entity.replaceAll("_", " ")}`),
            el("span", { class: "src" }, [h.source, h.actor].filter(Boolean).join(" · ")),
            el("time", { datetime: h.at }, MWL.dateTime(h.at))),
          changeList(h.before, h.after),
          extras(h))))),
    ];
    body.replaceChildren(...parts.filter(Boolean));
  }

  function markOpenRow() {
    document.querySelectorAll(".step-row.is-open").forEach((r) => r.classList.remove("is-open"));
    if (state.openStep === null) return;
    const row = document.querySelector(`.step-row[data-step-id="${state.openStep}"]`);
    if (row) row.classList.add("is-open");
  }

  /* ---------------------------------------------------------------- editing */

  function stationOptions(select, current, modality) {
    const titles = state.stations
      .filter((s) => !modality || s.modality === modality)
      .map((s) => s.ae_title);
    const all = [...new Set(titles.length ? titles : state.stations.map((s) => s.ae_title))].sort();
    if (current && !all.includes(current)) all.unshift(current);
    select.replaceChildren(
      el("option", { value: "" }, all.length ? "Choose a station" : "No stations configured"),
      ...all.map((t) => {
        const st = state.stations.find((s) => s.ae_title === t);
        return el("option", { value: t }, st && st.station_name ? `${t} — ${st.station_name}` : t);
      }),
    );
    select.value = current || "";
  }

  // --- new order
  let chosenPatient = null;
  function patientMode() {
    return document.querySelector('input[name="patient_mode"]:checked').value;
  }
  function setPatientMode(mode) {
    $("patient-existing").hidden = mode !== "existing";
    $("patient-new").hidden = mode !== "new";
  }
  function choosePatient(p) {
    chosenPatient = p;
    const chosen = $("patient-chosen");
    chosen.hidden = !p;
    $("patient-search-field").hidden = Boolean(p);
    chosen.replaceChildren();
    if (p) {
      chosen.append(
        el("span", {}, el("strong", {}, personName(p.name)), ` · ID ${p.patient_id}${p.birth_date ? " · " + dicomDate(p.birth_date) : ""}`),
        el("button", { type: "button", class: "btn btn-small", "aria-label": "Choose another patient", onclick: () => { choosePatient(null); $("patient-search").focus(); } }, "Change"));
      $("patient-results").replaceChildren();
      $("patient-search").value = "";
    }
  }
  let searchSeq = 0;
  async function searchPatients(text) {
    const seq = ++searchSeq;
    const list = $("patient-results");
    if (text.trim().length < 2) { list.replaceChildren(); return; }
    const term = text.trim().replace(/[*?]/g, "");
    const [byName, byId] = await Promise.all([
      api("GET", `/api/patients?limit=10&name=${encodeURIComponent("*" + term.replace(/[\s,]+/g, "*") + "*")}`),
      api("GET", `/api/patients?limit=10&patient_id=${encodeURIComponent(term + "*")}`),
    ]);
    if (seq !== searchSeq) return;
    const seen = new Set();
    const found = [...(byId.ok ? byId.data : []), ...(byName.ok ? byName.data : [])].filter((p) => !seen.has(p.id) && seen.add(p.id));
    list.replaceChildren(...(found.length ? found.map((p) => el("li", {},
      el("button", { type: "button", class: "pick", onclick: () => choosePatient(p) },
        el("strong", {}, personName(p.name)), ` · ID ${p.patient_id}${p.birth_date ? " · " + dicomDate(p.birth_date) : ""}${p.sex ? " · " + p.sex : ""}`)))
      : [el("li", { class: "muted" }, "No patient found. Choose “New patient” to add one.")]));
  }

  function openOrderForm() {
    const form = $("order-form");
    form.reset();
    MWL.clearErrors(form);
    choosePatient(null);
    $("patient-results").replaceChildren();
    setPatientMode("existing");
    $("o-date").value = dicomDate(state.day);
    const modality = state.modality || "";
    $("o-modality").value = modality;
    stationOptions($("o-station"), state.station, modality);
    MWL.openDialog($("order-dialog"));
    $("patient-search").focus();
  }

  async function submitOrder(event) {
    event.preventDefault();
    const form = $("order-form");
    MWL.clearErrors(form);
    let patient;
    if (patientMode() === "existing") {
      if (!chosenPatient) {
        const slot = form.querySelector('[data-error-for="patient"]');
        slot.textContent = "Pick a patient from the list, or choose “New patient”.";
        $("patient-search").setAttribute("aria-invalid", "true");
        $("patient-search").focus();
        return;
      }
      const p = chosenPatient;
      patient = { patient_id: p.patient_id, issuer_of_patient_id: p.issuer_of_patient_id, name: p.name, birth_date: p.birth_date, sex: p.sex };
    } else {
      const family = $("np-family").value.trim();
      const given = $("np-given").value.trim();
      patient = {
        patient_id: $("np-id").value.trim(),
        name: given ? `${family}^${given}` : family,
        birth_date: fromIsoDate($("np-birth").value),
        sex: $("np-sex").value,
      };
    }
    const station = $("o-station").value;
    const body = {
      accession_number: $("o-accession").value.trim(),
      patient,
      procedures: [{
        description: $("o-procedure").value.trim(),
        steps: [{
          station_ae_titles: station ? [station] : [],
          start_date: fromIsoDate($("o-date").value),
          start_time: fromIsoTime($("o-time").value),
          modality: $("o-modality").value.trim().toUpperCase(),
          description: $("o-procedure").value.trim(),
        }],
      }],
    };
    const missing = [];
    if (!body.procedures[0].description) missing.push(["procedures.description", "Enter the procedure."]);
    if (!body.procedures[0].steps[0].modality) missing.push(["procedures.steps.modality", "Enter the modality."]);
    if (!station) missing.push(["procedures.steps.station_ae_titles", "Choose a station."]);
    if (!body.procedures[0].steps[0].start_date) missing.push(["procedures.steps.start_date", "Enter the date."]);
    if (!body.procedures[0].steps[0].start_time) missing.push(["procedures.steps.start_time", "Enter the time."]);
    if (patientMode() === "new") {
      if (!patient.patient_id) missing.push(["patient.patient_id", "Enter the patient ID."]);
      if (!$("np-family").value.trim()) missing.push(["patient.name", "Enter the family name."]);
    }
    if (missing.length) {
      MWL.showErrors(form, { status: 422, data: { detail: missing.map(([path, msg]) => ({ loc: ["body", ...path.split(".")], msg })) } });
      return;
    }
    const submit = form.querySelector('[type="submit"]');
    submit.disabled = true;
    const result = await api("POST", "/api/orders", body);
    submit.disabled = false;
    if (!result.ok) { MWL.showErrors(form, result); return; }
    $("order-dialog").close();
    const step = result.data.procedures[0].steps[0];
    MWL.toast(`Order for ${personName(result.data.patient.name)} at ${dicomTime(step.start_time)} is on the worklist.`);
    if (step.start_date !== state.day) {
      state.day = step.start_date;
      syncControls();
      writeUrl();
    }
    await load();
  }

  // --- reschedule
  let editing = null;
  function openEdit(stepId) {
    const row = rowById(stepId);
    if (!row) return;
    editing = row;
    const form = $("edit-form");
    form.reset();
    MWL.clearErrors(form);
    $("edit-summary").textContent = `${personName(row.patient_name)} · ${row.procedure_description || row.description} · ${row.modality}`;
    $("e-date").value = dicomDate(row.start_date);
    $("e-time").value = dicomTime(row.start_time);
    stationOptions($("e-station"), row.station_ae_titles[0] || "", row.modality);
    MWL.openDialog($("edit-dialog"));
    $("e-date").focus();
  }
  async function submitEdit(event) {
    event.preventDefault();
    const form = $("edit-form");
    const station = $("e-station").value;
    const body = { start_date: fromIsoDate($("e-date").value), start_time: fromIsoTime($("e-time").value) };
    if (station && station !== editing.station_ae_titles.join("\\")) body.station_ae_titles = [station];
    const result = await api("PATCH", `/api/steps/${editing.step_id}`, body);
    if (!result.ok) { MWL.showErrors(form, result); return; }
    $("edit-dialog").close();
    MWL.toast(`Moved to ${dicomDate(result.data.start_date)} ${dicomTime(result.data.start_time)} on ${result.data.station_ae_titles.join(", ")}.`);
    await load();
    if (state.openStep === editing.step_id && $("details").open) openDetails(editing.step_id, { focus: false });
  }

  // --- cancel
  let canceling = null;
  function openCancel(stepId) {
    const row = rowById(stepId);
    if (!row) return;
    canceling = row;
    const form = $("cancel-form");
    form.reset();
    MWL.clearErrors(form);
    $("cancel-summary").textContent = `Cancel ${row.procedure_description || row.description} for ${personName(row.patient_name)} at ${dicomTime(row.start_time)}? Every open step of accession ${row.accession_number || "(none)"} is canceled and leaves the worklist.`;
    MWL.openDialog($("cancel-dialog"));
    $("c-reason").focus();
  }
  async function submitCancel(event) {
    event.preventDefault();
    const form = $("cancel-form");
    const reason = $("c-reason").value.trim();
    if (!reason) {
      MWL.showErrors(form, { status: 422, data: { detail: "Give a reason: it is kept in the history.", field: "reason" } });
      return;
    }
    const result = await api("POST", `/api/orders/${canceling.order_id}/cancel`, { reason });
    if (!result.ok) { MWL.showErrors(form, result); return; }
    $("cancel-dialog").close();
    MWL.toast("Order canceled.");
    await load();
    if ($("details").open) openDetails(state.openStep, { focus: false });
  }

  /* ---------------------------------------------------------------- live updates */

  const live = $("live");
  function setLive(stateName, text) {
    if (!live) return;
    live.dataset.state = stateName;
    live.textContent = text;
  }
  let refreshTimer = null;
  function scheduleRefresh(stepId) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      load();
      if ($("details").open && state.openStep !== null && (stepId === null || stepId === state.openStep)) {
        openDetails(state.openStep, { focus: false });
      }
    }, 150);
  }
  let source = null;
  let retryTimer = null;
  let everConnected = false;
  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = new EventSource("/api/events");
    source.addEventListener("hello", () => {
      setLive("live", "Live");
      if (everConnected) scheduleRefresh(null); // changes may have happened while away
      everConnected = true;
    });
    source.addEventListener("change", (event) => {
      let change = {};
      try { change = JSON.parse(event.data); } catch (err) { /* ignore */ }
      const stepId = change.entity === "step" ? change.pk : null;
      if (stepId !== null && change.status) {
        // Patch the badge at once; the refetch then brings everything else.
        document.querySelectorAll(`[data-step-id="${stepId}"]`).forEach((node) => {
          node.dataset.status = change.status;
          const b = node.querySelector(".badge");
          if (b) b.replaceWith(badge(change.status));
        });
      }
      scheduleRefresh(change.entity === "step" ? stepId : null);
    });
    source.addEventListener("reload", () => scheduleRefresh(null));
    source.onerror = async () => {
      setLive("down", "Reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (the broker answered an error): check the session, then retry.
        const who = await api("GET", "/api/auth/me");
        if (who.status === 401) return;
        retryTimer = setTimeout(connect, 3000);
      }
    };
  }

  /* ---------------------------------------------------------------- wiring */

  function setDay(day) {
    state.day = day;
    syncControls();
    writeUrl();
    load();
  }
  let qTimer = null;
  function bind() {
    $("day-prev").addEventListener("click", () => setDay(shiftDay(state.day, -1)));
    $("day-next").addEventListener("click", () => setDay(shiftDay(state.day, 1)));
    $("day-today").addEventListener("click", () => setDay(todayDicom()));
    $("day").addEventListener("change", () => { const d = fromIsoDate($("day").value); if (/^\d{8}$/.test(d)) setDay(d); });
    $("f-modality").addEventListener("change", () => { state.modality = $("f-modality").value; writeUrl(); load(); });
    $("f-station").addEventListener("change", () => { state.station = $("f-station").value; writeUrl(); load(); });
    $("f-q").addEventListener("input", () => {
      clearTimeout(qTimer);
      qTimer = setTimeout(() => { state.q = $("f-q").value.trim(); writeUrl(); load(); }, 200);
    });
    for (const view of ["list", "timeline"]) {
      $(`view-${view}`).addEventListener("click", () => { state.view = view; syncControls(); writeUrl(); });
    }
    // Row and block buttons (delegated: the board is re-rendered on every change).
    document.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action]");
      const holder = event.target.closest("[data-step-id]");
      if (!holder) return;
      const stepId = parseInt(holder.dataset.stepId, 10);
      const action = button ? button.dataset.action : (holder.classList.contains("step-row") ? "details" : null);
      if (action === "details") openDetails(stepId);
      else if (action === "edit") openEdit(stepId);
      else if (action === "cancel") openCancel(stepId);
    });
    $("details").addEventListener("close", () => { state.openStep = null; writeUrl(); markOpenRow(); });
    if (canEdit() && $("new-order")) {
      $("new-order").addEventListener("click", openOrderForm);
      $("order-form").addEventListener("submit", submitOrder);
      $("edit-form").addEventListener("submit", submitEdit);
      $("cancel-form").addEventListener("submit", submitCancel);
      $("details-edit").addEventListener("click", () => { const id = state.openStep; $("details").close(); openEdit(id); });
      $("details-cancel").addEventListener("click", () => { const id = state.openStep; $("details").close(); openCancel(id); });
      document.querySelectorAll('input[name="patient_mode"]').forEach((r) => r.addEventListener("change", () => setPatientMode(patientMode())));
      let pTimer = null;
      $("patient-search").addEventListener("input", () => { clearTimeout(pTimer); const v = $("patient-search").value; pTimer = setTimeout(() => searchPatients(v), 200); });
      $("patient-search").addEventListener("keydown", (e) => {
        if (e.key === "ArrowDown") { const first = $("patient-results").querySelector("button"); if (first) { e.preventDefault(); first.focus(); } }
        if (e.key === "Enter") e.preventDefault();
      });
      $("patient-results").addEventListener("keydown", (e) => {
        const items = [...$("patient-results").querySelectorAll("button")];
        const i = items.indexOf(document.activeElement);
        if (e.key === "ArrowDown" && i < items.length - 1) { e.preventDefault(); items[i + 1].focus(); }
        if (e.key === "ArrowUp") { e.preventDefault(); (i > 0 ? items[i - 1] : $("patient-search")).focus(); }
      });
      $("o-modality").addEventListener("change", () => stationOptions($("o-station"), $("o-station").value, $("o-modality").value.trim().toUpperCase()));
    }
    // A change from elsewhere may have been missed while the tab slept: refetch on return.
    document.addEventListener("visibilitychange", () => { if (!document.hidden) scheduleRefresh(null); });
  }

  async function start() {
    readUrl();
    syncControls();
    bind();
    writeUrl();
    await Promise.all([loadStations(), load()]);
    if (state.openStep !== null) openDetails(state.openStep);
    connect();
  }

  start();
  window.MWLBoard = { state, load }; // for the browser tests and the console
})();
