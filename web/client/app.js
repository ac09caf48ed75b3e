// Switchboard's browser client. It speaks only the public contract
// (SPEC §3–§7): the HTTP API for accounts, rooms and history, and /ws for
// live messages, sends, typing and presence. Text from users is only ever
// set with textContent, never parsed as HTML.

import * as API from "./api.js";
import { Socket } from "./socket.js";

const MAX_BODY_CHARS = 4000; // SPEC §5
const PAGE = 50;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_SHOW_MS = 4000;

const $ = (id) => document.getElementById(id);

/** el builds an element; string children become text nodes, never HTML. */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.includes("-") || k === "title" || k === "type" || k === "datetime") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

// ---- state ----------------------------------------------------------------

const state = {
  me: null,
  rooms: new Map(), // id -> room (see ensureRoom)
  current: null, // open room id
  thread: null, // open thread's parent message id
  pending: new Map(), // client_id -> {clientId, reqId, room, body, parentId, status, error}
  reqToClient: new Map(), // send request id -> client_id
  socket: null,
  seen: {}, // room id -> last seq seen in order: the resume seqs
  members: new Map(), // room id -> {user id: role}, read when the room opens
};
let reqSeq = 0;
const lastTypingSent = new Map();

function ensureRoom(id) {
  let r = state.rooms.get(id);
  if (!r) {
    r = {
      id, name: "…", visibility: "public", last_seq: 0, unread: 0, mentions: 0,
      msgs: new Map(), // seq -> message: top-level and replies, each once
      updates: new Set(), // seqs of updates (edits, deletes, reactions) seen
      byId: new Map(), // message id -> message
      anchored: false, // the newest page was fetched
      oldestReached: false,
      loadingOlder: false,
      onlineUsers: new Map(),
      typing: new Map(), // user id -> {user, timer}
      readSent: 0,
    };
    state.rooms.set(id, r);
  }
  return r;
}

function updateRoom(data) {
  const r = ensureRoom(data.id);
  r.name = data.name ?? "";
  r.visibility = data.visibility;
  if (typeof data.topic === "string") r.topic = data.topic;
  if (typeof data.archived === "boolean") r.archived = data.archived;
  if (data.peer) r.peer = data.peer;
  if (typeof data.unread === "number") r.unread = data.unread;
  if (typeof data.mentions === "number") r.mentions = data.mentions;
  if (typeof data.last_seq === "number") r.last_seq = Math.max(r.last_seq, data.last_seq);
  return r;
}

function setRooms(list) {
  const ids = new Set(list.map((x) => x.id));
  for (const id of [...state.rooms.keys()]) {
    if (!ids.has(id)) state.rooms.delete(id);
  }
  for (const data of list) updateRoom(data);
  loadPeersPresence();
  for (const id of Object.keys(state.seen)) {
    if (!ids.has(id)) {
      delete state.seen[id]; // left the room: nothing to resume
      saveSeenSoon();
    }
  }
  if (state.current && !state.rooms.has(state.current)) closeRoom();
  renderRooms();
}

// ---- resume seqs, kept across reloads ---------------------------------------

const seenKey = () => "switchboard.seqs." + state.me.id;
const lastRoomKey = () => "switchboard.room." + state.me.id;
let seenTimer = 0;

function loadSeen() {
  try {
    state.seen = JSON.parse(localStorage.getItem(seenKey())) || {};
  } catch {
    state.seen = {};
  }
}

function saveSeen() {
  clearTimeout(seenTimer);
  seenTimer = 0;
  if (state.me) localStorage.setItem(seenKey(), JSON.stringify(state.seen));
}

function saveSeenSoon() {
  if (!seenTimer) seenTimer = setTimeout(saveSeen, 200);
}

// advanceSeen moves the room's resume seq over every message held right
// after it, so a reconnect asks for exactly what this tab has not got.
function advanceSeen(r) {
  let s = state.seen[r.id];
  if (s === undefined) return;
  const before = s;
  while (r.msgs.has(s + 1) || r.updates.has(s + 1)) s++;
  if (s !== before) {
    state.seen[r.id] = s;
    saveSeenSoon();
  }
}

// ---- messages -------------------------------------------------------------

/**
 * addMessage merges one message, from the socket or a history page, into its
 * room. A seq is held once, so a message delivered twice (a resume that
 * overlaps history, a reconnect) is shown once. counted is the room's last
 * seq when the message's reply_count was read: replies after it add to it.
 */
function addMessage(m, { live = false, counted = m.seq } = {}) {
  const r = state.rooms.get(m.room_id) || ensureRoom(m.room_id);
  if (r.name === "…") reloadRoomsSoon();
  const old = r.msgs.get(m.seq);
  if (old) {
    if (counted > old._counted) {
      // Counts only grow: a page answered before a reply that already
      // arrived live must not take that reply back. The page's state is
      // as new as the room's seq when it was read.
      setState(old, m);
      old._counted = counted;
    }
    return false;
  }
  m._counted = counted;
  r.msgs.set(m.seq, m);
  r.byId.set(m.id, m);
  if (m.sender.id === state.me.id && m.client_id && state.pending.has(m.client_id)) {
    state.pending.delete(m.client_id);
  }
  if (m.parent_id) {
    const parent = r.byId.get(m.parent_id);
    if (parent && m.seq > parent._counted) parent.reply_count++;
  }
  if (live) {
    if (state.seen[r.id] === undefined) state.seen[r.id] = m.seq - 1;
    if (m.seq > r.last_seq && m.sender.id !== state.me.id && !viewing(r.id)) {
      r.unread++;
      if ((m.mentions || []).includes(state.me.id)) r.mentions++;
    }
    const t = r.typing.get(m.sender.id);
    if (t) {
      clearTimeout(t.timer);
      r.typing.delete(m.sender.id);
    }
  }
  r.last_seq = Math.max(r.last_seq, m.seq);
  advanceSeen(r);
  return true;
}

// STATE are the fields of a message that updates change (SPEC §13).
const STATE = ["body", "edited_at", "deleted", "reactions", "mentions"];

// setState takes the changeable fields of from into m, and marks m to be
// drawn again.
function setState(m, from) {
  for (const k of STATE) m[k] = from[k];
  m.reply_count = Math.max(m.reply_count, from.reply_count);
  m._v = (m._v || 0) + 1;
}

/**
 * applyUpdate takes an update frame: the seq counts as seen (resume asks
 * from after it), and the message, if held, takes the state it carries. A
 * replayed update may carry a later state than its seq had: the last one
 * applied is the newest.
 */
function applyUpdate(f) {
  const r = state.rooms.get(f.room);
  if (!r) return;
  if (state.seen[r.id] === undefined) state.seen[r.id] = f.seq - 1;
  r.updates.add(f.seq);
  r.last_seq = Math.max(r.last_seq, f.seq);
  const m = r.byId.get(f.message.id);
  if (m) setState(m, f.message);
  advanceSeen(r);
  renderSoon();
}

