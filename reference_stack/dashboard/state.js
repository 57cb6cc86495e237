// The dashboard's state lives in the URL (location.search), so any view with its filters can be shared:
// ?view=search&level=error,fatal&service=web-api&q=timeout&range=1h  (or from=...&to=... for a custom range),
// plus attribute conditions spelt as the API spells them: &attr.http.route=/x&attr.user!=bot&attr.ms%3E=500.
// An attribute condition is {key, op, value}: op one of ATTR_OPS, value a string ('*' with = / != means
// "present" / "absent", as in the API).

import { ATTR_PREFIX, LEVELS, MAX_ATTR_FILTERS, attrParam } from './api.js';

// The API's attribute operators (docs/api.md); the comparisons take a number.
export const ATTR_OPS = ['=', '!=', '>', '>=', '<', '<='];

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
  // A hand-written `q=duration_ms>500 timeout` means what typing it and Enter does: a condition and a word.
  const typed = parseSearchText((params.get('q') || '').slice(0, 1000));
  state.q = typed.text;
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
    const attr = parseAttrParam(name, value);
    if (attr) state.attrs = addAttr(state.attrs, attr);
  }
  for (const attr of typed.attrs) state.attrs = addAttr(state.attrs, attr);
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
  for (const attr of state.attrs) params.append(...attrParam(attr));
  return `?${params}`;
}

// One query parameter (name, value), as URLSearchParams splits it, back into {key, op, value}: the inverse of
// attrParam (api.js) and the same reading as the server's AttrFilter.parse. The splitter leaves an operator's
// first character on the name (`attr.k>=5` -> name `attr.k>`, value `5`; `attr.k!=v` -> `attr.k!`, `v`), and a
// strict comparison has no `=` at all (`attr.k>5` -> name `attr.k>5`, value ''). null without a key. A bad
// number is kept: the server's 400 names it next to the filters (one set of rules, the server's).
export function parseAttrParam(name, value) {
  let rest = name.slice(ATTR_PREFIX.length);
  let op = '=';
  const cuts = [rest.indexOf('>'), rest.indexOf('<')].filter((i) => i >= 0);
  const cut = cuts.length ? Math.min(...cuts) : -1;
  if (cut >= 0 && cut < rest.length - 1 && value === '') {
    op = rest[cut];
    value = rest.slice(cut + 1);
    rest = rest.slice(0, cut);
  } else if (['!', '>', '<'].includes(rest.slice(-1))) {
    op = `${rest.slice(-1)}=`;
    rest = rest.slice(0, -1);
  }
  return rest ? { key: rest, op, value } : null;
}

// Why a condition cannot be sent as the API spells it, or null. The query string cannot carry a key that ends
// in !, > or <, or that holds > or < before a value with no =, nor a comparison without a number (docs/api.md):
// sent anyway, it would mean another condition, so it is refused before it becomes a chip.
export function attrProblem(attr) {
  if (!attr.key) return 'attr: the attribute key is empty';
  const field = `${ATTR_PREFIX}${attr.key}`;
  if (!['=', '!='].includes(attr.op) && !attr.value.trim()) return `${field}: ${attr.op} needs a number`;
  const back = parseAttrParam(...attrParam(attr));
  if (!back || back.key !== attr.key || back.op !== attr.op || back.value !== attr.value) {
    return `${field}: this key cannot be filtered on (it ends in !, > or <, or holds > or <; see docs/api.md)`;
  }
  return null;
}

// How a condition reads on its chip: `duration_ms > 500`, `request_id = abc`, `user exists`, `user missing`.
export function attrLabel(attr) {
  if (attr.value === '*' && (attr.op === '=' || attr.op === '!=')) {
    return `${attr.key} ${attr.op === '=' ? 'exists' : 'missing'}`;
  }
  return `${attr.key} ${attr.op} ${attr.value}`;
}

// The search box's grammar: whitespace-separated words, where a word shaped `key<op>value` is an attribute
// condition instead of text. key: a letter or _ then letters, digits, _ . - (other keys: the attribute
// panel); op: = != > >= < <= as in the API; value: the rest of the word, or "a quoted value" with spaces
// (\" for a quote); `key=*` / `key!=*` mean present / absent. Anything else stays full-text search.
// Returns {text: the words left for `q`, attrs: the conditions in order}.
const CONDITION = /^([\p{L}_][\p{L}\p{N}_.-]*)(!=|>=|<=|=|>|<)("(?:[^"\\]|\\.)*"|[^\s"]\S*)$/u;
const WORD = /(?:[^\s"]+|"(?:[^"\\]|\\.)*"?)+/g;

export function parseSearchText(input) {
  const words = [];
  const attrs = [];
  for (const [word] of input.matchAll(WORD)) {
    const match = CONDITION.exec(word);
    if (!match) {
      words.push(word);
      continue;
    }
    let value = match[3];
    if (value.startsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    attrs.push({ key: match[1], op: match[2], value });
  }
  return { text: words.join(' '), attrs };
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
export const hasAttr = (attrs, attr) => attrs.some((other) => sameAttr(other, attr));

// `attrs` with `attr` added: the opposite condition on the same key and value is replaced (filtering a value
// out after filtering it in flips it; `=`/`!=` only: `>=500` and `<=500` together are numeric equality), a
// duplicate is not added twice.
const OPPOSITE = { '=': '!=', '!=': '=' };
export function addAttr(attrs, attr) {
  if (attrs.some((other) => sameAttr(other, attr))) return attrs;
  const rest = attrs.filter((other) => !(other.key === attr.key && other.value === attr.value && other.op === OPPOSITE[attr.op]));
  return rest.length >= MAX_ATTR_FILTERS ? attrs : [...rest, attr];
}

export function removeAttr(attrs, attr) {
  return attrs.filter((other) => !sameAttr(other, attr));
}
