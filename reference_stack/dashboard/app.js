// Dashboard entry point: reads the state from the URL, wires the filter bar and the three views, and keeps
// the URL in step so the current view and filters can be bookmarked or shared.

import { LEVELS, MAX_ATTR_FILTERS, fetchStats, onFilterRejected, validateFilters } from './api.js';
import { filterButtons, renderChips, wireAddFilter } from './attrs.js';
import { initAuth } from './auth.js';
import { showContext } from './context.js';
import { LiveTail } from './live.js';
import { AUTO_REFRESH_MS, OverviewView } from './overview.js';
import { el, showDetail } from './render.js';
import { SearchView } from './search.js';
import {
  addAttr, attrLabel, attrProblem, hasAttr, parseSearchText, parseState, removeAttr, resolveFilters, serializeState, VIEWS,
} from './state.js';

const SERVICES_REFRESH_MS = 60000;
const TYPING_DELAY_MS = 500;
const $ = (id) => document.getElementById(id);

const form = {
  root: $('filters'),
  levels: [...$('f-levels').querySelectorAll('input[type=checkbox]')],
  service: $('f-service'),
  services: $('f-services'),
  q: $('f-q'),
  range: $('f-range'),
  custom: $('f-custom'),
  from: $('f-from'),
  to: $('f-to'),
  error: $('f-error'),
  hint: $('f-hint'),
  limit: $('search-limit'),
  attrs: $('f-attrs'),
};

initAuth(); // before any request: a 401 opens the key dialog
let state = parseState(window.location.search);
let currentEntry = null;
const applied = { live: null, search: null, overview: null }; // the filter key each view last ran with
// The last filters the server refused (400) and why: shown next to the filters until they change.
let refused = null;
const filterKey = () => JSON.stringify([state.levels, state.service, state.q, state.range, state.from, state.to, state.attrs]);

// An attribute condition picked anywhere (side panel, entry detail) joins the filters; a chip's ✕ removes it.
// One the query string cannot carry is refused beside the filters instead; returns why, or null if added.
function filterAttr(attr) {
  const next = addAttr(state.attrs, attr);
  const problem = refusal(state.attrs, next, attr);
  if (problem) {
    showError(problem);
    return problem;
  }
  state.attrs = next;
  writeForm();
  commit();
  return null;
}
function unfilterAttr(attr) {
  state.attrs = removeAttr(state.attrs, attr);
  writeForm();
  commit();
}

// Dragging across the search histogram: that range becomes a custom range, as a new history entry (Back
// returns to the wider range).
function zoomTo(from, to) {
  state.range = 'custom';
  state.from = from;
  state.to = to;
  writeForm();
  window.history.pushState(null, '', serializeState(state));
  render();
  activate();
}

function openEntry(entry) {
  currentEntry = entry;
  showDetail(entry, {
    attrActions: (key, value) => filterButtons(key, value, filterAttr, { label: '=' }),
    onContext: (item, container) => showContext(item, container, { onOpenEntry: openEntry }),
  });
}
wireAddFilter(filterAttr);
const live = new LiveTail({ onOpenEntry: openEntry });
const search = new SearchView({ onOpenEntry: openEntry, onZoom: zoomTo, onFilter: filterAttr });
const overview = new OverviewView({
  onZoom: zoomTo,
  onPickService: (service) => {
    state.service = service;
    writeForm();
    commit();
  },
});

