// Helpdesk demo for sessiond: per-conversation drafts (text + recorded audio), shared
// notes per conversation room, presence, expiry warning, and a "session ended" state
// that keeps the page and the user's work.
import { Sessiond } from "/sdk/sessiond.js";

const CONVERSATIONS = [
  { id: "conv-1", title: "Order #1042 — late delivery" },
  { id: "conv-2", title: "Refund request" },
  { id: "conv-3", title: "Cannot log in" },
];
const CLIP = "voice.webm";
const NOTES_DEBOUNCE_MS = 800;

const $ = (id) => document.getElementById(id);
const client = new Sessiond();
/** Draft handles by conversation (kept so badges and late sends use the right one). */
const handles = new Map();
/** Conversations whose Send is in flight. */
const sending = new Set();
const badges = new Set();
let current = null;
let recorder = null;
let clipUrl = null;
let members = [];
let notesTimer = null;
let notesConflictVersion = 0;
let lastUser = "";
let countdownTimer = null;

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) k.startsWith("data-") || k.startsWith("aria-") ? e.setAttribute(k, v) : (e[k] = v);
  e.append(...children);
  return e;
}

function show(id, on) {
  $(id).hidden = !on;
}

// ---------- boot and sign-in ----------

async function boot() {
  show("boot-error", false);
  try {
    await client.start();
  } catch {
    show("boot-error", true);
    return;
  }
  renderSession();
}

function renderSession() {
  const s = client.session;
  const signedIn = !!s?.user_id;
  if (signedIn) lastUser = s.user_id;
  $("whoami").textContent = signedIn ? `${s.user_id} (${s.role})` : "";
  show("signout", signedIn && !client.ended);
  show("devices-toggle", signedIn && !client.ended);
  if (!signedIn || client.ended) closeDevices();
  show("signin", !signedIn && !client.ended);
  show("desk", signedIn || client.ended);
  if (signedIn && !client.ended) {
    show("ended", false);
    void refreshBadges();
    if (!current) void open(CONVERSATIONS[0].id);
  }
}

const COLOURS = ["#1f5fbf", "#b45309", "#166534", "#9d174d", "#5b21b6", "#0e7490"];

/** What presence shows of this user: the ticket's `info` claim (the demo's backend
 * would take it from its user directory; here it is the form's name and a colour). */
function memberInfo(user, name) {
  let h = 0;
  for (const c of user) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return { name: name.trim() || user, color: COLOURS[h % COLOURS.length] };
}

async function signIn(user, role, name = "") {
  const info = memberInfo(user, name);
  const r = await fetch("/demo/api/ticket", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: user, role, info }) });
  if (!r.ok) throw new Error(`ticket refused (${r.status})`);
  const { ticket } = await r.json();
  const before = client.session?.principal;
  await client.signIn(ticket);
  afterSignIn(before);
}

/** After any (re)sign-in: another person must see nothing of the previous one's work. */
function afterSignIn(principalBefore) {
  show("ended", false);
  show("signin", false);
  const changed = principalBefore !== client.session?.principal;
  if (changed) {
    handles.clear();
    badges.clear();
    const id = current ?? CONVERSATIONS[0].id;
    current = null;
    $("reply").value = "";
    $("notes").value = "";
    renderSession();
    void open(id);
  } else {
    renderSession();
    if (current) void reloadCurrent();
  }
}

$("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  $("signin-error").textContent = "";
  try {
    await signIn(String(f.get("user")), String(f.get("role")), String(f.get("name") ?? ""));
  } catch (err) {
    $("signin-error").textContent = `Sign-in failed: ${err.message}`;
  }
});

$("ended-signin").addEventListener("click", () => {
  $("signin-form").elements.user.value = lastUser;
  show("signin", true);
  $("signin-form").elements.user.focus();
});

$("copy-text").addEventListener("click", async () => {
  const text = $("reply").value;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    $("reply").select();
    document.execCommand("copy");
  }
  $("copy-status").textContent = "Copied";
});