function addPage(roomId, messages) {
  const r = ensureRoom(roomId);
  const counted = Math.max(r.last_seq, ...messages.map((m) => m.seq));
  for (const m of messages) addMessage(m, { counted });
}

async function loadLatest(r) {
  const page = await API.api("GET", `/api/v1/rooms/${encodeURIComponent(r.id)}/messages?limit=${PAGE}`);
  addPage(r.id, page.messages);
  r.anchored = true;
  if (page.messages.length < PAGE || page.messages[0].seq === 1) r.oldestReached = true;
  if (state.seen[r.id] === undefined) {
    state.seen[r.id] = page.messages.length ? page.messages[page.messages.length - 1].seq : 0;
    advanceSeen(r);
    saveSeenSoon();
  }
}

async function loadOlder(r) {
  if (r.loadingOlder || r.oldestReached || r.msgs.size === 0) return;
  r.loadingOlder = true;
  const lowest = Math.min(...r.msgs.keys());
  try {
    const page = await API.api("GET",
      `/api/v1/rooms/${encodeURIComponent(r.id)}/messages?limit=${PAGE}&before_seq=${lowest}`);
    if (page.messages.length < PAGE || lowest <= 1 || page.messages[0].seq === 1) r.oldestReached = true;
    const list = $("messages");
    const h = list.scrollHeight;
    const top = list.scrollTop;
    addPage(r.id, page.messages);
    if (state.current === r.id) {
      renderMessagesNow();
      list.scrollTop = top + (list.scrollHeight - h);
    }
  } catch (e) {
    showStatus("Could not load older messages: " + e.message);
  } finally {
    r.loadingOlder = false;
  }
  if (state.current === r.id) fillViewport(r);
}

// fillViewport loads older pages while the list does not scroll yet, so
// scrolling up is always possible when there is more.
function fillViewport(r) {
  const list = $("messages");
  if (!r.oldestReached && list.scrollHeight <= list.clientHeight + 10) loadOlder(r);
}

// ---- sending ----------------------------------------------------------------

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const charCount = (s) => [...s.trim()].length;

function send(roomId, body, parentId) {
  const p = { clientId: newClientId(), room: roomId, body, parentId, status: "pending", error: "" };
  state.pending.set(p.clientId, p);
  transmit(p);
}

// transmit sends (or re-sends) a pending message. The client_id makes a
// repeat harmless: the server answers with the first message, storing
// nothing new (SPEC §5).
function transmit(p) {
  p.status = "pending";
  p.error = "";
  if (p.reqId) state.reqToClient.delete(p.reqId); // an answer to the old request no longer matters
  p.reqId = "s" + ++reqSeq;
  state.reqToClient.set(p.reqId, p.clientId);
  const frame = { type: "send", id: p.reqId, room: p.room, body: p.body, client_id: p.clientId };
  if (p.parentId) frame.parent_id = p.parentId;
  state.socket.send(frame); // when offline, it goes out again on "ready"
  renderSoon();
}

function failPending(frame) {
  const clientId = state.reqToClient.get(frame.id);
  state.reqToClient.delete(frame.id);
  const p = clientId && state.pending.get(clientId);
  if (!p) return false;
  p.status = "failed";
  if (frame.code === "rate_limited") {
    const s = Math.max(1, Math.ceil((frame.retry_after_ms || 1000) / 1000));
    p.error = `Too many messages: wait ${s} s, then retry.`;
  } else if (frame.code === "too_large") {
    p.error = `Too long: ${frame.message}`;
  } else {
    p.error = frame.message || frame.code;
  }
  renderSoon();
  return true;
}

function onAck(frame) {
  const clientId = state.reqToClient.get(frame.id);
  state.reqToClient.delete(frame.id);
  if (frame.message) addMessage(frame.message, { live: true });
  if (clientId) state.pending.delete(clientId);
  renderSoon();
}

// ---- socket frames --------------------------------------------------------

function onFrame(f) {
  switch (f.type) {
    case "ready":
      state.me = f.user;
      API.setSessionUser({ ...(API.session() || {}).user, ...f.user });
      renderMe();
      setRooms(f.rooms);
      for (const p of state.pending.values()) if (p.status === "pending") transmit(p);
      if (state.current) {
        loadPresence(state.rooms.get(state.current));
        state.rooms.get(state.current).readSent = 0; // a read sent while offline was lost
        markReadSoon();
      }
      break;
    case "subscribed":
      if (!state.rooms.has(f.room) || state.rooms.get(f.room).name === "…") reloadRoomsSoon();
      break;
    case "unsubscribed":
      state.rooms.delete(f.room);
      if (state.current === f.room) closeRoom();
      renderRooms();
      break;
    case "message": {
      // A message replayed on connect carries its reply_count as stored,
      // which already counts the replies up to the room's last seq that
      // the ready frame (or an earlier page) told.
      const known = (state.rooms.get(f.message.room_id) || {}).last_seq || 0;
      if (addMessage(f.message, { live: true, counted: Math.max(f.message.seq, known) })) {
        renderSoon();
        if (viewing(f.message.room_id)) markReadSoon();
      }
      break;
    }
    case "update":
      applyUpdate(f);
      break;
    case "ack":
      onAck(f);
      break;
    case "error":
      if (!(f.id && failPending(f)) && f.code !== "unauthorized") {
        showStatus(f.message);
      }
      break;
    case "typing":
      onTyping(f);
      break;
    case "presence":
      onPresence(f);
      break;
    case "room_update":
      if (state.rooms.has(f.room.id)) {
        updateRoom(f.room);
        renderRooms();
        if (state.current === f.room.id) renderHeader();
      }
      break;
  }
}

function onTyping(f) {
  if (f.user.id === state.me.id) return;
  const r = state.rooms.get(f.room);
  if (!r) return;
  const old = r.typing.get(f.user.id);
  if (old) clearTimeout(old.timer);
  const timer = setTimeout(() => {
    r.typing.delete(f.user.id);
    renderTyping();
  }, TYPING_SHOW_MS);
  r.typing.set(f.user.id, { user: f.user, timer });
  renderTyping();
}

function onPresence(f) {
  const r = state.rooms.get(f.room);
  if (r) {
    if (f.status === "online") r.onlineUsers.set(f.user.id, f.user);
    else r.onlineUsers.delete(f.user.id);
  }
  if (f.room === state.current) renderOnline();
  if (r && r.peer && r.peer.id === f.user.id) renderRooms();
}

// loadPeersPresence reads whether the peer of each direct room is online,
// for the dots of the room list; presence events keep them current.
function loadPeersPresence() {
  for (const r of state.rooms.values()) {
    if (r.visibility === "direct" && !r.peerPresenceRead) {
      r.peerPresenceRead = true;
      loadPresence(r).then(renderRooms);
    }
  }
}

