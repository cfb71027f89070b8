// sessiond admin page: live sessions with countdowns, rooms and members, the audit trail
// with filters, revoke and sign-out-everywhere. Talks to /v1/admin/* with the API key.
const KEY = "sessiond.adminKey";
const $ = (id) => document.getElementById(id);
let sessions = [];
let sessionsNext = null;
let auditNext = null;
let auditQuery = {};

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) k.startsWith("data-") ? e.setAttribute(k, v) : (e[k] = v);
  e.append(...children);
  return e;
}

function when(t) {
  return t == null ? "" : new Date(t).toLocaleString();
}

function left(t) {
  const s = Math.round((new Date(t).getTime() - Date.now()) / 1000);
  if (!(s > 0)) return "expired";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h ? h + ":" + String(m).padStart(2, "0") : m}:${String(s % 60).padStart(2, "0")}`;
}

async function api(method, path) {
  const key = sessionStorage.getItem(KEY);
  const r = await fetch(path, { method, headers: { authorization: `Bearer ${key}` } });
  if (r.status === 401 || r.status === 403) {
    sessionStorage.removeItem(KEY);
    showKeyForm("That API key was refused.");
    throw new Error("unauthorized");
  }
  if (!r.ok) {
    const p = await r.json().catch(() => ({}));
    throw new Error(`${method} ${path}: ${p.code ?? r.status}${p.detail ? " — " + p.detail : ""}`);
  }
  return r.status === 204 ? null : r.json().catch(() => null);
}

function report(err) {
  if (err.message !== "unauthorized") $("error").textContent = err.message;
}

function showKeyForm(msg = "") {
  $("error").textContent = msg;
  $("key-form").hidden = false;
  $("main").hidden = true;
  $("forget").hidden = true;
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, new FormData(e.target).get("key"));
  e.target.reset();
  start();
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showKeyForm();
});

function start() {
  if (!sessionStorage.getItem(KEY)) return showKeyForm();
  $("error").textContent = "";
  $("key-form").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
  refresh();
  searchAudit();
}

// ---------- sessions ----------

async function loadSessions(more = false) {
  const q = more && sessionsNext ? `?after=${encodeURIComponent(sessionsNext)}` : "";
  const page = await api("GET", `/v1/admin/sessions${q}`);
  sessions = more ? sessions.concat(page.sessions) : page.sessions;
  sessionsNext = page.next ?? null;
  $("sessions-more").hidden = !sessionsNext;
  renderSessions();
}

function renderSessions() {
  $("sessions").replaceChildren(
    ...sessions.map((s) =>
      el(
        "tr",
        { "data-testid": "session-row", "data-handle": s.handle, "data-principal": s.principal },
        el("td", { className: "mono", textContent: s.handle }),
        el("td", { textContent: s.principal }),
        el("td", { textContent: s.role, "data-testid": "session-role" }),
        el("td", { textContent: s.state }),
        el("td", { textContent: left(s.idle_expires_at), "data-testid": "session-countdown", "data-expires": s.idle_expires_at }),
        el("td", { textContent: when(s.absolute_expires_at) }),
        el("td", { textContent: s.connections ?? "" }),
        el(
          "td",
          {},
          el("button", { type: "button", className: "danger", textContent: "Revoke", "data-testid": "revoke", onclick: () => act(`/v1/admin/sessions/${encodeURIComponent(s.handle)}`) }),
          " ",
          el("button", { type: "button", className: "danger", textContent: "Sign out everywhere", "data-testid": "signout-everywhere", onclick: () => act(`/v1/admin/principals/${encodeURIComponent(s.principal)}/sessions`) }),
        ),
      ),
    ),
  );
}

async function act(path) {
  try {
    await api("DELETE", path);
    await refresh();
    await searchAudit();
  } catch (err) {
    report(err);
  }
}

// Countdowns tick locally between refreshes.
setInterval(() => {
  for (const td of document.querySelectorAll("[data-testid=session-countdown]")) td.textContent = left(td.dataset.expires);
}, 1000);

// ---------- rooms ----------

async function loadRooms() {
  const { rooms } = await api("GET", "/v1/admin/rooms");
  $("rooms").replaceChildren(
    ...rooms.map((r) =>
      el(
        "tr",
        { "data-testid": "room-row", "data-room": r.room },
        el("td", {}, el("button", { type: "button", textContent: r.room, onclick: () => showRoom(r.room).catch(report) })),
        el("td", { textContent: r.members }),
      ),
    ),
  );
}

async function showRoom(room) {
  const r = await api("GET", `/v1/admin/rooms/${encodeURIComponent(room)}`);
  $("room-name").textContent = r.room;
  $("room-members").replaceChildren(
    ...r.members.map((m) => el("li", { "data-testid": "room-member", textContent: `${m.principal} (${m.role}) — ${m.handle} / ${m.connection_id}` })),
  );
  $("room-detail").hidden = false;
}

async function refresh() {
  try {
    await Promise.all([loadSessions(), loadRooms()]);
  } catch (err) {
    report(err);
  }
}

$("refresh").addEventListener("click", refresh);
$("sessions-more").addEventListener("click", () => loadSessions(true).catch(report));
setInterval(() => !$("main").hidden && !document.hidden && refresh(), 5000);

// ---------- audit ----------

async function searchAudit(more = false) {
  const q = new URLSearchParams(auditQuery);
  if (more && auditNext != null) q.set("before", auditNext);
  try {
    const page = await api("GET", `/v1/admin/audit?${q}`);
    auditNext = page.next ?? null;
    $("audit-more").hidden = auditNext == null;
    const rows = page.events.map((e) =>
      el(
        "tr",
        { "data-testid": "audit-row", "data-kind": e.kind, "data-reason": e.reason ?? "" },
        el("td", { textContent: when(e.at) }),
        el("td", { textContent: e.kind }),
        el("td", { textContent: e.reason ?? "" }),
        el("td", { className: "mono", textContent: e.handle ?? "" }),
        el("td", { textContent: e.principal ?? "" }),
        el("td", { textContent: e.role ?? "" }),
        el("td", { textContent: e.client_ip ?? "" }),
        el("td", { className: "ua", textContent: e.user_agent ?? "", title: e.user_agent ?? "" }),
        el("td", { className: "mono", textContent: e.detail == null ? "" : JSON.stringify(e.detail) }),
      ),
    );
    if (more) $("audit").append(...rows);
    else $("audit").replaceChildren(...rows);
  } catch (err) {
    report(err);
  }
}

$("audit-form").addEventListener("submit", (e) => {
  e.preventDefault();
  auditQuery = {};
  for (const [k, v] of new FormData(e.target)) {
    if (!v) continue;
    auditQuery[k] = k === "since" || k === "until" ? new Date(String(v)).toISOString() : String(v);
  }
  searchAudit();
});
$("audit-more").addEventListener("click", () => searchAudit(true));

start();