$("signout").addEventListener("click", async () => {
  if (recorder) recorder.stop();
  try {
    await client.signOut();
  } catch {
    $("send-status").textContent = "Sign-out failed: server unreachable";
    return;
  }
  // A deliberate sign-out on a shared computer: clear the screen, not just the session.
  handles.clear();
  badges.clear();
  current = null;
  for (const id of ["reply", "notes"]) $(id).value = "";
  for (const id of ["messages", "presence", "presence-log"]) $(id).replaceChildren();
  show("ended", false);
  show("desk", false);
  show("signin", true);
  $("whoami").textContent = "";
  show("signout", false);
  show("devices-toggle", false);
  closeDevices();
});

boot();
$("boot-retry").addEventListener("click", boot);

// Signed in again from another tab: pick that session up when this tab is looked at.
window.addEventListener("focus", async () => {
  if (!client.ended) return;
  const r = await fetch("/v1/session", { credentials: "include" }).catch(() => null);
  const s = r?.ok ? await r.json() : null;
  if (!s?.user_id) return;
  const before = client.session?.principal;
  if (await client.resume()) afterSignIn(before);
});

// ---------- session events ----------

client.on("connected", () => ($("conn-status").textContent = "online"));
client.on("reconnected", () => {
  $("conn-status").textContent = "online";
  show("lost", false);
});
client.on("lost", () => {
  $("conn-status").textContent = "reconnecting…";
  show("lost", true);
});
client.on("warning", ({ secondsLeft }) => {
  const until = Date.now() + secondsLeft * 1000;
  const tick = () => {
    const s = Math.max(0, Math.round((until - Date.now()) / 1000));
    $("countdown").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };
  tick();
  clearInterval(countdownTimer);
  countdownTimer = setInterval(tick, 250);
  if (!$("warning").open) $("warning").showModal();
});
function closeWarning() {
  clearInterval(countdownTimer);
  if ($("warning").open) $("warning").close();
}
client.on("renewed", closeWarning);
$("stay").addEventListener("click", async () => {
  try {
    await client.renew();
  } catch {
    closeWarning();
  }
});
client.on("ended", ({ reason }) => {
  closeWarning();
  show("lost", false);
  // Nobody is "here now" for a page whose session ended: it hears no more presence.
  members = [];
  $("presence").replaceChildren();
  show("devices-toggle", false);
  closeDevices();
  $("conn-status").textContent = "offline";
  $("ended-reason").textContent = reason;
  $("copy-status").textContent = "";
  show("ended", true);
  show("signout", false);
  // Only what is true: a copy on this device is claimed once it was written.
  $("ended-local").textContent = client.localCopies
    ? "your draft is kept on this device."
    : "this device cannot keep a copy: keep this page open.";
  $("draft-status").textContent = draftStatus(handles.get(current));
});
client.on("draft_local", ({ conversation, saved }) => {
  if (conversation === current && client.ended) $("draft-status").textContent = saved ? "Saved on this device" : "Not saved on this device";
});

/** The status line of a draft once the session ended. */
function draftStatus(h) {
  if (!h || !h.unsaved) return h?.hasContent ? "Draft saved" : "";
  return h.savedLocally ? "Saved on this device" : "Not saved yet";
}
client.on("draft_saved", ({ conversation }) => {
  if (conversation === current) $("draft-status").textContent = "Draft saved";
  setBadge(conversation);
});
client.on("conflict", (e) => {
  if (e.kind === "draft" && e.conversation === current) showConflict(e);
  if (e.kind === "snapshot" && e.room === current) {
    notesConflictVersion = e.version;
    $("notes-status").textContent = "Someone else changed the notes.";
    show("notes-conflict", true);
  }
});
client.on("error", (e) => {
  if (e.conversation === current) $("draft-status").textContent = `Not saved (${e.code})`;
});

// ---------- conversations and drafts ----------

function renderList() {
  const items = CONVERSATIONS.map((c) =>
    el(
      "li",
      {},
      el(
        "button",
        { type: "button", "data-testid": `conv-${c.id}`, "aria-current": String(c.id === current), onclick: () => open(c.id) },
        el("span", { textContent: c.title }),
        ...(badges.has(c.id) ? [el("span", { className: "badge", textContent: "draft", "data-testid": `draft-badge-${c.id}` })] : []),
      ),
    ),
  );
  $("conversations").replaceChildren(...items);
}

