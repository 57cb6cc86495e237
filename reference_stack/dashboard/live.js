// Live tail: one WebSocket to /ws/live with the filters in its query string (the server filters), rows
// appended in batches once per animation frame, bounded in the DOM, reconnecting with backoff. New filters
// open with the newest stored entries shown too (the socket, then one GET /api/logs that the server answers
// once everything it accepted before is stored: nothing falls between the two), and lines stay in
// timestamp order within a short reorder window. The tail has no time range: the Search view's range (which
// the Live view does not show) never reaches its history or its socket, and a row from another day than
// today shows its date.

import { ApiError, fetchLogs, liveUrl } from './api.js';
import { wsProtocols } from './auth.js';
import { entryRow, formatTime, isToday, noticeRow, wireRowDetail } from './render.js';

// Rows kept in the table; older ones are removed as new ones arrive (the full history is in Search).
export const MAX_ROWS = 2000;
const BACKOFF_INITIAL_MS = 500;
const BACKOFF_MAX_MS = 15000;
// A connection that stayed open this long was healthy: the next outage starts the backoff from the beginning.
const STABLE_MS = 5000;
// Scrolled less than this far from the bottom still counts as "at the bottom" (follow mode resumes).
const BOTTOM_SLACK_PX = 24;
// Entries shown from storage when the tail opens (or its filters change), before live ones arrive.
export const HISTORY_ROWS = 100;
// An arriving entry older than rows that arrived less than this long ago is placed before them (entries from
// several ingest processes reach the tail slightly out of order); settled rows never move.
export const REORDER_WINDOW_MS = 1000;
// Ids of the history rows are remembered this long, so an entry both stored and streamed shows once.
const HISTORY_DEDUP_MS = 10000;

export class LiveTail {
  constructor({ onOpenEntry }) {
    this.tbody = document.getElementById('live-rows');
    this.table = this.tbody.closest('table');
    this.scroller = document.getElementById('live-scroller');
    this.status = document.getElementById('live-status');
    this.pauseButton = document.getElementById('live-pause');
    this.followBox = document.getElementById('live-follow');
    this.pendingLabel = document.getElementById('live-pending');
    this.droppedLabel = document.getElementById('live-dropped');
    this.countLabel = document.getElementById('live-count');
    this.empty = document.getElementById('live-empty');
    this.entries = new WeakMap();
    this.filters = null;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.connectedBefore = false;
    this.paused = false;
    this.pending = []; // entries received while paused (at most MAX_ROWS)
    this.skippedWhilePaused = 0;
    this.queue = []; // rows waiting for the next frame
    this.frame = null;
    this.received = 0;
    this.droppedByServer = 0;
    this.historyWanted = false;
    this.liveIds = null; // ids shown live while the history request runs (null: not running)
    this.historyIds = new Set();
    this.historyTimer = null;
    this.generation = 0; // bumped by setFilters: a history answer for older filters is ignored
    this.lastScrollTop = 0;

    wireRowDetail(this.tbody, this.entries, onOpenEntry);
    this.pauseButton.addEventListener('click', () => this.setPaused(!this.paused));
    this.followBox.addEventListener('change', () => {
      if (this.followBox.checked) this.scrollToBottom();
    });
    document.getElementById('live-clear').addEventListener('click', () => this.clear());
    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
  }

  // (Re)connect with new filters: the server applies them, so a new socket is opened with them. Their
  // from/to are dropped here, once, so no request of the tail (history, socket, the refusal check) has one.
  setFilters(filters) {
    this.filters = { ...filters, from: null, to: null };
    this.attempt = 0;
    this.clear();
    this.generation += 1; // a history request still running for the old filters is ignored
    this.liveIds = null;
    this.connectedBefore = false; // a new tail, not a reconnect
    this.historyWanted = true; // loaded once the new socket is open, so nothing falls between the two
    this.connect();
  }