// Presence events come on transitions only, so the online list of the open
// room is read again now and then (someone already online may have joined).
const PRESENCE_REFRESH_MS = 30_000;
setInterval(() => {
  if (state.current && document.visibilityState === "visible") loadPresence(state.rooms.get(state.current));
}, PRESENCE_REFRESH_MS);

async function loadPresence(r) {
  if (!r) return;
  try {
    const data = await API.api("GET", `/api/v1/rooms/${encodeURIComponent(r.id)}/presence`);
    r.onlineUsers = new Map(data.online.map((u) => [u.id, u]));
    if (state.current === r.id) renderOnline();
  } catch {
    // presence is a nicety; the room works without it
  }
}

// completionMembers reads the room's members for @ completion, once a
// minute at most.
async function completionMembers(r) {
  if (!r || Date.now() - (r.membersAt || 0) < 60_000) return r ? r.members || [] : [];
  r.membersAt = Date.now();
  try {
    r.members = (await API.api("GET", `/api/v1/rooms/${encodeURIComponent(r.id)}/members`)).members.map((m) => m.user);
  } catch {
    r.membersAt = 0; // completion is a nicety; typing works without it
  }
  return r.members || [];
}

let roomsReload = 0;
function reloadRoomsSoon() {
  if (roomsReload) return;
  roomsReload = setTimeout(async () => {
    roomsReload = 0;
    try {
      const data = await API.api("GET", "/api/v1/rooms");
      for (const room of data.rooms) updateRoom(room);
      loadPeersPresence();
      renderRooms();
      if (state.current) renderHeader();
    } catch {
      // the next ready frame brings the list again
    }
  }, 100);
}

// ---- reading ----------------------------------------------------------------

const viewing = (roomId) =>
  state.current === roomId && document.visibilityState === "visible" && atBottom();

function atBottom() {
  const list = $("messages");
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

let readTimer = 0;
function markReadSoon() {
  clearTimeout(readTimer);
  readTimer = setTimeout(markRead, 150);
}

function markRead() {
  const r = state.rooms.get(state.current);
  if (!r || !viewing(r.id)) return;
  const seq = r.last_seq;
  if (r.unread !== 0 || r.mentions !== 0) {
    r.unread = 0;
    r.mentions = 0;
    renderRooms();
  }
  if (seq > r.readSent && state.socket.send({ type: "read", room: r.id, seq })) r.readSent = seq;
}

// ---- rendering --------------------------------------------------------------

const SOURCES = { web: "web", api: "API", sms: "SMS", slack: "Slack" };

function fmtTime(iso) {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return today ? time : d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
}

function messageMeta(sender, created, source) {
  return el("div", { class: "meta" },
    el("span", { class: "sender", text: sender.display_name || sender.username }),
    el("span", { class: "username", text: "@" + sender.username }),
    created ? el("time", { datetime: created, title: new Date(created).toLocaleString(), text: fmtTime(created) }) : null,
    source ? el("span", { class: "badge src-" + source, text: SOURCES[source] || source }) : null);
}

// REACTIONS are the picker's emoji; any other reaction shows as it came.
const REACTIONS = ["👍", "❤️", "😂", "🎉", "👀", "🙏"];

// change sends an edit, delete or react frame; what it changed comes back
// as the update frame every member gets, and a refusal is shown.
function change(frame) {
  state.socket.send({ ...frame, id: "u" + ++reqSeq });
}

function toggleReaction(m, emoji) {
  const mine = (m.reactions || []).some((x) => x.emoji === emoji && x.user_ids.includes(state.me.id));
  change({ type: "react", message_id: m.id, emoji, op: mine ? "remove" : "add" });
}

// bodyNode shows a body with its @mentions marked; mentions of me stand
// out.
function bodyNode(m) {
  if (m.deleted) return el("div", { class: "body tombstone", text: "This message was deleted." });
  const div = el("div", { class: "body" });
  const re = /(^|[^a-zA-Z0-9_.@-])@([a-zA-Z0-9_.-]{3,32})/g;
  let at = 0;
  for (const x of m.body.matchAll(re)) {
    const start = x.index + x[1].length;
    const name = x[2].replace(/[.-]+$/, "");
    div.append(m.body.slice(at, start));
    const me = name.toLowerCase() === state.me.username.toLowerCase();
    div.append(el("span", { class: "mention" + (me ? " to-me" : ""), text: "@" + name }));
    at = start + 1 + name.length;
  }
  div.append(m.body.slice(at));
  return div;
}

function reactionsNode(m) {
  const row = el("div", { class: "reactions" });
  for (const x of m.reactions || []) {
    const mine = x.user_ids.includes(state.me.id);
    row.append(el("button", {
      type: "button", class: "reaction" + (mine ? " mine" : ""), "aria-pressed": String(mine),
      title: mine ? "Remove your reaction" : "React with " + x.emoji,
      onclick: () => toggleReaction(m, x.emoji),
    }, el("span", { class: "emoji", text: x.emoji }), el("span", { class: "count", text: String(x.count) })));
  }
  return row;
}

function actionsNode(m) {
  if (m.deleted) return null;
  // The bar stays shown while its picker is open.
  const open = (yes) => { picker.hidden = !yes; bar.classList.toggle("open", yes); };
  const picker = el("div", { class: "picker", hidden: true },
    ...REACTIONS.map((e) => el("button", {
      type: "button", class: "pick", text: e, title: "React with " + e,
      onclick: () => { open(false); toggleReaction(m, e); },
    })));
  const bar = el("div", { class: "actions" },
    el("button", { type: "button", class: "react-open ghost", text: "☺+", title: "Add a reaction",
      onclick: () => open(picker.hidden) }),
    picker);
  // My messages I edit and delete; an owner or admin deletes anyone's.
  const mine = m.sender.id === state.me.id;
  if (mine) bar.append(el("button", { type: "button", class: "edit ghost", text: "Edit", onclick: () => startEdit(m) }));
  if (mine || ["owner", "admin"].includes(myRole())) {
    bar.append(el("button", { type: "button", class: "delete ghost", text: "Delete", onclick: () => {
      if (confirm("Delete this message?")) change({ type: "delete", message_id: m.id });
    } }));
  }
  return bar;
}

// startEdit puts an editor in place of the message's body.
function startEdit(m) {
  m._editing = true;
  m._v = (m._v || 0) + 1;
  renderSoon();
}

function editorNode(m) {
  const area = el("textarea", { class: "edit-body", rows: 2, "aria-label": "Edit message" });
  area.value = m.body;
  const done = () => { m._editing = false; m._v++; renderSoon(); };
  const save = () => {
    const body = area.value.trim();
    if (body && body !== m.body) change({ type: "edit", message_id: m.id, body });
    done();
  };
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); save(); }
    if (e.key === "Escape") done();
  });
  queueMicrotask(() => area.focus());
  return el("form", { class: "editor", onsubmit: (e) => { e.preventDefault(); save(); } }, area,
    el("button", { type: "submit", class: "save", text: "Save" }),
    el("button", { type: "button", class: "cancel ghost", text: "Cancel", onclick: done }));
}