async function refreshBadges() {
  badges.clear();
  for (const id of await client.listDrafts()) badges.add(id);
  renderList();
}

function setBadge(conv) {
  const h = handles.get(conv);
  if (!h) return;
  if (h.hasContent) badges.add(conv);
  else badges.delete(conv);
  renderList();
}

async function open(id) {
  if (id === current) return;
  if (recorder) recorder.stop(); // the clip is attached to the conversation it was recorded in
  if (current) client.leave(current);
  current = id;
  const h = client.drafts(id); // flushes the previous conversation's pending save
  handles.set(id, h);
  renderList();
  $("conv-title").textContent = CONVERSATIONS.find((c) => c.id === id).title;
  $("reply").value = "";
  $("reply").disabled = true;
  $("notes").value = "";
  $("notes").disabled = true;
  for (const x of ["messages", "presence", "presence-log"]) $(x).replaceChildren();
  for (const x of ["draft-status", "send-status", "notes-status"]) $(x).textContent = "";
  show("conflict", false);
  show("notes-conflict", false);
  renderClip(null);
  await reloadCurrent();
  void loadMessages(id);
  void joinRoom(id);
}

async function reloadCurrent() {
  const id = current;
  const h = handles.get(id);
  const d = await h.get();
  if (id !== current) return;
  $("reply").value = d.text;
  $("draft-status").textContent = d.local ? "Shown from this device" : "";
  enableReply();
  if (h.conflict) showConflict(h.conflict);
  setBadge(id);
  await renderClipFor(id);
}

function enableReply() {
  const busy = sending.has(current);
  $("reply").disabled = busy;
  $("record").disabled = busy || !window.MediaRecorder;
  $("send").disabled = busy;
}

$("reply").addEventListener("input", () => {
  const h = handles.get(current);
  h.set($("reply").value);
  // While a conflict waits for the user's choice nothing is saved: do not claim it is.
  const status = !$("conflict").hidden ? "Not saved — changed elsewhere" : "Saving…";
  $("draft-status").textContent = client.ended ? draftStatus(h) : status;
  setBadge(current);
});

function showConflict(c) {
  $("conflict-theirs").textContent = c.current && !c.current.deleted ? c.current.text || "(empty)" : "(sent or cleared elsewhere)";
  show("conflict", true);
  // The save was refused, not pending: say so until the user picks a version.
  $("draft-status").textContent = "Not saved — changed elsewhere";
}

$("keep-mine").addEventListener("click", async () => {
  const h = handles.get(current);
  show("conflict", false);
  $("draft-status").textContent = "Saving…";
  if (h.conflict) await h.overwrite(h.conflict.seq);
});

$("use-theirs").addEventListener("click", async () => {
  const h = handles.get(current);
  const d = h.discardMine();
  $("reply").value = d.text;
  show("conflict", false);
  $("draft-status").textContent = "";
  setBadge(current);
  await renderClipFor(current);
});

// ---------- audio clip ----------

function renderClip(blob) {
  if (clipUrl) URL.revokeObjectURL(clipUrl);
  clipUrl = blob ? URL.createObjectURL(blob) : null;
  if (clipUrl) $("clip-player").src = clipUrl;
  else $("clip-player").removeAttribute("src");
  show("clip", !!blob);
}

async function renderClipFor(conv) {
  const h = handles.get(conv);
  const has = h.attachments.some((a) => a.name === CLIP);
  const blob = has ? await h.attachment(CLIP) : null;
  if (conv === current) renderClip(blob);
}

$("record").addEventListener("click", async () => {
  if (recorder) return recorder.stop();
  const conv = current;
  const h = handles.get(conv);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    $("draft-status").textContent = `Microphone unavailable: ${err.message}`;
    return;
  }
  const rec = new MediaRecorder(stream);
  const chunks = [];
  rec.ondataavailable = (e) => e.data.size && chunks.push(e.data);
  rec.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    $("record").textContent = "Record audio";
    $("record").setAttribute("aria-pressed", "false");
    const blob = new Blob(chunks, { type: rec.mimeType || "audio/webm" });
    // Attach to the conversation it was recorded in, wherever the user is now.
    const done = h.attach(CLIP, blob);
    setBadge(conv);
    if (conv === current) renderClip(blob);
    await done;
  };
  recorder = rec;
  rec.start();
  $("record").textContent = "Stop recording";
  $("record").setAttribute("aria-pressed", "true");
});

