/* Sign-in, or the first administrator's set-up when the broker has no user yet. */
"use strict";

(() => {
  const { api } = MWL;
  const $ = (id) => document.getElementById(id);

  function nextUrl() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    // Only a page of this site: never an open redirect ("//host", "/\\host", "https://...").
    if (!next.startsWith("/") || /^\/[\/\\]/.test(next)) return "/";
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  }

  async function submit(form, url, body) {
    MWL.clearErrors(form);
    const button = form.querySelector('[type="submit"]');
    button.disabled = true;
    const result = await api("POST", url, body, { redirectOn401: false });
    button.disabled = false;
    if (result.ok) { location.assign(nextUrl()); return; }
    if (result.status === 401 || result.status === 403) {
      const detail = (result.data && typeof result.data.detail === "string") ? result.data.detail : "";
      MWL.showErrors(form, { status: result.status, data: { detail: detail || "Wrong user name or password.", field: result.data && result.data.field } });
      return;
    }
    MWL.showErrors(form, result);
  }

  async function start() {
    const [setup, me] = await Promise.all([
      api("GET", "/api/auth/setup", undefined, { redirectOn401: false }),
      api("GET", "/api/auth/me", undefined, { redirectOn401: false }),
    ]);
    $("login-loading").hidden = true;
    if (me.ok) { location.assign(nextUrl()); return; }
    const needed = setup.ok && setup.data && setup.data.needed;
    const form = needed ? $("setup-form") : $("login-form");
    form.hidden = false;
    form.querySelector("input").focus();
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    submit(form, "/api/auth/login", { username: form.username.value.trim(), password: form.password.value });
  });
  $("setup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    submit(form, "/api/auth/setup", {
      setup_code: form.setup_code.value.trim(), username: form.username.value.trim(), password: form.password.value,
    });
  });
  start();
})();