function messageItem(m, { threadLinks }) {
  const mentionsMe = (m.mentions || []).includes(state.me.id);
  const meta = messageMeta(m.sender, m.created_at, m.source);
  if (m.edited_at && !m.deleted) {
    meta.append(el("span", { class: "edited", text: "(edited)", title: "Edited " + new Date(m.edited_at).toLocaleString() }));
  }
  const li = el("li", {
    class: "msg" + (m.parent_id ? " reply" : "") + (m.sender.id === state.me.id ? " mine" : "") +
      (mentionsMe ? " mentions-me" : "") + (m.deleted ? " deleted" : ""),
    "data-seq": String(m.seq), "data-id": m.id,
  }, meta, m._editing && !m.deleted ? editorNode(m) : bodyNode(m), reactionsNode(m), actionsNode(m));
  if (threadLinks) {
    li.append(el("button", { type: "button", class: "thread-link", onclick: () => openThread(m.id) }));
  }
  li._v = m._v;
  return li;
}

// messageNode returns the element of m in a view ("room", "parent",
// "thread"), made once and then only updated: re-creating elements under
// the pointer would lose clicks and text selections. A change to the
// message (m._v: an update, the editor opened or closed) makes it again.
function messageNode(m, view) {
  m._nodes ??= {};
  let node = m._nodes[view];
  if (node && node._v !== m._v) {
    const fresh = messageItem(m, { threadLinks: view === "room" });
    node.replaceWith(fresh);
    node = m._nodes[view] = fresh;
  }
  if (!node) node = m._nodes[view] = messageItem(m, { threadLinks: view === "room" });
  const link = node.querySelector(".thread-link");
  if (link) {
    const n = m.reply_count;
    const text = n === 0 ? "Reply" : n === 1 ? "1 reply" : `${n} replies`;
    if (link.textContent !== text) link.textContent = text;
    link.classList.toggle("has-replies", n > 0);
  }
  return node;
}

function pendingItem(p) {
  const li = el("li", { class: "msg mine " + p.status, "data-client-id": p.clientId },
    messageMeta(state.me, null, null),
    el("div", { class: "body", text: p.body }));
  if (p.status === "failed") {
    li.append(el("div", { class: "send-state" },
      el("span", { class: "error", text: "Not sent. " + p.error }),
      el("button", { type: "button", class: "retry", text: "Retry", onclick: () => transmit(p) }),
      el("button", { type: "button", class: "discard ghost", text: "Discard", onclick: () => { state.pending.delete(p.clientId); renderSoon(); } })));
  } else {
    li.append(el("div", { class: "send-state", text: "Sending…" }));
  }
  return li;
}

function pendingNode(p) {
  const key = p.status + "\n" + p.error;
  if (!p._node || p._key !== key) {
    p._node = pendingItem(p);
    p._key = key;
  }
  return p._node;
}

// reconcile makes parent's children exactly nodes, in order, moving and
// inserting only what changed.
function reconcile(parent, nodes) {
  const want = new Set(nodes);
  for (const c of [...parent.children]) if (!want.has(c)) c.remove();
  let cur = parent.firstElementChild;
  for (const n of nodes) {
    if (cur === n) {
      cur = cur.nextElementSibling;
    } else {
      parent.insertBefore(n, cur);
    }
  }
}

let renderQueued = false;
function renderSoon() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    renderRooms();
    renderMessagesNow();
    renderThread();
    renderTyping(); // a message ends its sender's "is typing"
  });
}

function sortedMessages(r, keep) {
  return [...r.msgs.keys()].sort((a, b) => a - b).map((s) => r.msgs.get(s)).filter(keep);
}

function renderMessagesNow() {
  const r = state.rooms.get(state.current);
  const list = $("messages");
  if (!r) return;
  const stick = atBottom();
  const lastBefore = list.lastElementChild && list.lastElementChild.dataset.seq;
  const items = sortedMessages(r, (m) => !m.parent_id).map((m) => messageNode(m, "room"));
  for (const p of state.pending.values()) if (p.room === r.id && !p.parentId) items.push(pendingNode(p));
  reconcile(list, items);
  if (stick) {
    list.scrollTop = list.scrollHeight;
    $("jump").hidden = true;
  } else if (list.lastElementChild && list.lastElementChild.dataset.seq !== lastBefore) {
    $("jump").hidden = false;
  }
}

const noReplies = el("li", { class: "placeholder", text: "No replies yet." });

function renderThread() {
  const pane = $("thread-pane");
  const r = state.rooms.get(state.current);
  const parent = r && state.thread && r.byId.get(state.thread);
  if (!parent) {
    pane.hidden = true;
    document.body.classList.remove("thread-open");
    return;
  }
  pane.hidden = false;
  document.body.classList.add("thread-open");
  $("thread-title").textContent = "Thread in #" + r.name;
  reconcile($("thread-parent"), [messageNode(parent, "parent")]);
  const list = $("thread-replies");
  const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const items = sortedMessages(r, (m) => m.parent_id === parent.id).map((m) => messageNode(m, "thread"));
  for (const p of state.pending.values()) if (p.room === r.id && p.parentId === parent.id) items.push(pendingNode(p));
  if (items.length === 0) items.push(noReplies);
  reconcile(list, items);
  if (stick) list.scrollTop = list.scrollHeight;
}

const roomNodes = new Map(); // room id -> its <li> in the sidebar, kept across renders

function roomNode(r) {
  let li = roomNodes.get(r.id);
  if (!li) {
    li = el("li", {}, el("button", { type: "button", class: "room", "data-room": r.id, onclick: () => openRoom(r.id) }));
    roomNodes.set(r.id, li);
  }
  const button = li.firstElementChild;
  const peerOn = !!(r.peer && r.onlineUsers.has(r.peer.id));
  const key = [roomLabel(r), r.visibility, r.unread, r.mentions, peerOn, !!r.archived].join("\n");
  if (button._key !== key) {
    button._key = key;
    const parts = [];
    if (r.visibility === "direct") {
      parts.push(el("span", { class: "peer-dot" + (peerOn ? " on" : ""), title: peerOn ? "online" : "offline" }));
    }
    parts.push(el("span", { class: "room-name", text: roomLabel(r) }));
    if (r.visibility === "private") parts.push(el("span", { class: "lock", title: "private", text: "private" }));
    if (r.archived) parts.push(el("span", { class: "archived", text: "archived" }));
    if (r.mentions > 0) parts.push(el("span", { class: "mentions", "aria-label": `${r.mentions} mentions`, text: "@" + r.mentions }));
    if (r.unread > 0) parts.push(el("span", { class: "unread", "aria-label": `${r.unread} unread`, text: String(r.unread) }));
    button.replaceChildren(...parts);
  }
  button.classList.toggle("active", r.id === state.current);
  return li;
}

