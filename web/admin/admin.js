// sessiond admin page: nodes, live sessions with countdowns, a session's detail (its
// audit events and live connections, drop one, revoke), rooms and members, webhook
// endpoints and their dead letters (retry, delete), the audit trail with filters. Talks to /v1/admin/* with the API key; follows the audit stream
// (server-sent events read with fetch, since EventSource cannot send the key) and
// reloads what an event changes, instead of polling.
const KEY = "sessiond.adminKey";
const $ = (id) => document.getElementById(id);
let sessions = [];
let sessionsNext = null;
let auditNext = null;
let auditQuery = {};
let scope = null;
let detailHandle = null;
let streamAbort = null;
// Newest audit id shown or streamed: the stream resumes after it.
let lastEventId = null;
const MAX_LIVE_ROWS = 500;

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

function authHeaders() {
  return { authorization: `Bearer ${sessionStorage.getItem(KEY)}` };
}

function refused() {
  sessionStorage.removeItem(KEY);
  stopStream();
  showKeyForm("That API key was refused.");
  return new Error("unauthorized");
}

async function api(method, path) {
  const r = await fetch(path, { method, headers: authHeaders() });
  if (r.status === 401) throw refused();
  if (!r.ok) {
    const p = await r.json().catch(() => ({}));
    // 403 on a change with a read key is a scope refusal, not a wrong key.
    if (r.status === 403 && method === "GET") throw refused();
    throw new Error(`${method} ${path}: ${p.code ?? r.status}${p.detail ? " — " + p.detail : ""}`);
  }
  return r.status === 204 || r.status === 202 ? null : r.json().catch(() => null);
}

function report(err) {
  if (err.message !== "unauthorized") $("error").textContent = err.message;
}

function showKeyForm(msg = "") {
  $("error").textContent = msg;
  $("key-form").hidden = false;
  $("main").hidden = true;
  $("forget").hidden = true;
  $("live").hidden = true;
  $("readonly").hidden = true;
  $("whoami").textContent = "";
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, new FormData(e.target).get("key"));
  e.target.reset();
  start();
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  stopStream();
  showKeyForm();
});

async function start() {
  if (!sessionStorage.getItem(KEY)) return showKeyForm();
  $("error").textContent = "";
  try {
    const key = await api("GET", "/v1/admin/key");
    scope = key.scope;
    $("whoami").textContent = `key ${key.id} (${key.scope})`;
  } catch (err) {
    return report(err);
  }
  $("key-form").hidden = true;
  $("main").hidden = false;
  $("forget").hidden = false;
  $("readonly").hidden = scope === "admin";
  document.body.dataset.scope = scope;
  await Promise.all([refresh(), searchAudit()]);
  startStream();
}

// Buttons that change something: disabled (and explained) for a read key.
function adminButton(props) {
  const b = el("button", { type: "button", className: "danger needs-admin", ...props });
  applyScope(b);
  return b;
}

function applyScope(b) {
  if (scope !== "admin") {
    b.disabled = true;
    b.title = "Needs an admin key";
  } else {
    b.disabled = false;
    b.title = "";
  }
}

// ---------- nodes ----------