// datetime-local inputs hold local wall-clock time without a zone; the state holds RFC 3339 UTC.
function toLocalInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 19);
}
function fromLocalInput(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

function writeForm() {
  for (const box of form.levels) box.checked = state.levels.includes(box.value);
  form.service.value = state.service;
  form.q.value = state.q;
  form.range.value = state.range;
  form.custom.hidden = state.range !== 'custom';
  form.from.value = toLocalInput(state.from);
  form.to.value = toLocalInput(state.to);
  form.limit.value = String(state.limit);
  renderChips(form.attrs, state.attrs, unfilterAttr);
  showPending();
}

function readForm() {
  state.levels = LEVELS.filter((level) => form.levels.some((box) => box.checked && box.value === level));
  state.service = form.service.value.trim();
  state.q = parseSearchText(form.q.value).text.trim(); // conditions typed there join on Enter (takeTyped)
  state.range = form.range.value;
  form.custom.hidden = state.range !== 'custom';
  if (state.range === 'custom') {
    state.from = fromLocalInput(form.from.value);
    state.to = fromLocalInput(form.to.value);
    if (!state.from) {
      // A custom range starts from the preset it replaces until the user picks a start.
      state.from = new Date(Date.now() - 3600000).toISOString();
      form.from.value = toLocalInput(state.from);
    }
  } else {
    state.from = null;
    state.to = null;
  }
  state.limit = Number(form.limit.value);
}

// Conditions typed in the search box (`duration_ms>500`, state.js's grammar) become chips on Enter, not while
// typing (`duration_ms>5` is on its way to `duration_ms>500`). false (and they stay in the box) when they
// would pass the API's limit.
function takeTyped() {
  const { text, attrs } = parseSearchText(form.q.value);
  if (!attrs.length) return true;
  let next = state.attrs;
  for (const attr of attrs) {
    const added = addAttr(next, attr);
    const problem = refusal(next, added, attr);
    if (problem) {
      showError(problem);
      return false;
    }
    next = added;
  }
  state.attrs = next;
  form.q.value = text;
  showPending();
  renderChips(form.attrs, state.attrs, unfilterAttr);
  return true;
}

// Why `attr` cannot join `attrs` (`next` is addAttr's answer), or null: one rule for every way of adding one.
function refusal(attrs, next, attr) {
  const problem = attrProblem(attr);
  if (problem || next !== attrs || hasAttr(attrs, attr)) return problem;
  return `attr: at most ${MAX_ATTR_FILTERS} attribute conditions (remove one to add ${attrLabel(attr)})`;
}

// Says under the search box what Enter will add, as the user types a condition.
function showPending() {
  const { attrs } = parseSearchText(form.q.value);
  form.hint.textContent = attrs.length ? `Enter adds: ${attrs.map(attrLabel).join(', ')}` : '';
}

// The filter error next to the search box, and the chip of the refused attribute marked.
function showError(message, field = null) {
  form.error.textContent = message ?? '';
  form.root.classList.toggle('invalid', Boolean(message));
  for (const chip of form.attrs.children) {
    const bad = field !== null && chip.dataset.field === field;
    chip.classList.toggle('invalid', bad);
    if (bad) chip.setAttribute('aria-invalid', 'true');
    else chip.removeAttribute('aria-invalid');
  }
}

onFilterRejected((err) => {
  refused = { key: filterKey(), message: err.message, field: err.field };
  showError(err.message, err.field);
});

// Run the visible view if its filters changed (or `force`), and keep the live tail on the current filters.
function activate({ force = false } = {}) {
  const filters = resolveFilters(state);
  if (refused && refused.key !== filterKey()) refused = null;
  // The live tail has no time range (live.js): a range the Search view would refuse neither stops it nor is
  // reported in the Live view, which does not show the range.
  const liveError = validateFilters({ ...filters, from: null, to: null });
  const error = state.view === 'live' ? liveError : validateFilters(filters);
  if (error) showError(error);
  else if (refused) showError(refused.message, refused.field);
  else showError(null);
  const liveKey = JSON.stringify([filters.levels, filters.service, filters.q, filters.attrs]);
  if (!liveError && applied.live !== liveKey) {
    applied.live = liveKey;
    live.setFilters(filters);
  }
  if (error) return;
  const key = JSON.stringify([state.levels, state.service, state.q, state.range, state.from, state.to, state.limit, state.attrs]);
  if (state.view === 'search' && (force || applied.search !== key)) {
    applied.search = key;
    search.run(filters, state.limit);
  }
  if (state.view === 'overview' && (force || applied.overview !== key)) {
    applied.overview = key;
    overview.refresh(filters);
  }
}

function render() {
  document.body.dataset.view = state.view;
  for (const section of document.querySelectorAll('section.view')) section.hidden = section.dataset.view !== state.view;
  for (const tab of document.querySelectorAll('.tabs a')) {
    const selected = tab.dataset.view === state.view;
    tab.classList.toggle('selected', selected);
    tab.setAttribute('aria-current', selected ? 'page' : 'false');
    tab.href = serializeState({ ...state, view: tab.dataset.view });
  }
  document.title = `OgLogStream · ${state.view}`;
}

// The filters changed: record them in the URL (replacing the entry, so typing does not flood history).
function commit() {
  readForm();
  window.history.replaceState(null, '', serializeState(state));
  render();
  activate();
}

function showView(view) {
  if (!VIEWS.includes(view) || view === state.view) return;
  state.view = view;
  window.history.pushState(null, '', serializeState(state));
  render();
  activate();
}

async function loadServices() {
  try {
    const stats = await fetchStats({ levels: [], service: '', q: '', from: null, to: null, attrs: [] });
    form.services.replaceChildren(...Object.keys(stats.logs_by_service).map((name) => {
      const option = el('option');
      option.value = name;
      return option;
    }));
  } catch {
    // suggestions only; the filter still works by typing the name
  }
}

let typingTimer = null;
form.root.addEventListener('submit', (event) => {
  event.preventDefault();
  clearTimeout(typingTimer);
  if (!takeTyped()) return;
  readForm();
  window.history.replaceState(null, '', serializeState(state));
  render();
  activate({ force: true });
});
for (const box of form.levels) box.addEventListener('change', commit);
for (const input of [form.service, form.range, form.from, form.to, form.limit]) input.addEventListener('change', commit);
form.q.addEventListener('input', () => {
  showPending();
  clearTimeout(typingTimer);
  typingTimer = setTimeout(commit, TYPING_DELAY_MS);
});

for (const tab of document.querySelectorAll('.tabs a')) {
  tab.addEventListener('click', (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return; // new tab: let it open
    event.preventDefault();
    showView(tab.dataset.view);
  });
}

$('search-newest').addEventListener('click', () => activate({ force: true }));
$('overview-refresh').addEventListener('click', () => activate({ force: true }));
setInterval(() => {
  // Only a relative range moves with time; a custom one would fetch the same numbers again.
  if (state.view === 'overview' && $('overview-auto').checked && state.range !== 'custom' && !document.hidden) {
    activate({ force: true });
  }
}, AUTO_REFRESH_MS);

$('detail-close').addEventListener('click', () => {
  $('detail').hidden = true;
});
$('detail-copy').addEventListener('click', async () => {
  const button = $('detail-copy');
  try {
    await navigator.clipboard.writeText(JSON.stringify(currentEntry, null, 2));
    button.textContent = 'Copied';
  } catch {
    button.textContent = 'Copy failed';
  }
  setTimeout(() => {
    button.textContent = 'Copy JSON';
  }, 1500);
});
document.addEventListener('keydown', (event) => {
  if (event.key !== 'Escape') return;
  $('detail').hidden = true;
  $('f-add').open = false;
});

window.addEventListener('popstate', () => {
  state = parseState(window.location.search);
  writeForm();
  render();
  activate();
});

writeForm();
window.history.replaceState(null, '', serializeState(state));
render();
activate();
loadServices();
setInterval(loadServices, SERVICES_REFRESH_MS);
