// @ts-check
/** REST calls and the signed-in user's tokens (PROTOCOL.md §6).
 *
 * Tokens live in localStorage so that a reload or a new tab stays signed in. The access
 * token is refreshed a minute before it expires (the refresh token rotates: each one
 * works once), and on a 401 once, before giving up and signing out.
 */

const KEY = "orchestra.auth";

/** @typedef {{accessToken: string, refreshToken: string, expiresAt: number, user: any}} Auth */

/** @type {Auth | null} */
let auth = load();
/** @type {Set<(auth: Auth | null) => void>} */
const listeners = new Set();
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer;
/** @type {Promise<Auth | null> | null} */
let refreshing = null;

function load() {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

/** @param {Auth | null} next */
function store(next) {
  auth = next;
  if (next) localStorage.setItem(KEY, JSON.stringify(next));
  else localStorage.removeItem(KEY);
  clearTimeout(timer);
  if (next) {
    const inMs = Math.max(5_000, next.expiresAt - Date.now() - 60_000);
    timer = setTimeout(() => void refresh(), inMs);
  }
  for (const listener of listeners) listener(next);
}

/** @param {any} body */
function fromLogin(body) {
  return {
    accessToken: body.accessToken,
    refreshToken: body.refreshToken,
    expiresAt: Date.now() + body.expiresIn * 1000,
    user: body.user,
  };
}

export function current() {
  return auth;
}

/** @param {(auth: Auth | null) => void} listener */
export function onAuth(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export class ApiError extends Error {
  /** @param {number} status @param {any} info */
  constructor(status, info) {
    super((info && info.message) || `HTTP ${status}`);
    this.status = status;
    this.code = info && info.code;
  }
}

/** What went wrong, for the page: the protocol's code (when there is one) and message.
 * @param {any} error */
export function describe(error) {
  return `${(error && error.code) || ""} ${(error && error.message) || error}`.trim();
}

/** @param {string} method @param {string} path @param {any} [body] @param {string} [token] */
async function raw(method, path, body, token) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) throw new ApiError(response.status, data.error);
  return data;
}

/** @param {string} username @param {string} password */
export async function login(username, password) {
  store(fromLogin(await raw("POST", "/api/auth/login", { username, password })));
}

export async function logout() {
  const token = auth && auth.accessToken;
  store(null);
  if (token) await raw("POST", "/api/auth/logout", {}, token).catch(() => undefined);
}

/** A new access token with the refresh token; signs out if that no longer works. */
export function refresh() {
  if (!refreshing) {
    const token = auth && auth.refreshToken;
    refreshing = (async () => {
      if (!token) return null;
      try {
        store(fromLogin(await raw("POST", "/api/auth/refresh", { refreshToken: token })));
      } catch (error) {
        if (error instanceof ApiError && error.status < 500) store(null);
        else throw error;
      }
      return auth;
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** An authenticated REST call; one refresh and retry on 401.
 * @param {string} method @param {string} path @param {any} [body] */
export async function api(method, path, body) {
  if (!auth) throw new ApiError(401, { code: "AUTH_001", message: "signed out" });
  try {
    return await raw(method, path, body, auth.accessToken);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    const renewed = await refresh();
    if (!renewed) throw error;
    return raw(method, path, body, renewed.accessToken);
  }
}

if (auth) store(auth); // schedules the refresh of a token kept from before