async function loadNodes() {
  const { nodes } = await api("GET", "/v1/admin/nodes");
  $("nodes").replaceChildren(
    ...nodes.map((n) =>
      el(
        "tr",
        { "data-testid": "node-row", "data-node": n.node },
        el("td", { className: "mono", textContent: n.node + (n.this_node ? " (this node)" : "") }),
        el("td", { textContent: n.connections ?? "?", "data-testid": "node-connections" }),
        el("td", {
          "data-testid": "node-lease-age",
          textContent: n.lease_age_ms == null ? (n.this_node ? "single node (no lease)" : "lease gone") : `${(n.lease_age_ms / 1000).toFixed(1)} s`,
        }),
      ),
    ),
  );
}
$("nodes-refresh").addEventListener("click", () => loadNodes().catch(report));
// Connection counts and lease ages change with no audit event to bring them: re-read
// the (short) node list every few seconds while it is on screen.
const NODES_EVERY_MS = 3000;
setInterval(() => {
  if (!document.hidden && !$("main").hidden && sessionStorage.getItem(KEY)) loadNodes().catch(report);
}, NODES_EVERY_MS);

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
        el("td", { className: "mono" }, el("button", { type: "button", className: "link", textContent: s.handle, "data-testid": "session-open", onclick: () => openDetail(s.handle) })),
        el("td", { textContent: s.principal }),
        el("td", { textContent: s.role, "data-testid": "session-role" }),
        el("td", { textContent: s.state }),
        el("td", { textContent: left(s.idle_expires_at), "data-testid": "session-countdown", "data-expires": s.idle_expires_at }),
        el("td", { textContent: when(s.absolute_expires_at) }),
        el("td", { textContent: s.connections ?? "", "data-testid": "session-connections" }),
        el(
          "td",
          {},
          adminButton({ textContent: "Revoke", "data-testid": "revoke", onclick: () => act(`/v1/admin/sessions/${encodeURIComponent(s.handle)}`) }),
          " ",
          adminButton({ textContent: "Sign out everywhere", "data-testid": "signout-everywhere", onclick: () => act(`/v1/admin/principals/${encodeURIComponent(s.principal)}/sessions`) }),
        ),
      ),
    ),
  );
}

async function act(path) {
  try {
    $("error").textContent = "";
    await api("DELETE", path);
    // The audit stream brings the change; reload now too, so the click shows at once.
    await refresh();
  } catch (err) {
    report(err);
  }
}

// Countdowns tick locally.
setInterval(() => {
  for (const td of document.querySelectorAll("[data-testid=session-countdown]")) td.textContent = left(td.dataset.expires);
}, 1000);

// ---------- one session ----------

async function openDetail(handle) {
  detailHandle = handle;
  $("detail-handle").textContent = handle;
  $("detail").dataset.handle = handle;
  $("detail").hidden = false;
  applyScope($("detail-revoke"));
  await loadDetail().catch(report);
  $("detail").scrollIntoView({ block: "nearest" });
}

async function loadDetail() {
  const handle = detailHandle;
  if (!handle) return;
  const h = encodeURIComponent(handle);
  const [s, conns, audit] = await Promise.all([
    api("GET", `/v1/admin/sessions/${h}`),
    api("GET", `/v1/admin/connections?handle=${h}`),
    api("GET", `/v1/admin/audit?handle=${h}&limit=200`),
  ]);
  if (handle !== detailHandle) return;
  $("detail-summary").textContent = `${s.principal} · ${s.role} · ${s.state}${s.end_reason ? " (" + s.end_reason + ")" : ""} · created ${when(s.created_at)}`;
  $("detail").dataset.state = s.state;
  $("detail-revoke").hidden = s.state !== "active";
  $("detail-connections").replaceChildren(
    ...conns.connections.map((c) =>
      el(
        "tr",
        { "data-testid": "detail-connection", "data-connection-id": c.connection_id },
        el("td", { className: "mono", textContent: c.connection_id }),
        el("td", { className: "mono", textContent: c.connection_id.replace(/-\d+$/, "") }),
        el("td", { "data-testid": "detail-connection-rooms", textContent: c.rooms.join(", ") }),
        el("td", { textContent: when(c.connected_at) }),
        el(
          "td",
          {},
          adminButton({
            textContent: "Drop connection",
            "data-testid": "drop-connection",
            onclick: () => dropConnection(c.connection_id),
          }),
        ),
      ),
    ),
  );
  $("detail-no-connections").hidden = conns.connections.length > 0;
  $("detail-audit").replaceChildren(...audit.events.map(detailAuditRow));
}

