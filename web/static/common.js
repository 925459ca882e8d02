/* Shared by every page: the API helper, field errors, dialogs, the toast, sign-out. */
"use strict";

const MWL = (() => {
  const body = document.body;
  const me = {
    name: body.dataset.user || "",
    role: body.dataset.role || "",
    csrf: body.dataset.csrf || "",
  };
  const RANK = { viewer: 1, scheduler: 2, admin: 3 };
  const canEdit = () => (RANK[me.role] || 0) >= RANK.scheduler;

  function toLogin() {
    const next = location.pathname + location.search;
    location.assign("/login?next=" + encodeURIComponent(next));
  }

  /* fetch JSON from the API: {ok, status, data}; a 401 sends the user to the sign-in page. */
  async function api(method, url, payload, { redirectOn401 = true } = {}) {
    const headers = { Accept: "application/json" };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && me.csrf) headers["X-CSRF-Token"] = me.csrf;
    let response;
    try {
      response = await fetch(url, {
        method,
        headers,
        credentials: "same-origin",
        cache: "no-store",
        body: payload === undefined ? undefined : JSON.stringify(payload),
      });
    } catch (err) {
      return { ok: false, status: 0, data: { detail: "The broker cannot be reached." } };
    }
    if (response.status === 401 && redirectOn401) {
      toLogin();
      return new Promise(() => {}); // the page is leaving
    }
    let data = null;
    const type = response.headers.get("content-type") || "";
    if (response.status !== 204 && type.includes("json")) {
      try { data = await response.json(); } catch (err) { data = null; }
    }
    return { ok: response.ok, status: response.status, data };
  }

  /* ---- field errors: pydantic's detail list (loc) or {detail, field} ---- */

  function apiPath(loc) {
    return (loc || []).filter((p) => typeof p === "string" && p !== "body").join(".");
  }

  function findField(form, path) {
    if (!path) return null;
    const last = path.split(".").pop();
    const fields = [...form.querySelectorAll("[data-api]")].filter((el) => !el.closest("[hidden]"));
    for (const candidate of [path, last]) {
      const hit = fields.find((el) => el.dataset.api.split(/\s+/).includes(candidate));
      if (hit) return hit;
    }
    return null;
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }

  function errorSlot(form, field) {
    const wrap = field && field.closest(".field");
    return (wrap && wrap.querySelector(".field-error")) || form.querySelector('[data-error-for="_form"]');
  }

  function showFieldError(form, field, message) {
    const slot = errorSlot(form, field);
    if (field) {
      field.setAttribute("aria-invalid", "true");
      if (slot && slot.id) field.setAttribute("aria-describedby", slot.id);
    }
    if (slot) slot.textContent = slot.textContent ? slot.textContent + " " + message : message;
  }

  /* Show an API error next to its field; returns the first field to focus. */
  function showErrors(form, result) {
    clearErrors(form);
    const data = result.data || {};
    let first = null;
    const entries = [];
    if (Array.isArray(data.detail)) {
      for (const item of data.detail) {
        entries.push({ path: apiPath(item.loc), message: (item.msg || "Invalid value").replace(/^Value error, /, "") });
      }
    } else {
      const message = typeof data.detail === "string" ? data.detail
        : result.status === 0 ? "The broker cannot be reached." : `The broker answered ${result.status}.`;
      entries.push({ path: data.field || "", message });
    }
    for (const { path, message } of entries) {
      const field = findField(form, path);
      showFieldError(form, field, message);
      if (!first && field) first = field;
    }
    if (first) first.focus();
    return first;
  }

  /* ---- dialogs: native <dialog>.showModal() keeps focus inside and closes on Escape ---- */

  let opener = null;
  function openDialog(dialog) {
    opener = document.activeElement;
    if (!dialog.open) dialog.showModal();
  }
  document.addEventListener("click", (event) => {
    const closer = event.target.closest("[data-close]");
    if (closer) closer.closest("dialog").close();
  });
  document.querySelectorAll("dialog").forEach((dialog) => {
    dialog.addEventListener("close", () => {
      if (opener && document.contains(opener)) opener.focus();
    });
    // A click on the backdrop (outside the dialog's box) closes it too.
    dialog.addEventListener("mousedown", (event) => {
      if (event.target !== dialog) return;
      const r = dialog.getBoundingClientRect();
      const inside = event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
      if (!inside) dialog.close();
    });
  });

  /* ---- toast ---- */
  let toastTimer = null;
  function toast(message, kind = "ok") {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.dataset.kind = kind;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  /* ---- small helpers ---- */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /* DICOM person name DOE^JANE^^DR → "DOE, JANE" */
  function personName(pn) {
    if (!pn) return "";
    const [family = "", given = "", middle = ""] = pn.split("=")[0].split("^");
    const rest = [given, middle].filter(Boolean).join(" ");
    return rest ? `${family}, ${rest}` : family;
  }
  const dicomDate = (d) => (d && d.length === 8 ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : d || "");
  const dicomTime = (t) => (t && t.length >= 4 ? `${t.slice(0, 2)}:${t.slice(2, 4)}` : t || "");
  const fromIsoDate = (v) => (v || "").replaceAll("-", "");
  const fromIsoTime = (v) => (v || "").replaceAll(":", "").slice(0, 6);
  function dateTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  const signOut = document.getElementById("sign-out");
  if (signOut) {
    signOut.addEventListener("click", async () => {
      await api("POST", "/api/auth/logout", undefined, { redirectOn401: false });
      location.assign("/login");
    });
  }
  if (!canEdit()) body.classList.add("read-only");

  return {
    me, canEdit, api, toLogin, showErrors, clearErrors, openDialog, toast, el,
    personName, dicomDate, dicomTime, fromIsoDate, fromIsoTime, dateTime,
  };
})();