// roomLabel is how a room is named on screen: #name, or @peer for a
// direct room.
function roomLabel(r) {
  if (r.visibility === "direct") return "@" + (r.peer ? r.peer.display_name || r.peer.username : "…");
  return "#" + r.name;
}

// myRole is the signed-in user's role in the open room, once read.
const myRole = () => (state.members.get(state.current) || {})[state.me.id];

function renderRooms() {
  const rooms = [...state.rooms.values()].filter((r) => r.name !== "…")
    .sort((a, b) => roomLabel(a).localeCompare(roomLabel(b)));
  for (const id of roomNodes.keys()) if (!state.rooms.has(id)) roomNodes.delete(id);
  reconcile($("room-list"), rooms.map(roomNode));
  $("no-rooms").hidden = rooms.length > 0;
}

function renderHeader() {
  const r = state.rooms.get(state.current);
  $("room-name").textContent = r ? roomLabel(r) + (r.archived ? " (archived)" : "") : "";
  $("room-topic").textContent = r ? r.topic || "" : "";
  const direct = !!r && r.visibility === "direct";
  $("add-member-box").hidden = !r || direct || !!r.archived;
  $("members-open").hidden = !r;
  const role = myRole();
  $("settings-open").hidden = !r || direct || (role !== "owner" && role !== "admin");
  $("leave-room").hidden = !r;
  $("composer").hidden = !r || !!r.archived;
  $("empty-room").hidden = !!r;
  document.title = r ? `${roomLabel(r)} · Switchboard` : "Switchboard";
}

function renderOnline() {
  const r = state.rooms.get(state.current);
  const users = r ? [...r.onlineUsers.values()] : [];
  $("online").replaceChildren(...users.map((u) => el("li", { class: "online-user", "data-user": u.id },
    el("span", { class: "dot", "aria-hidden": "true" }), u.display_name || u.username)));
}

function renderTyping() {
  const r = state.rooms.get(state.current);
  const names = r ? [...r.typing.values()].map((t) => t.user.display_name || t.user.username) : [];
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  $("typing").textContent = text;
}

function renderMe() {
  $("me-name").textContent = state.me.display_name || state.me.username;
}

const CONN_TEXT = {
  connecting: "Connecting…",
  online: "Connected",
  offline: "Offline: waiting for the network…",
};

function onConnState(s, wait) {
  const c = $("conn");
  c.dataset.state = s;
  c.textContent = s === "waiting" ? `Disconnected: reconnecting in ${Math.ceil(wait / 1000)} s… (click to retry now)` : CONN_TEXT[s];
}

let statusTimer = 0;
function showStatus(text) {
  const s = $("add-member-status");
  s.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { s.textContent = ""; }, 6000);
}

// ---- navigation -----------------------------------------------------------

async function openRoom(id) {
  const r = state.rooms.get(id);
  if (!r) return;
  if (state.current !== id) {
    state.current = id;
    state.thread = null;
    localStorage.setItem(lastRoomKey(), id);
  }
  document.body.classList.add("room-open");
  renderHeader();
  renderRooms();
  renderOnline();
  renderTyping();
  renderMessagesNow();
  renderThread();
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
  loadPresence(r);
  loadMembers(r.id);
  if (!r.anchored) {
    try {
      await loadLatest(r);
    } catch (e) {
      showStatus("Could not load messages: " + e.message);
      return;
    }
    if (state.current !== id) return;
    renderMessagesNow();
    list.scrollTop = list.scrollHeight;
  }
  fillViewport(r);
  markReadSoon();
  focusIfIdle($("composer-input"));
}

// focusIfIdle moves the focus to input on wide screens (on a phone it would
// open the keyboard), unless the person is typing in another field: a room
// opens after its history loads, by which time they may have moved on.
function focusIfIdle(input) {
  const a = document.activeElement;
  if (a && a !== input && a.matches("input, textarea, select")) return;
  if (window.matchMedia("(min-width: 721px)").matches) input.focus();
}

function closeRoom() {
  state.current = null;
  state.thread = null;
  document.body.classList.remove("room-open");
  $("messages").replaceChildren();
  renderHeader();
  renderOnline();
  renderTyping();
  renderThread();
  renderRooms();
}

async function openThread(id) {
  const r = state.rooms.get(state.current);
  if (!r) return;
  state.thread = id;
  renderThread();
  try {
    const data = await API.api("GET", `/api/v1/messages/${encodeURIComponent(id)}`);
    const counted = Math.max(r.last_seq, data.message.seq, ...data.replies.map((m) => m.seq));
    addMessage(data.message, { counted });
    for (const m of data.replies) addMessage(m, { counted });
    let after = data.replies.length ? data.replies[data.replies.length - 1].seq : 0;
    // GET /messages/{id} holds the first 200 replies; page through the rest.
    for (let i = 0; data.replies.length >= 200 && after && i < 100; i++) {
      const page = await API.api("GET", `/api/v1/messages/${encodeURIComponent(id)}/replies?limit=200&after_seq=${after}`);
      for (const m of page.replies) addMessage(m, { counted });
      if (page.next_after_seq === null) break;
      after = page.next_after_seq;
    }
  } catch (e) {
    showStatus("Could not load the thread: " + e.message);
  }
  renderSoon();
  focusIfIdle($("thread-input"));
}

// ---- forms ------------------------------------------------------------------

/**
 * setupCompletion offers the room's members whose username or display
 * name starts with the word being typed after "@". Arrow keys move, Tab or
 * Enter takes the choice, Escape closes. It returns the keydown handler,
 * which reports whether it used the key.
 */
function setupCompletion(form, input, target) {
  const list = el("ul", { class: "completions", role: "listbox", hidden: true });
  form.append(list);
  let choices = [], at = 0, start = -1;
  const close = () => { list.hidden = true; choices = []; };
  const choose = (u) => {
    const end = input.selectionStart;
    input.value = input.value.slice(0, start) + "@" + u.username + " " + input.value.slice(end);
    const caret = start + u.username.length + 2;
    input.setSelectionRange(caret, caret);
    close();
    input.dispatchEvent(new Event("input"));
  };
  const show = () => {
    list.replaceChildren(...choices.map((u, i) => el("li", {
      class: "completion" + (i === at ? " active" : ""), role: "option", "aria-selected": String(i === at),
      "data-username": u.username,
      onmousedown: (e) => { e.preventDefault(); choose(u); },
    }, el("span", { class: "sender", text: u.display_name || u.username }), el("span", { class: "username", text: "@" + u.username }))));
    list.hidden = choices.length === 0;
  };
  input.addEventListener("input", async () => {
    let t = target();
    if (!t || !/@[a-zA-Z0-9_.-]*$/.test(input.value.slice(0, input.selectionStart))) return close();
    const members = await completionMembers(state.rooms.get(t.room));
    // What is typed now, which may be more than when the members were asked for.
    t = target();
    const before = input.value.slice(0, input.selectionStart);
    const m = /(^|[^a-zA-Z0-9_.@-])@([a-zA-Z0-9_.-]*)$/.exec(before);
    if (!t || !m) return close();
    start = before.length - m[2].length - 1;
    const prefix = m[2].toLowerCase();
    choices = members.filter((u) => u.id !== state.me.id &&
      (u.username.startsWith(prefix) || (u.display_name || "").toLowerCase().startsWith(prefix))).slice(0, 6);
    at = 0;
    show();
  });
  input.addEventListener("blur", close);
  return (e) => {
    if (list.hidden || e.isComposing) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      at = (at + (e.key === "ArrowDown" ? 1 : choices.length - 1)) % choices.length;
      show();
    } else if (e.key === "Enter" || e.key === "Tab") {
      choose(choices[at]);
    } else if (e.key === "Escape") {
      close();
    } else {
      return false;
    }
    e.preventDefault();
    return true;
  };
}

