// An independent cross-check of the Go load tester's `fanout` scenario,
// written for k6 (https://k6.io): SUBS WebSocket subscribers of one room,
// one sender sending every INTERVAL_MS for DURATION_S, and per subscriber a
// check that every message arrives once and in seq order. Run it with
// `make k6` (loadtest/k6/run.sh), which starts a fresh server; against a
// running one: k6 run -e BASE=http://127.0.0.1:8080 loadtest/k6/fanout.js
// (its limits must allow the sender's rate).
import http from "k6/http";
import { WebSocket } from "k6/websockets";
import { Counter, Trend } from "k6/metrics";
import exec from "k6/execution";

const BASE = __ENV.BASE || "http://127.0.0.1:8080";
const SUBS = Number(__ENV.SUBS || 200);
const ACCOUNTS = Number(__ENV.ACCOUNTS || 20);
const INTERVAL_MS = Number(__ENV.INTERVAL_MS || 10);
const DURATION_S = Number(__ENV.DURATION_S || 10);
const SENDS = Math.floor((DURATION_S * 1000) / INTERVAL_MS);
const CONNECT_S = 20; // subscribers connect before the sender starts
const GRACE_S = 5; // slack for the last deliveries

const latency = new Trend("fanout_latency", true); // send → receipt, ms
const delivered = new Counter("fanout_delivered");
const lost = new Counter("fanout_lost");
const repeated = new Counter("fanout_repeated");
const outOfOrder = new Counter("fanout_out_of_order");
const acked = new Counter("fanout_acked");

export const options = {
  summaryTrendStats: ["avg", "min", "med", "max", "p(95)", "p(99)"],
  scenarios: {
    subscribers: {
      executor: "per-vu-iterations", vus: SUBS, iterations: 1, exec: "subscriber",
      maxDuration: `${CONNECT_S + 3 * DURATION_S + 2 * GRACE_S + 30}s`,
    },
    sender: {
      executor: "per-vu-iterations", vus: 1, iterations: 1, exec: "sender",
      startTime: `${CONNECT_S}s`, maxDuration: `${3 * DURATION_S + GRACE_S + 30}s`,
    },
  },
  thresholds: {
    fanout_lost: ["count==0"],
    fanout_repeated: ["count==0"],
    fanout_out_of_order: ["count==0"],
    fanout_latency: ["p(99)<100"],
    fanout_acked: [`count==${SENDS}`], // the sender kept up
  },
};

function post(path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = http.post(`${BASE}${path}`, JSON.stringify(body), { headers });
  if (res.status >= 300) throw new Error(`POST ${path}: ${res.status} ${res.body}`);
  return res.json();
}

// setup makes the accounts (bcrypt is slow, so subscribers share them) and
// a public room they all join.
export function setup() {
  const run = `k6${Date.now().toString(36)}`;
  const tokens = [];
  for (let i = 0; i < ACCOUNTS + 1; i++) {
    tokens.push(post("/api/v1/auth/register", { username: `${run}-${i}`, password: "k6 password 1" }).access_token);
  }
  const room = post("/api/v1/rooms", { name: `${run}-fanout`, visibility: "public" }, tokens[0]).id;
  for (const t of tokens.slice(1)) post(`/api/v1/rooms/${room}/join`, {}, t);
  return { room, sender: tokens[0], readers: tokens.slice(1) };
}

function dial(token) {
  return new WebSocket(`${BASE.replace(/^http/, "ws")}/ws`, "switchboard.v1",
    { headers: { Authorization: `Bearer ${token}` } });
}

// forEachObject calls fn with each server object of a frame (a frame may
// carry several, one per line).
function forEachObject(data, fn) {
  for (const line of data.split("\n")) if (line) fn(JSON.parse(line));
}

export function subscriber(data) {
  const token = data.readers[exec.vu.idInTest % data.readers.length];
  const ws = dial(token);
  let last = 0;
  ws.onmessage = (e) => forEachObject(e.data, (f) => {
    if (f.type !== "message" || f.message.room_id !== data.room) return;
    const seq = f.message.seq;
    if (seq <= last) {
      repeated.add(1);
      return;
    }
    if (seq !== last + 1) outOfOrder.add(1);
    last = seq;
    delivered.add(1);
    latency.add(Date.now() - Number(f.message.body.split(" ")[1]));
  });
  ws.onerror = (e) => console.error(`subscriber ${exec.vu.idInTest}: ${e.error}`);
  // Read until the sender is done, then count what never came.
  // Read until every message came, or until a deadline that leaves a slow
  // sender (k6's timers drift under load) three times its schedule; then
  // whatever the room holds beyond the last seq received was lost.
  const end = exec.scenario.startTime + (CONNECT_S + 3 * DURATION_S + 2 * GRACE_S) * 1000;
  const done = () => {
    clearInterval(poll);
    const res = http.get(`${BASE}/api/v1/rooms/${data.room}/messages?limit=1`,
      { headers: { Authorization: `Bearer ${token}` } });
    const newest = res.status === 200 && res.json().messages.length ? res.json().messages[0].seq : SENDS;
    lost.add(Math.max(0, newest - last));
    ws.close();
  };
  const poll = setInterval(() => {
    if (last >= SENDS || Date.now() > end) done();
  }, 100);
}

export function sender(data) {
  const ws = dial(data.sender);
  let sent = 0;
  ws.onopen = () => {
    const timer = setInterval(() => {
      sent++;
      ws.send(JSON.stringify({ type: "send", id: String(sent), room: data.room, body: `sent ${Date.now()}` }));
      if (sent === SENDS) clearInterval(timer);
    }, INTERVAL_MS);
  };
  ws.onmessage = (e) => forEachObject(e.data, (f) => {
    if (f.type === "ack") {
      acks++;
      acked.add(1);
    }
    if (f.type === "error") console.error(`send refused: ${JSON.stringify(f)}`);
  });
  let acks = 0;
  const end = Date.now() + (3 * DURATION_S + GRACE_S) * 1000;
  const poll = setInterval(() => {
    if (acks >= SENDS || Date.now() > end) {
      clearInterval(poll);
      ws.close();
    }
  }, 100);
}
