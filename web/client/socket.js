// The /ws connection (SPEC §6): auth frame with resume seqs, frames split on
// "\n", heartbeats, reconnects with exponential backoff and jitter, and a
// fresh token sent on the open socket before the last one expires (SPEC §3:
// the server closes a socket whose token expired).

import { accessToken, refreshMargin, session } from "./api.js";

const SUBPROTOCOL = "switchboard.v1";
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const PING_EVERY_MS = 25_000;
const PONG_WAIT_MS = 10_000;

/**
 * backoff returns the wait before reconnect attempt n (0-based): an
 * exponential ceiling with "equal jitter", half fixed and half random, so
 * that clients dropped together do not come back together.
 */
export function backoff(n) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** n);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * Socket keeps one authenticated WebSocket open. Callbacks:
 *   onFrame(obj)                 every server object
 *   onState(state, detail)       "connecting" | "online" | "waiting" (detail: ms) | "offline"
 *   onAuthFailed()               the session cannot be refreshed: sign out
 * resume() returns the {room: seq} map sent with auth.
 */
export class Socket {
  constructor({ onFrame, onState, onAuthFailed, resume }) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.onAuthFailed = onAuthFailed;
    this.resume = resume;
    this.ws = null;
    this.ready = false; // "ready" received on this.ws
    this.attempt = 0;
    this.timer = 0;
    this.pingTimer = 0;
    this.pongTimer = 0;
    this.stopped = false;
    this.staleToken = undefined;
    this.connecting = false; // fetching a token before opening
    this.refusals = 0; // 4401 closes since the last ready
    this.token = null; // the access token this.ws speaks with
    this.tokenExpiresAt = 0; // when it expires, by this browser's clock
    this.reauthTimer = 0;
    this.wake = () => this.reconnectNow();
    window.addEventListener("online", this.wake);
  }

  start() {
    this.connect();
  }

  /** Closes for good (logout). */
  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.wake);
    clearTimeout(this.timer);
    clearTimeout(this.reauthTimer);
    this.clearHeartbeat();
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.ready;
  }

  /** Sends obj if the connection is ready; returns whether it was sent. */
  send(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  reconnectNow() {
    if (this.stopped || this.connecting || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  async connect() {
    if (this.stopped || this.connecting) return;
    clearTimeout(this.timer);
    this.ready = false;
    this.connecting = true;
    this.onState("connecting");
    let token;
    try {
      token = await accessToken(this.staleToken);
    } catch (e) {
      this.connecting = false;
      if (e.status === 401 || e.status === 400) {
        this.onAuthFailed();
        return;
      }
      this.retry();
      return;
    }
    this.connecting = false;
    this.staleToken = undefined;
    if (this.stopped) return;
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    const ws = new WebSocket(url, SUBPROTOCOL);
    this.ws = ws;
    this.useToken(token);
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", token, resume: this.resume() }));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.heartbeat();
      for (const line of String(ev.data).split("\n")) {
        if (!line) continue;
        let obj;
        try {
          obj = JSON.parse(line);
        } catch {
          continue;
        }
        if (obj.type === "ready") {
          this.ready = true;
          this.attempt = 0;
          this.refusals = 0;
          this.onState("online");
          this.scheduleReauth();
        } else if (obj.type === "authed") {
          this.scheduleReauth();
          continue;
        } else if (obj.type === "error" && obj.code === "unauthorized" && !this.ready) {
          this.staleToken = token; // refresh before the next attempt
        } else if (obj.type === "pong") {
          continue;
        }
        this.onFrame(obj);
      }
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.ready = false;
      clearTimeout(this.reauthTimer);
      this.clearHeartbeat();
      if (this.stopped) return;
      if (ev.code === 4401) {
        // Refresh the token first (a refresh that fails signs out). Only the
        // first refusal in a row reconnects at once: a server that keeps
        // refusing fresh tokens gets the usual backoff.
        this.staleToken = token;
        if (this.refusals++ === 0) {
          this.connect();
          return;
        }
      }
      this.retry();
    };
  }

  // scheduleReauth arms the sending of a fresh token on the open socket a
  // little before the current one expires, so that the server never closes
  // it for an expired token and nothing is reconnected or caught up.
  scheduleReauth() {
    clearTimeout(this.reauthTimer);
    const s = session();
    if (!s) return;
    const wait = Math.max(0, this.tokenExpiresAt - Date.now() - refreshMargin(s));
    this.reauthTimer = setTimeout(() => this.reauth(), wait);
  }

  // useToken records the token the socket speaks with; accessToken has just
  // returned it, so it is the stored session's.
  useToken(token) {
    const s = session();
    this.token = token;
    this.tokenExpiresAt = s && s.access_token === token ? s.expires_at : Date.now();
  }

  async reauth() {
    const ws = this.ws;
    if (!this.open) return;
    let token;
    try {
      token = await accessToken(this.token); // a new one unless another tab just made it
    } catch (e) {
      if (e.status === 401 || e.status === 400) {
        this.onAuthFailed();
        return;
      }
      this.reauthTimer = setTimeout(() => this.reauth(), 5_000);
      return;
    }
    if (ws !== this.ws || !this.open) return;
    this.useToken(token);
    this.send({ type: "auth", id: "reauth", token });
  }

  retry() {
    const wait = backoff(this.attempt++);
    // Without a network the "online" event reconnects at once; the timer
    // stays as a fallback.
    this.onState(navigator.onLine === false ? "offline" : "waiting", wait);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  // heartbeat schedules a ping after a quiet spell; a pong (or anything)
  // must come back within PONG_WAIT_MS or the connection is dropped and
  // remade, so that a silently dead network is noticed.
  heartbeat() {
    this.clearHeartbeat();
    this.pingTimer = setTimeout(() => {
      if (!this.send({ type: "ping", id: "hb" })) return;
      this.pongTimer = setTimeout(() => {
        if (this.ws) this.ws.close(4000);
        if (this.ws) this.ws.onclose({ code: 4000 });
      }, PONG_WAIT_MS);
    }, PING_EVERY_MS);
  }

  clearHeartbeat() {
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
  }
}
