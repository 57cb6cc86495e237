// Search: filtered pages of stored entries, newest first. Paging follows the API's cursor (X-Next-Cursor),
// which names the last entry of a page, so entries arriving meanwhile never shift the older pages. Above the
// results, the volume histogram of the search range (drag across it to zoom); beside them, the attributes.

import { fetchHistogram, fetchLogs } from './api.js';
import { AttributePanel } from './attrs.js';
import { renderHistogram } from './chart.js';
import { el, entryRow, wireRowDetail } from './render.js';

// Height of the histogram above the results (px): a summary, not the Overview's full chart.
const HISTOGRAM_HEIGHT = 110;
// A search range longer than this shows dates in the time column.
const DATE_COLUMN_MS = 86400000;

export class SearchView {
  // `onZoom(fromIso, toIso)`: a range was dragged on the histogram; `onFilter(attr)`: an attribute value was
  // picked in the side panel.
  constructor({ onOpenEntry, onZoom, onFilter }) {
    this.histogram = document.getElementById('search-histogram');
    this.table = document.getElementById('search-table');
    this.attributes = new AttributePanel({ onFilter });
    this.onZoom = onZoom;
    this.histogramController = null;
    this.withDate = false;
    this.tbody = document.getElementById('search-rows');
    this.info = document.getElementById('search-info');
    this.empty = document.getElementById('search-empty');
    this.newerButton = document.getElementById('search-newer');
    this.olderButton = document.getElementById('search-older');
    this.entries = new WeakMap();
    this.filters = null;
    this.limit = 100;
    this.cursors = [null]; // cursors[i] fetches page i (page 0: no cursor)
    this.page = 0;
    this.next = null;
    this.controller = null;
    wireRowDetail(this.tbody, this.entries, onOpenEntry);
    this.olderButton.addEventListener('click', () => this.older());
    this.newerButton.addEventListener('click', () => this.newer());
    this.updateButtons();
  }

  // A new search from the first (newest) page. `filters` has its time range already resolved, and keeps it
  // while paging, so "last hour" means the hour before the search started on every page.
  run(filters, limit) {
    this.filters = filters;
    this.limit = limit;
    this.cursors = [null];
    this.page = 0;
    const to = filters.to ? Date.parse(filters.to) : Date.now();
    this.withDate = to - Date.parse(filters.from) > DATE_COLUMN_MS;
    this.table.classList.toggle('with-date', this.withDate);
    this.loadHistogram();
    this.attributes.refresh(filters);
    return this.load();
  }

  async loadHistogram() {
    if (this.histogramController) this.histogramController.abort();
    const controller = new AbortController();
    this.histogramController = controller;
    this.histogram.classList.add('loading');
    try {
      const body = await fetchHistogram(this.filters, { signal: controller.signal });
      if (controller !== this.histogramController) return;
      renderHistogram(this.histogram, body, { height: HISTOGRAM_HEIGHT, onSelect: this.onZoom });
      this.histogram.dataset.intervalSeconds = String(body.interval_seconds);
    } catch (err) {
      if (err.name === 'AbortError') return;
      // A refused filter (400) is shown once, next to the filters (app.js).
      this.histogram.replaceChildren(...(err.status === 400 ? [] : [el('p', 'empty error', `Histogram unavailable: ${err.message}`)]));
    } finally {
      if (controller === this.histogramController) this.histogram.classList.remove('loading');
    }
  }

  older() {
    if (!this.next) return undefined;
    this.cursors[this.page + 1] = this.next;
    this.page += 1;
    return this.load();
  }

  newer() {
    if (this.page === 0) return undefined;
    this.page -= 1;
    return this.load();
  }

  async load() {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.info.textContent = 'loading…';
    this.tbody.classList.add('loading');
    try {
      const { entries, nextCursor } = await fetchLogs(this.filters, {
        limit: this.limit, cursor: this.cursors[this.page], signal: controller.signal,
      });
      if (controller !== this.controller) return;
      this.next = nextCursor;
      this.render(entries);
    } catch (err) {
      if (err.name === 'AbortError') return;
      this.next = null;
      this.tbody.replaceChildren();
      this.showEmpty(err.status === 400 ? `No search: the server refused a filter (${err.message}); fix it above.` : `Search failed: ${err.message}`, true);
      this.info.textContent = '';
    } finally {
      if (controller === this.controller) {
        this.tbody.classList.remove('loading');
        this.updateButtons();
      }
    }
  }

  render(entries) {
    const fragment = document.createDocumentFragment();
    for (const entry of entries) fragment.append(entryRow(entry, this.entries, { withDate: this.withDate }));
    this.tbody.replaceChildren(fragment);
    this.table.parentElement.scrollTop = 0;
    const first = this.page * this.limit + 1;
    if (entries.length) {
      this.showEmpty(null);
      const more = this.next ? '' : ' (oldest match)';
      this.info.textContent = `page ${this.page + 1} · entries ${first}–${first + entries.length - 1}${more} · newest first`;
    } else {
      this.showEmpty(this.page === 0 ? 'No entries match these filters in this time range.' : 'No older entries.');
      this.info.textContent = `page ${this.page + 1}`;
    }
  }

  showEmpty(text, error = false) {
    this.empty.hidden = text === null;
    this.empty.textContent = text ?? '';
    this.empty.classList.toggle('error', error);
  }

  updateButtons() {
    this.olderButton.disabled = !this.next;
    this.newerButton.disabled = this.page === 0;
  }
}
