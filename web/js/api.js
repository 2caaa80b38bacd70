// The REST API as the console uses it: the session cookie travels by
// itself; every change carries the CSRF token; a 401 means the session is
// over, and the app returns to the login page. What the user may do comes
// with the session (its `features`): the console never probes.

let csrf = null;
let onExpired = () => {};
const inflight = new Set();

// Every request of the console goes through here, so that logging out can
// wait for those still under way (they would otherwise come back 401).
export function apiFetch(path, init = {}) {
  const p = fetch('/api/v1' + path, { credentials: 'same-origin', ...init });
  inflight.add(p);
  p.catch(() => {}).finally(() => inflight.delete(p));
  return p;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `The server answered ${status}.`);
    this.status = status;
    this.field = body?.error?.field || null;
    this.code = body?.error?.code || null;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return null;
}

export function setExpiredHandler(fn) { onExpired = fn; }

export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD') {
    headers['X-CSRF-Token'] = csrf || cookie('armada_csrf') || '';
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await apiFetch(path, {
    method, headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  let data = null;
  const ct = res.headers.get('Content-Type') || '';
  if (ct.startsWith('application/json')) data = await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401 && !quiet401) onExpired();
    throw new ApiError(res.status, data);
  }
  return data;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b) => api('POST', p, b === undefined ? {} : b);
export const del = (p) => api('DELETE', p);

// Whether the browser holds a session cookie at all (the CSRF cookie is
// readable; the session cookie itself is HttpOnly and expires with it).
export const hasSession = () => cookie('armada_csrf') !== null && cookie('armada_csrf') !== '';

export async function login(name, password) {
  const r = await api('POST', '/sessions', { name, password, cookie: true }, { quiet401: true });
  csrf = r.csrf_token;
  return r;
}

// Ends the session once the requests under way have come back (the caller
// stops starting new ones first).
export async function logout() {
  while (inflight.size) await Promise.allSettled([...inflight]);
  try { await api('DELETE', '/sessions/current', undefined, { quiet401: true }); } catch (e) { /* already gone */ }
  csrf = null;
}

// The session's feature list as an object: { 'create-vm': true, ... }.
export const featureSet = list => Object.fromEntries((list || []).map(f => [f, true]));