function detailAuditRow(e) {
  return el(
    "tr",
    { "data-testid": "detail-audit-row", "data-kind": e.kind, "data-id": e.id },
    el("td", { textContent: when(e.at) }),
    el("td", { textContent: e.kind }),
    el("td", { textContent: e.reason ?? "" }),
    el("td", { className: "mono", textContent: e.detail == null ? "" : JSON.stringify(e.detail) }),
  );
}

async function dropConnection(id) {
  try {
    $("error").textContent = "";
    await api("DELETE", `/v1/admin/connections/${encodeURIComponent(id)}`);
    await loadDetail();
  } catch (err) {
    report(err);
  }
}

$("detail-refresh").addEventListener("click", () => loadDetail().catch(report));
$("detail-close").addEventListener("click", () => {
  detailHandle = null;
  $("detail").hidden = true;
});
$("detail-revoke").addEventListener("click", async () => {
  if (detailHandle) await act(`/v1/admin/sessions/${encodeURIComponent(detailHandle)}`);
  await loadDetail().catch(report);
});

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
    ...r.members.map((m) => el("li", { "data-testid": "room-member", textContent: `${m.principal} (${m.role}) — ${m.handle} / ${m.connection_id} on ${m.node}` })),
  );
  $("room-detail").hidden = false;
}

// ---------- webhooks ----------

async function loadWebhooks() {
  const [{ endpoints }, { dead_letters }] = await Promise.all([
    api("GET", "/v1/admin/webhooks"),
    api("GET", "/v1/admin/webhooks/dead-letters"),
  ]);
  $("webhooks-none").hidden = endpoints.length > 0;
  $("webhooks").replaceChildren(
    ...endpoints.map((w) =>
      el(
        "tr",
        { "data-testid": "webhook-row", "data-endpoint": w.id },
        el("td", { className: "mono", textContent: w.id }),
        el("td", { className: "mono", textContent: w.url }),
        el("td", { textContent: w.events.length ? w.events.join(", ") : "all" }),
        el("td", { textContent: w.cursor == null ? "starting" : `${w.lag} events`, "data-testid": "webhook-lag" }),
        el("td", { textContent: w.dead_letters, "data-testid": "webhook-dead" }),
      ),
    ),
  );
  $("dead-letters").replaceChildren(
    ...dead_letters.map((d) => {
      const path = `/v1/admin/webhooks/dead-letters/${encodeURIComponent(d.endpoint)}/${d.event_id}`;
      return el(
        "tr",
        { "data-testid": "dead-letter-row", "data-endpoint": d.endpoint, "data-event": d.event_id },
        el("td", { className: "mono", textContent: d.endpoint }),
        el("td", { className: "mono", textContent: d.event_id }),
        el("td", { textContent: d.type }),
        el("td", { className: "mono", textContent: d.event.handle ?? "" }),
        el("td", { textContent: d.attempts, "data-testid": "dead-letter-attempts" }),
        el("td", { textContent: d.last_error, "data-testid": "dead-letter-error" }),
        el("td", { textContent: when(d.dead_at) }),
        el(
          "td",
          {},
          adminButton({ textContent: "Retry", className: "needs-admin", "data-testid": "dead-letter-retry", onclick: () => deadLetterAction("POST", `${path}/retry`) }),
          " ",
          adminButton({ textContent: "Delete", "data-testid": "dead-letter-delete", onclick: () => deadLetterAction("DELETE", path) }),
        ),
      );
    }),
  );
}

async function deadLetterAction(method, path) {
  $("error").textContent = "";
  try {
    await api(method, path);
  } catch (err) {
    report(err);
  }
  // A failed retry still changed the dead letter (attempts, last error).
  await loadWebhooks().catch(report);
}

$("webhooks-refresh").addEventListener("click", () => loadWebhooks().catch(report));

async function refresh() {
  try {
    await Promise.all([loadSessions(), loadRooms(), loadNodes(), loadWebhooks()]);
  } catch (err) {
    report(err);
  }
}

$("refresh").addEventListener("click", refresh);
$("sessions-more").addEventListener("click", () => loadSessions(true).catch(report));

// ---------- audit ----------

