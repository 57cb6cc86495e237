// API client: the query API and live tail of this origin. Filters are the dashboard's shape:
// {levels: string[], service: string, q: string, from: string|null, to: string|null, attrs: AttrFilter[]}
// (from/to RFC 3339; AttrFilter {key, op: '=' | '!=' | '>' | '>=' | '<' | '<=', value}, sent as the API spells
// it: `attr.<key><op><value>`, docs/api.md).

import { authHeaders, requireKey } from './auth.js';

export const LEVELS = ['debug', 'info', 'warn', 'error', 'fatal'];
// The X-Next-Cursor header of GET /api/logs names the page after the last entry of a full page.
export const NEXT_CURSOR_HEADER = 'X-Next-Cursor';
// query.SETTLED_HEADER: whether a `settle=true` page waited until everything acknowledged before it was stored.
export const SETTLED_HEADER = 'X-Oglog-Settled';

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || null;
  }
}

// Most attribute conditions one search may carry (the server's MAX_ATTR_FILTERS).
export const MAX_ATTR_FILTERS = 20;
export const ATTR_PREFIX = 'attr.';

// The query parameter [name, value] of one attribute condition, as a query-string splitter reads the API's
// spelling: `attr.k!=v` is the name `attr.k!` and value `v`, `attr.k>=5` is `attr.k>` and `5`; a strict
// comparison has no `=` (`attr.k>5`: the name `attr.k>5`, value ''). Its inverse: parseAttrParam (state.js).
export function attrParam(attr) {
  const name = `${ATTR_PREFIX}${attr.key}`;
  if (attr.op === '>' || attr.op === '<') return [`${name}${attr.op}${attr.value}`, ''];
  return [`${name}${attr.op.slice(0, -1)}`, attr.value];
}

// Called with the ApiError of every 400 (a filter the server refused, with its field and reason), from any
// view's request, so the page shows it once next to the filters.
let rejectedHandler = null;
export function onFilterRejected(handler) {
  rejectedHandler = handler;
}

// Query-string parameters for the filters; `time` false for the live tail (it has no time range).
export function filterParams(filters, { time = true } = {}) {
  const params = new URLSearchParams();
  if (filters.levels.length) params.set('level', filters.levels.join(','));
  if (filters.service) params.set('service', filters.service);
  if (filters.q) params.set('q', filters.q);
  for (const attr of filters.attrs || []) params.append(...attrParam(attr));
  if (time && filters.from) params.set('from', filters.from);
  if (time && filters.to) params.set('to', filters.to);
  return params;
}

async function errorFrom(response) {
  // The stack's errors: {"error": summary, "details": [{"field", "reason"}]}.
  let message = `${response.status} ${response.statusText}`;
  let field = null;
  try {
    const body = await response.json();
    const detail = body && Array.isArray(body.details) && body.details[0];
    if (detail) {
      field = String(detail.field);
      message = `${detail.field}: ${detail.reason}`;
    } else if (body && body.error) {
      message = String(body.error);
    }
  } catch {
    // not JSON (a proxy's error page): keep the status line
  }
  return new ApiError(response.status, message, field);
}

async function get(path, params, signal) {
  const query = params.toString();
  let response;
  try {
    // no-store: results must be current, and the API rejects unknown parameters (no cache-busters).
    response = await fetch(query ? `${path}?${query}` : path, {
      cache: 'no-store',
      headers: { Accept: 'application/json', ...authHeaders() },
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, `cannot reach the server (${err.message})`);
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401) requireKey(error.message);
    if (response.status === 400 && rejectedHandler) rejectedHandler(error);
    throw error;
  }
  return response;
}

// One page of entries, newest first, and the cursor of the next (older) page or null.
// `settle`: the server first waits (at most 5 s) until every entry it acknowledged before this request is
// stored; `settled` is false when it gave up waiting (entries accepted just before may be missing).
export async function fetchLogs(filters, { limit, cursor = null, settle = false, signal } = {}) {
  const params = filterParams(filters);
  if (limit) params.set('limit', String(limit));
  if (cursor) params.set('cursor', cursor);
  if (settle) params.set('settle', 'true');
  const response = await get('/api/logs', params, signal);
  return {
    entries: await response.json(),
    nextCursor: response.headers.get(NEXT_CURSOR_HEADER),
    settled: response.headers.get(SETTLED_HEADER) !== 'false',
  };
}

export async function fetchStats(filters, { signal } = {}) {
  return (await get('/api/stats', filterParams(filters), signal)).json();
}

export async function fetchHistogram(filters, { signal } = {}) {
  return (await get('/api/histogram', filterParams(filters), signal)).json();
}

// Top attribute keys of the filtered range, each with its top values: {keys: [{key, count, values: [{value,
// count}]}]} (GET /api/attributes).
export async function fetchAttributes(filters, { keys = 12, values = 6, signal } = {}) {
  const params = filterParams(filters);
  params.set('keys', String(keys));
  params.set('values', String(values));
  return (await get('/api/attributes', params, signal)).json();
}

// The entries around one entry, same service and host: {before: [...], entry, after: [...]}, oldest first.
export async function fetchContext(id, { before = 20, after = 20, signal } = {}) {
  const params = new URLSearchParams({ before: String(before), after: String(after) });
  return (await get(`/api/logs/${encodeURIComponent(id)}/context`, params, signal)).json();
}

// The WebSocket URL of the live tail for these filters, on this page's origin (ws: or wss:).
export function liveUrl(filters) {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = filterParams(filters, { time: false }).toString();
  return `${scheme}//${window.location.host}/ws/live${query ? `?${query}` : ''}`;
}

// Checks the server would make anyway, done first so the user sees them before any request.
// Mirrors filters.py: `q` needs a word (ASCII letters/digits or any non-ASCII character).
export function validateFilters(filters) {
  if (filters.q && !/[0-9A-Za-z\u0080-\uffff]/.test(filters.q)) {
    return 'q: must contain at least one word (letters or digits)';
  }
  if (filters.from && filters.to && Date.parse(filters.from) >= Date.parse(filters.to)) {
    return 'to: must be later than from';
  }
  return null;
}
