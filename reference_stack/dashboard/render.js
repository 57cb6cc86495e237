// DOM building shared by the views. Log data is untrusted: it only ever reaches the page as text
// (textContent, attribute values via setAttribute on inert attributes), never as markup.

import { LEVELS } from './api.js';

// createElement with a class and text/child content. Strings become text nodes, never HTML.
export function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

export function levelOf(entry) {
  return LEVELS.includes(entry.level) ? entry.level : 'info';
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

// Local wall-clock time with milliseconds (the full RFC 3339 UTC value is in the row's title).
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function formatDateTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${formatTime(iso)}`;
}

// Whether `iso` falls on the local calendar day of `now` (ms); an unreadable time counts as today (it is
// shown as given).
export function isToday(iso, now = Date.now()) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) || date.toDateString() === new Date(now).toDateString();
}

// One table row for an entry; `entries` maps rows back to their entry for the detail panel. `withDate`: the
// time column shows the local date too (a range of more than a day).
export function entryRow(entry, entries, { withDate = false } = {}) {
  const level = levelOf(entry);
  const row = el('tr', `entry level-${level}`);
  const time = el('td', 'time', withDate ? formatDateTime(entry.timestamp) : formatTime(entry.timestamp));
  time.title = String(entry.timestamp);
  const service = el('td', 'service', String(entry.service ?? ''));
  service.title = String(entry.service ?? '');
  const message = el('td', 'msg', String(entry.message ?? ''));
  const attrs = entry.attributes ? Object.keys(entry.attributes).length : 0;
  if (entry.exception) message.append(el('span', 'badge exc', 'traceback'));
  if (attrs) message.append(el('span', 'badge', `${attrs} attr${attrs === 1 ? '' : 's'}`));
  row.append(time, el('td', 'level', el('span', 'lvl', level)), service, message);
  row.tabIndex = 0;
  entries.set(row, entry);
  return row;
}

// A full-width row telling the user something about the stream (gaps, reconnects).
export function noticeRow(text, kind = 'warn') {
  const cell = el('td', null, text);
  cell.colSpan = 4;
  return el('tr', `notice-row ${kind}`, cell);
}

const DETAIL_FIELDS = ['timestamp', 'level', 'service', 'logger', 'host', 'pid', 'thread', 'trace_id', 'span_id', 'id'];

// Fill the detail panel with every field of `entry`; returns the panel. `attrActions(key, value)` gives extra
// nodes for an attribute's row (filter buttons); `onContext(entry, container)` fills the surrounding-entries
// section when its button is pressed.
export function showDetail(entry, { attrActions = null, onContext = null } = {}) {
  const panel = document.getElementById('detail');
  const body = document.getElementById('detail-body');
  body.replaceChildren();
  const fields = el('dl', 'fields');
  for (const name of DETAIL_FIELDS) {
    if (entry[name] === undefined || entry[name] === null || entry[name] === '') continue;
    const value = name === 'timestamp' ? `${entry[name]}  (${formatDateTime(entry[name])} local)` : String(entry[name]);
    fields.append(el('dt', null, name), el('dd', name === 'level' ? `lvl-text level-${levelOf(entry)}` : null, value));
  }
  body.append(fields, el('h3', null, 'Message'), el('pre', 'message', String(entry.message ?? '')));
  const attributes = entry.attributes && typeof entry.attributes === 'object' ? Object.entries(entry.attributes) : [];
  if (attributes.length) {
    const table = el('table', 'attributes');
    for (const [key, value] of attributes.sort(([a], [b]) => a.localeCompare(b))) {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      const actions = attrActions ? el('td', 'attr-actions', ...attrActions(key, value)) : null;
      table.append(el('tr', null, el('th', null, key), el('td', null, text), actions));
    }
    body.append(el('h3', null, `Attributes (${attributes.length})`), table);
  }
  if (entry.exception) {
    body.append(el('h3', null, 'Exception'), el('pre', 'exception', String(entry.exception)));
  }
  if (onContext && entry.id) {
    const button = el('button', null, 'Show surrounding entries');
    button.type = 'button';
    button.id = 'detail-context';
    button.title = 'The entries just before and after this one from the same service and host';
    const container = el('div', 'context');
    button.addEventListener('click', () => {
      button.disabled = true;
      onContext(entry, container);
    });
    body.append(el('h3', null, 'Surrounding entries'), button, container);
  }
  panel.hidden = false;
  panel.dataset.entryId = String(entry.id ?? '');
  return panel;
}

// Clicking (or Enter on) a row of `tbody` opens its entry in the detail panel.
export function wireRowDetail(tbody, entries, onOpen) {
  const open = (target) => {
    const row = target.closest('tr.entry');
    if (!row || !entries.has(row)) return;
    for (const selected of tbody.querySelectorAll('tr.selected')) selected.classList.remove('selected');
    row.classList.add('selected');
    onOpen(entries.get(row));
  };
  tbody.addEventListener('click', (event) => open(event.target));
  tbody.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') open(event.target);
  });
}