  // The newest stored entries for these filters, placed in time order among the live entries shown
  // meanwhile (minus those shown live already). Asked once the socket is open and with `settle`: the server
  // answers once every entry it acknowledged before the request is stored (at most 5 s), so an entry
  // accepted just before the socket opened, not streamed to it and not yet stored, is in the history.
  async loadHistory() {
    const generation = this.generation;
    this.liveIds = new Set();
    let history = [];
    let settled = true;
    try {
      ({ entries: history, settled } = await fetchLogs(this.filters, { limit: HISTORY_ROWS, settle: true }));
    } catch {
      // the tail works without history (a 400 is explained by the socket's status line)
    }
    if (generation !== this.generation) return;
    if (!settled) {
      this.addNotice('storage is behind: entries accepted just before the tail opened may be missing here (use Search)', 'warn');
    }
    const shownLive = this.liveIds;
    this.liveIds = null;
    clearTimeout(this.historyTimer);
    this.historyIds = new Set(history.map((entry) => entry.id));
    this.historyTimer = setTimeout(() => this.historyIds.clear(), HISTORY_DEDUP_MS);
    // Live entries were shown as they came (a history request waiting behind the storage's inserts must
    // not hold them back); the stored ones go in among them in time order, minus those shown live already.
    this.flush();
    for (const entry of history.reverse()) {
      if (!shownLive.has(entry.id)) this.placeInOrder(this.row(entry), entry.timestamp);
    }
    this.trim();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.disconnect();
    const ws = new WebSocket(liveUrl(this.filters), wsProtocols()); // the key, if any: auth.js
    this.ws = ws;
    let openedAt = null;
    this.setStatus('connecting', 'connecting…');
    ws.addEventListener('open', () => {
      openedAt = Date.now();
      this.setStatus('live', 'live');
      if (this.connectedBefore) this.addNotice('reconnected: entries sent while disconnected are not replayed here (use Search)', 'info');
      this.connectedBefore = true;
      if (this.historyWanted) {
        this.historyWanted = false;
        this.loadHistory();
      }
    });
    ws.addEventListener('message', (event) => this.onMessage(event.data));
    ws.addEventListener('close', (event) => {
      if (ws !== this.ws) return; // replaced on purpose (new filters)
      this.ws = null;
      if (openedAt !== null && Date.now() - openedAt >= STABLE_MS) this.attempt = 0;
      this.onClosed(openedAt !== null, event);
    });
  }

