// "Show surrounding entries" in the entry detail: the entries just before and after one entry from the same
// service and host (GET /api/logs/{id}/context), oldest first, the entry itself highlighted. Clicking one of
// them opens it in the detail panel.

import { fetchContext } from './api.js';
import { el, entryRow, wireRowDetail } from './render.js';

// Entries asked for on each side (the API allows up to 200).
export const CONTEXT_BEFORE = 20;
export const CONTEXT_AFTER = 20;
const DAY_MS = 86400000;

export async function showContext(entry, container, { onOpenEntry }) {
  container.replaceChildren(el('p', 'muted', 'loading…'));
  let body;
  try {
    body = await fetchContext(entry.id, { before: CONTEXT_BEFORE, after: CONTEXT_AFTER });
  } catch (err) {
    container.replaceChildren(el('p', 'empty error', `Surrounding entries unavailable: ${err.message}`));
    return;
  }
  const all = [...body.before, body.entry, ...body.after];
  const span = Date.parse(all[all.length - 1].timestamp) - Date.parse(all[0].timestamp);
  const entries = new WeakMap();
  const tbody = el('tbody');
  for (const item of all) {
    const row = entryRow(item, entries, { withDate: span > DAY_MS });
    if (item === body.entry) {
      row.classList.add('current');
      row.setAttribute('aria-current', 'true');
    }
    tbody.append(row);
  }
  wireRowDetail(tbody, entries, onOpenEntry);
  const host = body.entry.host ? ` on ${body.entry.host}` : '';
  const info = el('p', 'muted', `${body.before.length} before, ${body.after.length} after · ${body.entry.service}${host}`);
  const colgroup = el('colgroup', null, el('col', 'c-time'), el('col', 'c-level'), el('col', 'c-service'), el('col', 'c-msg'));
  const table = el('table', `logs context-table${span > DAY_MS ? ' with-date' : ''}`, colgroup, tbody);
  container.replaceChildren(info, table);
  tbody.querySelector('tr.current')?.scrollIntoView({ block: 'center' });
}