function setupComposer(form, input, count, button, target) {
  const update = () => {
    const n = charCount(input.value);
    const over = n > MAX_BODY_CHARS;
    count.textContent = over ? `${n} / ${MAX_BODY_CHARS}: too long` : `${n} / ${MAX_BODY_CHARS}`;
    count.classList.toggle("over", over);
    count.classList.toggle("near", !over && n > MAX_BODY_CHARS - 200);
    button.disabled = n === 0 || over;
    // Grow with the text, up to 200 px; a hidden composer has no height.
    input.style.height = "";
    if (input.scrollHeight > input.clientHeight) input.style.height = Math.min(input.scrollHeight + 2, 200) + "px";
  };
  const submit = () => {
    const t = target();
    const body = input.value.trim();
    if (!t || body === "" || charCount(body) > MAX_BODY_CHARS) return;
    send(t.room, body, t.parentId);
    input.value = "";
    update();
  };
  input.addEventListener("input", () => {
    update();
    const t = target();
    const now = Date.now();
    if (t && input.value.trim() && now - (lastTypingSent.get(t.room) || 0) > TYPING_SEND_EVERY_MS) {
      if (state.socket.send({ type: "typing", room: t.room })) lastTypingSent.set(t.room, now);
    }
  });
  const complete = setupCompletion(form, input, target);
  input.addEventListener("keydown", (e) => {
    if (complete(e)) return;
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  update();
}

function setupAuth() {
  let mode = "login";
  const setMode = (m) => {
    mode = m;
    $("tab-login").setAttribute("aria-selected", String(m === "login"));
    $("tab-register").setAttribute("aria-selected", String(m === "register"));
    $("auth-display-row").hidden = m !== "register";
    $("auth-submit").textContent = m === "login" ? "Log in" : "Create account";
    $("auth-password").autocomplete = m === "login" ? "current-password" : "new-password";
    $("auth-error").textContent = "";
  };
  $("tab-login").onclick = () => setMode("login");
  $("tab-register").onclick = () => setMode("register");
  $("auth-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("auth-username").value.trim().toLowerCase();
    const password = $("auth-password").value;
    $("auth-submit").disabled = true;
    $("auth-error").textContent = "";
    try {
      if (mode === "login") await API.login(username, password);
      else await API.register(username, password, $("auth-display").value.trim());
      $("auth-password").value = "";
      startChat();
    } catch (err) {
      $("auth-error").textContent = err.code === "invalid_credentials" ? "Wrong username or password." : err.message;
    } finally {
      $("auth-submit").disabled = false;
    }
  });
}

function setupChat() {
  setupComposer($("composer"), $("composer-input"), $("composer-count"), $("composer-send"),
    () => state.current && { room: state.current });
  setupComposer($("thread-composer"), $("thread-input"), $("thread-count"), $("thread-send"),
    () => state.current && state.thread && { room: state.current, parentId: state.thread });

  $("messages").addEventListener("scroll", () => {
    const r = state.rooms.get(state.current);
    if (!r) return;
    if ($("messages").scrollTop < 80) loadOlder(r);
    if (atBottom()) {
      $("jump").hidden = true;
      markReadSoon();
    }
  });
  $("jump").onclick = () => {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
    $("jump").hidden = true;
    markReadSoon();
  };
  document.addEventListener("visibilitychange", markReadSoon);
  $("back").onclick = () => closeRoom();
  $("thread-close").onclick = () => {
    state.thread = null;
    renderThread();
  };
  $("conn").onclick = () => state.socket && state.socket.reconnectNow();
  $("logout").onclick = () => signOut(true);

  $("create-room").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("create-room-error").textContent = "";
    try {
      const room = await API.api("POST", "/api/v1/rooms", {
        name: $("create-room-name").value.trim(), visibility: $("create-room-visibility").value,
      });
      updateRoom(room);
      $("create-room-name").value = "";
      openRoom(room.id);
    } catch (err) {
      $("create-room-error").textContent = err.code === "conflict" ? "A room with that name exists." : err.message;
    }
  });

  $("add-member").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("add-member-name").value.trim().toLowerCase();
    try {
      const res = await API.api("POST", `/api/v1/rooms/${encodeURIComponent(state.current)}/members`, { username: name });
      showStatus(`Added ${res.user.display_name || res.user.username} to the room.`);
      loadPresence(state.rooms.get(state.current));
      $("add-member-name").value = "";
      $("add-member-box").open = false;
    } catch (err) {
      showStatus(err.code === "not_found" ? `No user named ${name}.` : err.message);
    }
  });

  $("leave-room").onclick = async () => {
    const r = state.rooms.get(state.current);
    if (!r || !confirm(`Leave #${r.name}?`)) return;
    try {
      await API.api("DELETE", `/api/v1/rooms/${encodeURIComponent(r.id)}/members/me`);
      state.rooms.delete(r.id);
      delete state.seen[r.id];
      saveSeenSoon();
      closeRoom();
    } catch (err) {
      showStatus(err.message);
    }
  };
  setupTeams();
  $("browse-open").onclick = openBrowse;
  $("browse-close").onclick = () => $("browse-dialog").close();
  $("profile-open").onclick = openProfile;
  $("profile-cancel").onclick = () => $("profile-dialog").close();
  $("profile-form").addEventListener("submit", saveProfile);
  $("profile-verify").onclick = verifyPhone;
  $("profile-resend").onclick = resendCode;
  $("profile-code").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault(); // Enter here verifies; it does not save the form
      verifyPhone();
    }
  });
}

// ---- teams: members, settings, direct rooms, search, people ----------------

async function loadMembers(roomId) {
  try {
    const data = await API.api("GET", `/api/v1/rooms/${encodeURIComponent(roomId)}/members`);
    state.members.set(roomId, Object.fromEntries(data.members.map((m) => [m.user.id, m.role])));
    if (state.current === roomId) renderHeader();
    return data.members;
  } catch {
    return [];
  }
}

async function openMembers() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  $("members-error").textContent = "";
  $("members-dialog").showModal();
  await renderMembers(r);
}