function auditRow(e) {
  return el(
    "tr",
    { "data-testid": "audit-row", "data-kind": e.kind, "data-reason": e.reason ?? "", "data-id": e.id },
    el("td", { textContent: when(e.at) }),
    el("td", { textContent: e.kind }),
    el("td", { textContent: e.reason ?? "" }),
    el("td", { className: "mono", textContent: e.handle ?? "" }),
    el("td", { textContent: e.principal ?? "" }),
    el("td", { textContent: e.role ?? "" }),
    el("td", { textContent: e.client_ip ?? "" }),
    el("td", { className: "ua", textContent: e.user_agent ?? "", title: e.user_agent ?? "" }),
    el("td", { className: "mono", textContent: e.detail == null ? "" : JSON.stringify(e.detail) }),
  );
}

async function searchAudit(more = false) {
  const q = new URLSearchParams(auditQuery);
  if (more && auditNext != null) q.set("before", auditNext);
  try {
    const page = await api("GET", `/v1/admin/audit?${q}`);
    auditNext = page.next ?? null;
    $("audit-more").hidden = auditNext == null;
    const rows = page.events.map(auditRow);
    if (more) $("audit").append(...rows);
    else $("audit").replaceChildren(...rows);
    // Unfiltered, the newest event shown is where the stream picks up.
    if (!more && Object.keys(auditQuery).length === 0 && lastEventId == null) lastEventId = page.events.length ? page.events[0].id : 0;
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

// ---------- live: the audit stream ----------

function setLive(state, text) {
  $("live").hidden = false;
  $("live").dataset.state = state;
  $("live").textContent = text;
}

function stopStream() {
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
}

// What an event changes is reloaded once per burst of events.
let reloadTimer = null;
const pending = new Set();
function schedule(what) {
  pending.add(what);
  if (reloadTimer) return;
  reloadTimer = setTimeout(async () => {
    reloadTimer = null;
    const todo = new Set(pending);
    pending.clear();
    try {
      await Promise.all([
        todo.has("sessions") ? loadSessions() : null,
        todo.has("sessions") ? loadRooms() : null,
        todo.has("sessions") ? loadNodes() : null,
        todo.has("detail") ? loadDetail() : null,
        todo.has("webhooks") ? loadWebhooks() : null,
      ]);
    } catch (err) {
      report(err);
    }
  }, 200);
}

function onAuditEvent(e) {
  lastEventId = e.id;
  // The unfiltered trail shows it at the top; a filtered search is left as asked.
  if (Object.keys(auditQuery).length === 0) {
    const tbody = $("audit");
    tbody.prepend(auditRow(e));
    while (tbody.children.length > MAX_LIVE_ROWS) tbody.lastChild.remove();
  }
  schedule("sessions");
  if (e.handle && e.handle === detailHandle) schedule("detail");
  // Every event moves the endpoints' progress (and may end in a dead letter).
  schedule("webhooks");
}

async function startStream() {
  stopStream();
  const abort = new AbortController();
  streamAbort = abort;
  let delay = 1000;
  while (!abort.signal.aborted) {
    setLive("connecting", "connecting…");
    try {
      const headers = authHeaders();
      if (lastEventId != null) headers["last-event-id"] = String(lastEventId);
      const r = await fetch("/v1/admin/audit/stream", { headers, signal: abort.signal });
      if (r.status === 401 || r.status === 403) {
        refused();
        return;
      }
      if (!r.ok) throw new Error(`audit stream: ${r.status}`);
      setLive("live", "live");
      delay = 1000;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let data = "";
          for (const line of block.split("\n")) if (line.startsWith("data:")) data += line.slice(5).trimStart();
          if (data) onAuditEvent(JSON.parse(data));
        }
      }
    } catch (err) {
      if (abort.signal.aborted) return;
    }
    // The stream ended (server restart, slow reader, store failure): resume after the
    // last event seen, so nothing is missed or shown twice.
    setLive("off", "reconnecting…");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

start();
