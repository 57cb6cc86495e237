// The dashboard's state lives in the URL (location.search), so any view with its filters can be shared:
// ?view=search&level=error,fatal&service=web-api&q=timeout&range=1h  (or from=...&to=... for a custom range),
// plus attribute conditions spelt as the API spells them: &attr.http.route=/x&attr.user!=bot.

import { ATTR_PREFIX, LEVELS, MAX_ATTR_FILTERS } from './api.js';

export const VIEWS = ['live', 'search', 'overview'];
export const RANGES = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400, '7d': 604800, '30d': 2592000 };
export const DEFAULT_RANGE = '1h';
export const PAGE_SIZES = [50, 100, 200, 500];
export const DEFAULT_PAGE_SIZE = 100;

export function defaultState() {
  return {
    view: 'live', levels: [], service: '', q: '', range: DEFAULT_RANGE, from: null, to: null,
    limit: DEFAULT_PAGE_SIZE, attrs: [],
  };
}

function isoOrNull(value) {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

// Parse a query string; anything unknown or malformed falls back to the default (a shared link never breaks).
export function parseState(search) {
  const params = new URLSearchParams(search);
  const state = defaultState();
  const view = params.get('view');
  if (VIEWS.includes(view)) state.view = view;
  const levels = (params.get('level') || '').split(',').map((l) => l.trim().toLowerCase());
  state.levels = LEVELS.filter((level) => levels.includes(level));
  state.service = (params.get('service') || '').slice(0, 100);
  state.q = (params.get('q') || '').slice(0, 1000);
  const from = isoOrNull(params.get('from'));
  if (from) {
    state.range = 'custom';
    state.from = from;
    state.to = isoOrNull(params.get('to'));
  } else if (params.get('range') in RANGES) {
    state.range = params.get('range');
  }
  const limit = Number(params.get('limit'));
  if (PAGE_SIZES.includes(limit)) state.limit = limit;
  for (const [name, value] of params) {
    if (!name.startsWith(ATTR_PREFIX) || state.attrs.length >= MAX_ATTR_FILTERS) continue;
    const negated = name.endsWith('!');
    const key = name.slice(ATTR_PREFIX.length, negated ? -1 : undefined);
    if (key) state.attrs = addAttr(state.attrs, { key, op: negated ? '!=' : '=', value });
  }
  return state;
}

// The canonical query string of a state (defaults left out, so URLs stay short).
export function serializeState(state) {
  const params = new URLSearchParams();
  params.set('view', state.view);
  if (state.levels.length) params.set('level', state.levels.join(','));
  if (state.service) params.set('service', state.service);
  if (state.q) params.set('q', state.q);
  if (state.range === 'custom' && state.from) {
    params.set('from', state.from);
    if (state.to) params.set('to', state.to);
  } else if (state.range !== DEFAULT_RANGE) {
    params.set('range', state.range);
  }
  if (state.limit !== DEFAULT_PAGE_SIZE) params.set('limit', String(state.limit));
  for (const attr of state.attrs) params.append(`${ATTR_PREFIX}${attr.key}${attr.op === '!=' ? '!' : ''}`, attr.value);
  return `?${params}`;
}

// API filters for the state, with a relative range resolved against `now` (ms) into absolute times.
export function resolveFilters(state, now = Date.now()) {
  let from = state.from;
  let to = state.to;
  if (state.range !== 'custom') {
    from = new Date(now - RANGES[state.range] * 1000).toISOString();
    to = null;
  }
  return { levels: [...state.levels], service: state.service, q: state.q.trim(), from, to, attrs: [...state.attrs] };
}

const sameAttr = (a, b) => a.key === b.key && a.op === b.op && a.value === b.value;

// `attrs` with `attr` added: the opposite condition on the same key and value is replaced (filtering a value
// out after filtering it in flips it), a duplicate is not added twice.
export function addAttr(attrs, attr) {
  const rest = attrs.filter((other) => !(other.key === attr.key && other.value === attr.value));
  if (rest.length >= MAX_ATTR_FILTERS) return attrs;
  return attrs.some((other) => sameAttr(other, attr)) ? attrs : [...rest, attr];
}

export function removeAttr(attrs, attr) {
  return attrs.filter((other) => !sameAttr(other, attr));
}