$("clip-remove").addEventListener("click", async () => {
  const conv = current;
  await handles.get(conv).detach(CLIP);
  if (conv === current) renderClip(null);
  setBadge(conv);
});

// ---------- send ----------

$("reply-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  // Everything below applies to the conversation where Send was pressed.
  const conv = current;
  const h = handles.get(conv);
  const text = $("reply").value;
  const attachments = h.attachments.map((a) => a.name);
  if (!text.trim() && !attachments.length) return;
  sending.add(conv);
  enableReply();
  $("send-status").textContent = "Sending…";
  let res = null;
  try {
    await h.flush();
    res = await client.fetch("/demo/api/messages", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ conversation: conv, text, attachments }),
    });
  } catch {
    res = null;
  }
  sending.delete(conv);
  let status;
  if (res?.status === 201) {
    // The draft goes only now that the server confirmed the message.
    const cleared = await h.clear();
    status = cleared ? "Sent" : "Sent (draft kept: it changed elsewhere)";
    setBadge(conv);
    if (conv === current) {
      if (cleared) $("reply").value = "";
      renderClip(null);
      void loadMessages(conv);
    }
  } else {
    status = res?.status === 401 ? "Not sent: session ended — your text is kept" : "Not sent — try again";
  }
  if (conv === current) {
    $("send-status").textContent = status;
    enableReply();
  }
});

async function loadMessages(conv) {
  const r = await client.fetch(`/demo/api/messages?conversation=${encodeURIComponent(conv)}`).catch(() => null);
  if (!r?.ok || conv !== current) return;
  const { messages } = await r.json();
  $("messages").replaceChildren(
    ...messages.map((m) =>
      el(
        "li",
        { "data-testid": "message" },
        el("div", { className: "by", textContent: `${m.principal ?? ""} ${m.created_at ? new Date(m.created_at).toLocaleTimeString() : ""}` }),
        el("div", { textContent: m.text }),
        ...(m.attachments?.length ? [el("div", { className: "muted", textContent: `📎 ${m.attachments.join(", ")}` })] : []),
      ),
    ),
  );
}

// ---------- room: presence and shared notes ----------

async function joinRoom(conv) {
  let info;
  try {
    info = await client.join(conv);
  } catch {
    if (conv === current) $("notes-status").textContent = "Room unavailable";
    return;
  }
  if (conv !== current) return;
  $("notes").value = info.snapshot?.state?.notes ?? "";
  $("notes").disabled = false;
  renderPresence(info.members);
}

/** How a member is named: the name the app gave it (member info), else its user id;
 * an anonymous visitor is "a guest". Always set as text, never as HTML. */
function memberName(m) {
  const name = typeof m.info?.name === "string" ? m.info.name.trim() : "";
  if (name) return name;
  if (m.principal?.startsWith("user:")) return m.principal.slice(5);
  return "a guest";
}

function renderPresence(list) {
  members = list;
  $("presence").replaceChildren(
    ...members.map((m) => {
      const li = el("li", { "data-testid": "presence-member", className: "member" });
      const colour = typeof m.info?.color === "string" && /^#[0-9a-fA-F]{6}$/.test(m.info.color) ? m.info.color : null;
      if (colour) li.append(el("span", { className: "dot", "aria-hidden": "true" }));
      if (colour) li.lastChild.style.background = colour;
      li.append(`${memberName(m)} (${m.role})${m.handle === client.session?.handle ? " — you" : ""}`);
      return li;
    }),
  );
}

function logPresence(text) {
  $("presence-log").prepend(el("li", { "data-testid": "presence-event", textContent: text }));
}

