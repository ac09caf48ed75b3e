// HTTP API (SPEC §3–§5) with the session kept in localStorage: access and
// refresh tokens, rotated before the access token expires and after a 401.

const SESSION_KEY = "switchboard.session";

/** An API error in the shape of SPEC §2. */
export class APIError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The stored session: {user, access_token, refresh_token, expires_at, lifetime_ms} or null. */
export function session() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

function saveSession(body) {
  const s = {
    user: body.user,
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    expires_at: Date.now() + body.expires_in * 1000,
    lifetime_ms: body.expires_in * 1000,
  };
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  return s;
}

/** Forgets the session (this tab and, through the storage event, others). */
export function clearSession() {
  localStorage.removeItem(SESSION_KEY);
}

async function call(method, path, body, token) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = "Bearer " + token;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new APIError(0, "unavailable", "The server cannot be reached.");
  }
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // not JSON: handled below by status
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new APIError(resp.status, e.code || "internal", e.message || `HTTP ${resp.status}`,
      Number(resp.headers.get("Retry-After")) || 0);
  }
  return data;
}

/** Registers an account and stores its session. */
export async function register(username, password, displayName) {
  const body = { username, password };
  if (displayName) body.display_name = displayName;
  return saveSession(await call("POST", "/api/v1/auth/register", body));
}

/** Logs in and stores the session. */
export async function login(username, password) {
  return saveSession(await call("POST", "/api/v1/auth/login", { username, password }));
}

/**
 * How long before its expiry an access token is replaced: a minute, or a
 * quarter of its lifetime when that is shorter.
 */
export function refreshMargin(s) {
  return Math.min(60_000, (s.lifetime_ms || 15 * 60_000) / 4);
}

let refreshing = null;

// refresh rotates the token pair once, even when several callers (or tabs)
// ask at the same time: a refresh token works once, and presenting a used
// one revokes the whole family (SPEC §3).
function refresh(staleAccess) {
  if (!refreshing) {
    const run = async () => {
      const s = session();
      if (!s) throw new APIError(401, "unauthorized", "Signed out.");
      if (s.access_token !== staleAccess && s.expires_at - Date.now() > refreshMargin(s)) {
        return s; // another tab already rotated it
      }
      try {
        return saveSession(await call("POST", "/api/v1/auth/refresh", { refresh_token: s.refresh_token }));
      } catch (e) {
        if (e.status === 401 || e.status === 400) clearSession();
        throw e;
      }
    };
    const locked = navigator.locks
      ? navigator.locks.request("switchboard-refresh", run)
      : run();
    refreshing = locked.finally(() => { refreshing = null; });
  }
  return refreshing;
}

/**
 * A valid access token, refreshed first when it expires within
 * refreshMargin (or when stale names one that must be replaced).
 */
export async function accessToken(stale) {
  const s = session();
  if (!s) throw new APIError(401, "unauthorized", "Signed out.");
  if (stale === s.access_token || s.expires_at - Date.now() < refreshMargin(s)) {
    return (await refresh(s.access_token)).access_token;
  }
  return s.access_token;
}

/** An authenticated request; a 401 refreshes the token and tries once more. */
export async function api(method, path, body) {
  const token = await accessToken();
  try {
    return await call(method, path, body, token);
  } catch (e) {
    if (e.status !== 401) throw e;
    return call(method, path, body, await accessToken(token));
  }
}

/** Ends the session on the server (access token and refresh family) and here. */
export async function logout() {
  const s = session();
  clearSession();
  if (!s) return;
  try {
    await call("POST", "/api/v1/auth/logout", { refresh_token: s.refresh_token }, s.access_token);
  } catch {
    // Signed out here either way; an expired token needs no revoking.
  }
}

/** Updates the stored user (after PATCH /me). */
export function setSessionUser(user) {
  const s = session();
  if (!s) return;
  s.user = user;
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
}

export { SESSION_KEY };
