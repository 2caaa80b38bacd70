// The REST API as the console uses it: the session cookie travels by
// itself; every change carries the CSRF token; a 401 means the session is
// over, and the app returns to the login page.

let csrf = null;
let onExpired = () => {};

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
  const res = await fetch('/api/v1' + path, {
    method, headers, credentials: 'same-origin',
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

export async function login(name, password) {
  const r = await api('POST', '/sessions', { name, password, cookie: true }, { quiet401: true });
  csrf = r.csrf_token;
  return r;
}

export async function logout() {
  try { await api('DELETE', '/sessions/current', undefined, { quiet401: true }); } catch (e) { /* already gone */ }
  csrf = null;
}

// Whether an endpoint exists on this server, asked with a harmless GET: an
// unknown path answers 404 "no API resource", a POST-only one 405, a real
// GET its answer. Cached per path pattern (ids folded).
const probes = new Map();
async function probe(path) {
  try {
    const r = await fetch('/api/v1' + path, { credentials: 'same-origin' });
    if (r.status !== 404) return true;
    const b = await r.json().catch(() => null);
    return !/no API resource/i.test(b?.error?.message || 'no API resource');
  } catch (e) {
    return false;
  }
}
export function exists(path) {
  const key = path.replace(/\/\d+(?=\/|$|\?)/g, '/#').replace(/\?.*/, '');
  if (!probes.has(key)) probes.set(key, probe(path));
  return probes.get(key);
}