// canModerate: an owner acts on anyone else, an admin on members (SPEC §14).
function canModerate(myRole, theirRole) {
  return myRole === "owner" ? theirRole !== "owner" : myRole === "admin" && theirRole === "member";
}

async function renderMembers(r) {
  const members = await loadMembers(r.id);
  const mine = myRole();
  const act = (label, method, path, body) => el("button", {
    type: "button", text: label, "data-action": label.toLowerCase(),
    onclick: async () => {
      $("members-error").textContent = "";
      try {
        await API.api(method, path, body);
        await renderMembers(r);
      } catch (err) {
        $("members-error").textContent = err.message;
      }
    },
  });
  const base = `/api/v1/rooms/${encodeURIComponent(r.id)}`;
  $("member-list").replaceChildren(...members.map((m) => {
    const li = el("li", { "data-user": m.user.id },
      el("span", { class: "who", text: m.user.display_name || m.user.username }),
      el("span", { class: "role", text: m.role }));
    if (m.user.id !== state.me.id && r.visibility !== "direct") {
      if (mine === "owner" && m.role !== "owner") {
        li.append(m.role === "admin"
          ? act("Demote", "PATCH", `${base}/members/${m.user.id}`, { role: "member" })
          : act("Promote", "PATCH", `${base}/members/${m.user.id}`, { role: "admin" }));
      }
      if (canModerate(mine, m.role)) {
        li.append(act("Remove", "DELETE", `${base}/members/${m.user.id}`),
          act("Ban", "POST", `${base}/bans`, { user_id: m.user.id }));
      }
    }
    return li;
  }));
  const moderator = mine === "owner" || mine === "admin";
  $("bans-box").hidden = !moderator;
  if (!moderator) return;
  try {
    const data = await API.api("GET", `${base}/bans`);
    const bans = data.bans.map((b) => el("li", { "data-user": b.user.id },
      el("span", { class: "who", text: b.user.display_name || b.user.username }),
      act("Unban", "DELETE", `${base}/bans/${b.user.id}`)));
    if (bans.length === 0) bans.push(el("li", { class: "hint", text: "Nobody is banned." }));
    $("ban-list").replaceChildren(...bans);
  } catch (err) {
    $("members-error").textContent = err.message;
  }
}

function openSettings() {
  const r = state.rooms.get(state.current);
  if (!r) return;
  $("settings-name").value = r.name;
  $("settings-topic").value = r.topic || "";
  $("settings-error").textContent = "";
  $("settings-archive").hidden = myRole() !== "owner" || !!r.archived;
  $("settings-dialog").showModal();
}

async function saveSettings(e) {
  e.preventDefault();
  const r = state.rooms.get(state.current);
  if (!r) return;
  const body = {};
  const name = $("settings-name").value.trim();
  const topic = $("settings-topic").value.trim();
  if (name !== r.name) body.name = name;
  if (topic !== (r.topic || "")) body.topic = topic;
  try {
    if (Object.keys(body).length) updateRoom(await API.api("PATCH", `/api/v1/rooms/${encodeURIComponent(r.id)}`, body));
    $("settings-dialog").close();
    renderRooms();
    renderHeader();
  } catch (err) {
    $("settings-error").textContent = err.code === "conflict" ? "A room with that name exists." : err.message;
  }
}

async function archiveRoom() {
  const r = state.rooms.get(state.current);
  if (!r || !confirm(`Archive #${r.name}? It becomes read-only.`)) return;
  try {
    updateRoom(await API.api("POST", `/api/v1/rooms/${encodeURIComponent(r.id)}/archive`));
    $("settings-dialog").close();
    renderRooms();
    renderHeader();
  } catch (err) {
    $("settings-error").textContent = err.message;
  }
}

// People autocomplete: the datalist of every username field follows what
// is typed (GET /api/v1/users?q=prefix), a little after the last key.
let peopleTimer = 0;
function suggestPeople(input) {
  clearTimeout(peopleTimer);
  const q = input.value.trim();
  if (!q) return;
  peopleTimer = setTimeout(async () => {
    try {
      const data = await API.api("GET", `/api/v1/users?q=${encodeURIComponent(q)}`);
      $("people").replaceChildren(...data.users.filter((u) => u.id !== state.me.id)
        .map((u) => el("option", { value: u.username, label: u.display_name })));
    } catch {
      // suggestions are a nicety
    }
  }, 150);
}

async function startDM(e) {
  e.preventDefault();
  $("dm-error").textContent = "";
  const name = $("dm-name").value.trim().toLowerCase();
  try {
    const room = await API.api("POST", "/api/v1/dms", { username: name });
    updateRoom(room);
    loadPeersPresence();
    $("dm-name").value = "";
    renderRooms();
    openRoom(room.id);
  } catch (err) {
    $("dm-error").textContent = err.code === "not_found" ? `No user named ${name}.` : err.message;
  }
}

let searchCursor = null;
async function runSearch(more) {
  const q = $("search-input").value.trim();
  if (!q) return;
  $("search-error").textContent = "";
  if (!more) {
    searchCursor = null;
    $("search-results").replaceChildren();
    $("search-title").textContent = `Search: ${q}`;
    if (!$("search-dialog").open) $("search-dialog").showModal();
  }
  try {
    let path = `/api/v1/search?q=${encodeURIComponent(q)}`;
    if (more && searchCursor) path += `&cursor=${encodeURIComponent(searchCursor)}`;
    const data = await API.api("GET", path);
    searchCursor = data.next_cursor;
    $("search-more").hidden = !searchCursor;
    const items = data.results.map((hit) => {
      const r = state.rooms.get(hit.room.id);
      const where = r ? roomLabel(r) : hit.room.name ? "#" + hit.room.name : "direct";
      return el("li", { "data-id": hit.message.id },
        el("button", { type: "button", onclick: () => openFound(hit.message) },
          el("div", { class: "where", text: `${where} · ${hit.message.sender.display_name || hit.message.sender.username} · ${fmtTime(hit.message.created_at)}` }),
          el("div", { class: "body", text: hit.message.body })));
    });
    if (!more && items.length === 0) items.push(el("li", { class: "hint", text: "Nothing found." }));
    $("search-results").append(...items);
  } catch (err) {
    $("search-error").textContent = err.message;
  }
}

// openFound opens a search result in context: its room scrolled to it,
// or, for a reply, its thread.
async function openFound(m) {
  $("search-dialog").close();
  if (!state.rooms.has(m.room_id)) return;
  await openRoom(m.room_id);
  const r = state.rooms.get(m.room_id);
  if (m.parent_id) {
    await openThread(m.parent_id);
  }
  for (let i = 0; i < 200 && !r.msgs.has(m.seq) && !r.oldestReached && state.current === r.id; i++) {
    if (r.loadingOlder) await new Promise((done) => setTimeout(done, 50));
    else await loadOlder(r);
  }
  renderMessagesNow();
  const id = m.parent_id || m.id;
  const node = document.querySelector(`#messages li.msg[data-id="${CSS.escape(id)}"]`);
  if (node) {
    document.querySelectorAll("li.msg.found").forEach((n) => n.classList.remove("found"));
    node.classList.add("found");
    node.scrollIntoView({ block: "center" });
  }
}