client.on("presence", (p) => p.room === current && renderPresence(p.members));
client.on("member_joined", ({ room, member }) => {
  if (room !== current) return;
  renderPresence([...members.filter((m) => m.connection_id !== member.connection_id), member]);
  logPresence(`${memberName(member)} joined`);
});
client.on("member_left", ({ room, member, reason }) => {
  if (room !== current) return;
  renderPresence(members.filter((m) => m.connection_id !== member.connection_id));
  const name = memberName(member);
  const text = {
    lost: `${name} lost connection`,
    session_ended: `${name}'s session ended`,
    left: `${name} left`,
    access_revoked: `${name} lost access`,
  }[reason] ?? `${name} left (${reason})`;
  logPresence(text);
});

$("notes").addEventListener("input", () => {
  const room = current;
  clearTimeout(notesTimer);
  $("notes-status").textContent = "Saving…";
  notesTimer = setTimeout(async () => {
    const saved = await client.saveSnapshot(room, { notes: $("notes").value });
    if (saved && room === current) $("notes-status").textContent = `Saved (v${saved.version})`;
  }, NOTES_DEBOUNCE_MS);
});

client.on("snapshot", async ({ room, by }) => {
  if (room !== current || by === client.session?.handle || document.activeElement === $("notes")) return;
  const snap = await client.loadSnapshot(room);
  if (snap && room === current) $("notes").value = snap.state?.notes ?? "";
});

$("notes-theirs").addEventListener("click", async () => {
  const snap = await client.loadSnapshot(current);
  $("notes").value = snap?.state?.notes ?? "";
  $("notes-status").textContent = snap ? `Loaded v${snap.version}` : "";
  show("notes-conflict", false);
});

$("notes-mine").addEventListener("click", async () => {
  const saved = await client.saveSnapshot(current, { notes: $("notes").value }, { version: notesConflictVersion });
  $("notes-status").textContent = saved ? `Saved (v${saved.version})` : "Not saved";
  show("notes-conflict", false);
});

// ---------- my devices ----------

function closeDevices() {
  show("devices", false);
  $("devices-toggle").setAttribute("aria-expanded", "false");
}

/** "Firefox 133 on Linux", from what the server read in the user agent. */
function deviceName(d) {
  const browser = d.browser ?? "Unknown browser";
  return d.os ? `${browser} on ${d.os}` : browser;
}

async function renderDevices() {
  $("devices-status").textContent = "Loading…";
  let list;
  try {
    list = await client.devices();
  } catch (err) {
    $("devices-status").textContent = client.ended ? "" : `Cannot list devices (${err.code ?? "network"})`;
    return;
  }
  $("devices-status").textContent = list.length === 1 ? "Only this device is signed in." : `${list.length} devices signed in.`;
  $("device-list").replaceChildren(
    ...list.map((d) => {
      const when = new Date(d.last_active_at).toLocaleString();
      const what = el("div", {}, el("div", { className: "what", textContent: deviceName(d) }), el("div", { className: "muted", textContent: `${d.client_ip ?? "unknown address"} · active ${when} · since ${new Date(d.created_at).toLocaleString()}` }));
      const action = d.current
        ? el("span", { className: "this", textContent: "This device" })
        : el("button", { type: "button", "data-testid": "device-end", textContent: "Sign out", onclick: () => endDevice(d) });
      return el("li", { "data-testid": "device", "data-current": String(d.current) }, what, action);
    }),
  );
}

async function endDevice(d) {
  $("devices-status").textContent = "Signing out…";
  try {
    await client.endDevice(d.handle);
  } catch (err) {
    // not_found: it ended meanwhile (timeout, another device); the list shows it is gone.
    if (err.code !== "not_found") {
      $("devices-status").textContent = `Not signed out (${err.code ?? "network"})`;
      return;
    }
  }
  await renderDevices();
}

$("devices-toggle").addEventListener("click", () => {
  const open = $("devices").hidden;
  show("devices", open);
  $("devices-toggle").setAttribute("aria-expanded", String(open));
  if (open) void renderDevices();
});
$("devices-refresh").addEventListener("click", () => void renderDevices());
$("devices-end-others").addEventListener("click", async () => {
  $("devices-status").textContent = "Signing out the others…";
  try {
    const n = await client.endOtherDevices();
    await renderDevices();
    $("devices-status").textContent = n === 1 ? "Signed out 1 other device." : `Signed out ${n} other devices.`;
  } catch (err) {
    $("devices-status").textContent = `Not signed out (${err.code ?? "network"})`;
  }
});