  disconnect() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'filters changed');
  }

  async onClosed(wasOpen, event) {
    if (wasOpen) this.addNotice(`disconnected (code ${event.code}${event.reason ? `: ${event.reason}` : ''})`, 'warn');
    else {
      // A refused upgrade does not say why; ask the query API, which validates filters the same way.
      try {
        await fetchLogs(this.filters, { limit: 1 });
      } catch (err) {
        if (err instanceof ApiError && err.status === 400) {
          this.setStatus('error', `rejected: ${err.message}`);
          return; // retrying cannot help until the filters change
        }
      }
    }
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_INITIAL_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2); // jitter: tabs do not reconnect in lockstep
    this.attempt += 1;
    this.setStatus('reconnecting', `disconnected, retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  onMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (!message || typeof message !== 'object') return;
    if (message.type === 'dropped') {
      const count = Number(message.count) || 0;
      this.droppedByServer += count;
      this.droppedLabel.textContent = `${this.droppedByServer} entries dropped by the server: this tab could not keep up`;
      this.droppedLabel.hidden = false;
      this.addNotice(`${count} entries dropped here by the server (this tab fell behind); they are stored: use Search`, 'warn');
      return;
    }
    this.received += 1;
    if (this.liveIds !== null) this.liveIds.add(message.id);
    this.show(message);
  }

  show(message) {
    if (this.historyIds.has(message.id)) return;
    if (this.paused) {
      this.pending.push(message);
      if (this.pending.length > MAX_ROWS) {
        this.pending.shift();
        this.skippedWhilePaused += 1;
      }
      this.pendingLabel.textContent = `${this.pending.length + this.skippedWhilePaused} new while paused`;
      return;
    }
    this.enqueue(this.row(message), message.timestamp);
  }

  // The row of an entry; one from another local day than today has the date in its time column (history
  // reaches back as far as the newest HISTORY_ROWS go), and the column is widened for it.
  row(entry) {
    const withDate = !isToday(entry.timestamp);
    if (withDate) this.table.classList.add('with-date');
    return entryRow(entry, this.entries, { withDate });
  }

  // `timestamp`: the entry's RFC 3339 UTC time (fixed width, so strings compare in time order); notices
  // have none and stay where they are put.
  enqueue(row, timestamp = null) {
    if (timestamp) row.dataset.ts = timestamp;
    this.queue.push(row);
    if (this.queue.length > MAX_ROWS) this.queue.shift();
    if (this.frame === null) this.frame = requestAnimationFrame(() => this.flush());
  }

  addNotice(text, kind) {
    this.enqueue(noticeRow(`${formatTime(new Date().toISOString())}  ${text}`, kind));
  }

  flush() {
    this.frame = null;
    if (!this.queue.length) return;
    const now = performance.now();
    for (const row of this.queue) this.place(row, now);
    this.queue = [];
    this.trim();
  }

  // Keep the newest MAX_ROWS rows, the counters and the follow position up to date.
  trim() {
    const excess = this.tbody.rows.length - MAX_ROWS;
    if (excess > 0) {
      const before = this.scroller.scrollHeight;
      for (let i = 0; i < excess; i += 1) this.tbody.firstElementChild.remove();
      // Keep what the reader is looking at in place when rows above it disappear.
      if (!this.followBox.checked) this.scroller.scrollTop -= before - this.scroller.scrollHeight;
    }
    this.empty.hidden = this.tbody.rows.length > 0;
    this.countLabel.textContent = `${this.tbody.querySelectorAll('tr.entry').length} shown, ${this.received} received live`;
    if (this.followBox.checked) this.scrollToBottom();
  }

  // Put a stored (history) row before the first row that is newer, settled (it never moves again).
  placeInOrder(row, timestamp) {
    row.dataset.ts = timestamp;
    row.arrived = -Infinity;
    let next = this.tbody.firstElementChild;
    while (next && !(next.dataset.ts && next.dataset.ts > timestamp)) next = next.nextElementSibling;
    this.tbody.insertBefore(row, next);
  }

  // Append `row`, or put it before the recently arrived rows (within REORDER_WINDOW_MS) that are newer.
  place(row, now) {
    row.arrived = now;
    let before = null;
    const ts = row.dataset.ts;
    if (ts) {
      let previous = this.tbody.lastElementChild;
      while (previous && previous.dataset.ts && previous.dataset.ts > ts && now - previous.arrived <= REORDER_WINDOW_MS) {
        before = previous;
        previous = previous.previousElementSibling;
      }
    }
    this.tbody.insertBefore(row, before);
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.lastScrollTop = this.scroller.scrollTop;
  }

  onScroll() {
    const top = this.scroller.scrollTop;
    const atBottom = this.scroller.scrollHeight - top - this.scroller.clientHeight <= BOTTOM_SLACK_PX;
    // Scrolling up means reading: stop following. Back at the bottom: follow again.
    if (top < this.lastScrollTop && !atBottom) this.followBox.checked = false;
    else if (atBottom) this.followBox.checked = true;
    this.lastScrollTop = top;
  }

  setPaused(paused) {
    this.paused = paused;
    this.pauseButton.textContent = paused ? 'Resume' : 'Pause';
    this.pauseButton.classList.toggle('active', paused);
    this.status.classList.toggle('paused', paused);
    if (!paused) {
      if (this.skippedWhilePaused) {
        this.addNotice(`${this.skippedWhilePaused} older entries received while paused are not shown (only the last ${MAX_ROWS} are kept)`, 'info');
      }
      for (const entry of this.pending) this.enqueue(this.row(entry), entry.timestamp);
      this.pending = [];
      this.skippedWhilePaused = 0;
      this.pendingLabel.textContent = '';
    }
  }

  clear() {
    this.tbody.replaceChildren();
    this.table.classList.remove('with-date');
    this.queue = [];
    this.empty.hidden = false;
    this.countLabel.textContent = `0 shown, ${this.received} received live`;
  }

  setStatus(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text;
  }
}