function setupTeams() {
  $("members-open").onclick = openMembers;
  $("members-close").onclick = () => $("members-dialog").close();
  $("settings-open").onclick = openSettings;
  $("settings-cancel").onclick = () => $("settings-dialog").close();
  $("settings-form").addEventListener("submit", saveSettings);
  $("settings-archive").onclick = archiveRoom;
  $("dm-form").addEventListener("submit", startDM);
  for (const id of ["dm-name", "add-member-name"]) $(id).addEventListener("input", (e) => suggestPeople(e.target));
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    runSearch(false);
  });
  $("search-more").onclick = () => runSearch(true);
  $("search-close").onclick = () => $("search-dialog").close();
}

async function openBrowse() {
  const dialog = $("browse-dialog");
  $("browse-error").textContent = "";
  $("public-list").replaceChildren(el("li", { class: "hint", text: "Loading…" }));
  dialog.showModal();
  try {
    const data = await API.api("GET", "/api/v1/rooms/public");
    const items = data.rooms.map((room) => {
      const mine = state.rooms.has(room.id) && state.rooms.get(room.id).name !== "…";
      return el("li", { "data-room": room.id },
        el("span", { class: "room-name", text: "#" + room.name }),
        el("button", {
          type: "button", text: mine ? "Open" : "Join", class: mine ? "" : "primary",
          onclick: async () => {
            try {
              if (!mine) updateRoom(await API.api("POST", `/api/v1/rooms/${encodeURIComponent(room.id)}/join`));
              dialog.close();
              renderRooms();
              openRoom(room.id);
            } catch (err) {
              $("browse-error").textContent = err.message;
            }
          },
        }));
    });
    if (items.length === 0) items.push(el("li", { class: "hint", text: "No public rooms yet." }));
    $("public-list").replaceChildren(...items);
  } catch (err) {
    $("browse-error").textContent = err.message;
  }
}

// profile is the account as the server last answered (GET or PATCH /me):
// what the phone field is compared with, and what the phone state shows.
let profile = null;

async function openProfile() {
  profile = null;
  $("profile-error").textContent = "";
  $("profile-code").value = "";
  $("profile-dialog").showModal();
  try {
    const p = await API.api("GET", "/api/v1/me");
    $("profile-display").value = p.display_name;
    $("profile-phone").value = p.phone || "";
    $("profile-sms").checked = p.sms_notify;
    $("profile-slack").value = p.slack_user_id || "";
    showPhone(p);
  } catch (err) {
    $("profile-error").textContent = err.message;
  }
}

// showPhone shows whether the number is verified, and the code input while
// it is not (SPEC §8: a number gets no SMS but its code until verified).
function showPhone(p, note) {
  profile = p;
  const phoneState = !p.phone ? "none" : p.phone_verified ? "verified" : "unverified";
  const line = $("profile-phone-state");
  line.dataset.state = phoneState;
  line.textContent = note || {
    none: "",
    verified: "✓ Verified",
    unverified: `Not verified: enter the code sent by SMS to ${p.phone}.`,
  }[phoneState];
  $("profile-verify-box").hidden = phoneState !== "unverified";
}

async function saveProfile(e) {
  e.preventDefault();
  $("profile-error").textContent = "";
  const body = {
    display_name: $("profile-display").value.trim(),
    sms_notify: $("profile-sms").checked,
    slack_user_id: $("profile-slack").value.trim() || null,
  };
  // Only a changed number is sent: each new number costs a code (3 an hour).
  const phone = $("profile-phone").value.trim() || null;
  if (!profile || phone !== profile.phone) body.phone = phone;
  try {
    const p = await API.api("PATCH", "/api/v1/me", body);
    state.me = { id: p.id, username: p.username, display_name: p.display_name };
    API.setSessionUser(state.me);
    renderMe();
    showPhone(p);
    if (body.phone && !p.phone_verified) {
      $("profile-code").value = "";
      $("profile-code").focus(); // the dialog stays open for the code
      return;
    }
    $("profile-dialog").close();
  } catch (err) {
    $("profile-error").textContent = err.message;
  }
}

async function verifyPhone() {
  $("profile-error").textContent = "";
  const code = $("profile-code").value.trim();
  if (!/^[0-9]{6}$/.test(code)) {
    $("profile-error").textContent = "Enter the 6 digits of the code.";
    return;
  }
  try {
    showPhone(await API.api("POST", "/api/v1/me/phone/verify", { code }));
    $("profile-code").value = "";
  } catch (err) {
    $("profile-error").textContent = err.message;
  }
}

async function resendCode() {
  $("profile-error").textContent = "";
  try {
    const p = await API.api("PATCH", "/api/v1/me", { phone: profile.phone });
    showPhone(p, `A new code is on its way to ${p.phone}.`);
    $("profile-code").focus();
  } catch (err) {
    $("profile-error").textContent = err.message;
  }
}

// ---- session ----------------------------------------------------------------

function startChat() {
  const s = API.session();
  if (!s) {
    showAuth();
    return;
  }
  state.me = s.user;
  state.rooms.clear();
  state.pending.clear();
  state.current = null;
  state.thread = null;
  loadSeen();
  $("auth-view").hidden = true;
  $("chat-view").hidden = false;
  renderMe();
  renderHeader();
  state.socket = new Socket({
    onFrame,
    onState: onConnState,
    onAuthFailed: () => signOut(false),
    // Resume from the last seq seen of each room; rooms never seen are
    // left out, so the server starts them from the stored delivery cursor.
    resume: () => ({ ...state.seen }),
  });
  state.socket.start();
  API.api("GET", "/api/v1/rooms").then((data) => {
    for (const room of data.rooms) updateRoom(room);
    renderRooms();
    const last = localStorage.getItem(lastRoomKey());
    if (!state.current && last && state.rooms.has(last)) openRoom(last);
  }).catch((err) => {
    if (err.status === 401) signOut(false);
  });
}

async function signOut(callServer) {
  if (state.socket) state.socket.stop();
  state.socket = null;
  if (state.me) {
    localStorage.removeItem(seenKey());
    localStorage.removeItem(lastRoomKey());
  }
  if (callServer) await API.logout();
  else API.clearSession();
  state.me = null;
  state.rooms.clear();
  state.pending.clear();
  state.current = null;
  document.body.classList.remove("room-open", "thread-open");
  showAuth();
}

function showAuth() {
  $("chat-view").hidden = true;
  $("auth-view").hidden = false;
  document.title = "Switchboard";
  $("auth-username").focus();
}

window.addEventListener("storage", (e) => {
  if (e.key === API.SESSION_KEY && e.newValue === null && state.socket) signOut(false);
});
window.addEventListener("pagehide", saveSeen);

setupAuth();
setupChat();
startChat();
