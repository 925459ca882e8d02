/* Users and API tokens (admin only; the API refuses everyone else anyway). */
"use strict";

(() => {
  const { api, el } = MWL;
  const $ = (id) => document.getElementById(id);
  const ROLES = ["viewer", "scheduler", "admin"];
  const when = (iso) => (iso ? MWL.dateTime(iso) : "never");

  function roleSelect(current, label, onchange) {
    const select = el("select", { "aria-label": label, onchange },
      ROLES.map((r) => el("option", { value: r, selected: r === current }, r)));
    return select;
  }

  async function loadUsers() {
    const result = await api("GET", "/api/users");
    if (!result.ok) return;
    $("users").querySelector("tbody").replaceChildren(...result.data.map((u) => el("tr", { dataset: { user: u.username } },
      el("td", {}, el("strong", {}, u.username), u.username === MWL.me.name ? el("span", { class: "pmeta" }, "you") : null),
      el("td", {}, roleSelect(u.role, `Role of ${u.username}`, async (event) => {
        const r = await api("PATCH", `/api/users/${u.id}`, { role: event.target.value });
        MWL.toast(r.ok ? `${u.username} is now ${event.target.value}.` : (r.data && r.data.detail) || "Not changed.", r.ok ? "ok" : "error");
        loadUsers();
      })),
      el("td", { class: u.active ? "" : "state-off" }, u.active ? "active" : "deactivated"),
      el("td", {}, when(u.last_login_at)),
      el("td", {}, el("button", {
        type: "button", class: `btn btn-small${u.active ? " btn-danger-quiet" : ""}`,
        onclick: async () => {
          const r = await api("PATCH", `/api/users/${u.id}`, { active: !u.active });
          MWL.toast(r.ok ? `${u.username} ${u.active ? "deactivated" : "reactivated"}.` : (r.data && r.data.detail) || "Not changed.", r.ok ? "ok" : "error");
          loadUsers();
        },
      }, u.active ? "Deactivate" : "Reactivate")))));
  }

  async function loadTokens() {
    const result = await api("GET", "/api/tokens");
    if (!result.ok) return;
    $("tokens").querySelector("tbody").replaceChildren(...result.data.map((t) => el("tr", { dataset: { token: t.name } },
      el("td", {}, el("strong", {}, t.name)),
      el("td", {}, t.role),
      el("td", {}, t.created_by),
      el("td", {}, t.revoked_at ? el("span", { class: "state-off" }, `revoked ${MWL.dateTime(t.revoked_at)}`) : when(t.last_used_at)),
      el("td", {}, t.revoked_at ? null : el("button", {
        type: "button", class: "btn btn-small btn-danger-quiet",
        onclick: async () => {
          if (!confirm(`Revoke the token “${t.name}”? Programs using it stop working at once.`)) return;
          const r = await api("DELETE", `/api/tokens/${t.id}`);
          MWL.toast(r.ok ? `Token ${t.name} revoked.` : (r.data && r.data.detail) || "Not revoked.", r.ok ? "ok" : "error");
          loadTokens();
        },
      }, "Revoke")))));
  }

  $("user-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    MWL.clearErrors(form);
    const result = await api("POST", "/api/users", { username: form.username.value.trim(), password: form.password.value, role: form.role.value });
    if (!result.ok) { MWL.showErrors(form, result); return; }
    form.reset();
    MWL.toast(`User ${result.data.username} added.`);
    loadUsers();
  });

  $("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    MWL.clearErrors(form);
    const result = await api("POST", "/api/tokens", { name: form.name.value.trim(), role: form.role.value });
    if (!result.ok) { MWL.showErrors(form, result); return; }
    form.reset();
    $("new-secret-name").textContent = result.data.name;
    $("new-secret-value").textContent = result.data.secret;
    $("new-secret").hidden = false;
    $("copy-secret").focus();
    loadTokens();
  });
  $("copy-secret").addEventListener("click", async () => {
    try { await navigator.clipboard.writeText($("new-secret-value").textContent); MWL.toast("Copied."); }
    catch (err) {
      const range = document.createRange();
      range.selectNodeContents($("new-secret-value"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      MWL.toast("Selected: press Ctrl+C to copy.");
    }
  });
  $("hide-secret").addEventListener("click", () => {
    $("new-secret").hidden = true;
    $("new-secret-value").textContent = "";
    $("t-name").focus();
  });

  const live = $("live");
  if (live) live.hidden = true; // this page does not follow the schedule
  loadUsers();
  loadTokens();
})();
