// Overview: totals by level and by service (/api/stats) and entries over time by level (/api/histogram).

import { LEVELS, fetchHistogram, fetchStats } from './api.js';
import { renderHistogram } from './chart.js';
import { el } from './render.js';

export const AUTO_REFRESH_MS = 10000;

export class OverviewView {
  // `onZoom(fromIso, toIso)`: a range was dragged on the chart (as in Search).
  constructor({ onPickService, onZoom }) {
    this.levels = document.getElementById('overview-levels');
    this.services = document.getElementById('overview-services');
    this.chart = document.getElementById('chart');
    this.legend = document.getElementById('chart-legend');
    this.interval = document.getElementById('chart-interval');
    this.info = document.getElementById('overview-info');
    this.onPickService = onPickService;
    this.onZoom = onZoom;
    this.histogram = null;
    this.controller = null;
    this.legend.replaceChildren(...LEVELS.map((level) => el('span', `key level-${level}`, el('i', 'swatch'), level)));
    // Redraw at the new width (the SVG is sized in pixels so its text stays legible).
    new ResizeObserver(() => {
      if (this.histogram && this.chart.isConnected) renderHistogram(this.chart, this.histogram, { onSelect: this.onZoom });
    }).observe(this.chart);
  }

  async refresh(filters) {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.info.textContent = 'loading…';
    try {
      const [stats, histogram] = await Promise.all([
        fetchStats(filters, { signal: controller.signal }),
        fetchHistogram(filters, { signal: controller.signal }),
      ]);
      if (controller !== this.controller) return;
      this.renderStats(stats);
      this.histogram = histogram;
      this.interval.textContent = `(per ${histogram.interval})`;
      renderHistogram(this.chart, histogram, { onSelect: this.onZoom });
      this.info.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (err.name === 'AbortError') return;
      this.info.textContent = '';
      const text = err.status === 400 ? `No overview: the server refused a filter (${err.message}); fix it above.` : `Overview failed: ${err.message}`;
      this.chart.replaceChildren(el('p', 'empty error', text));
    }
  }

  renderStats(stats) {
    const total = stats.total_logs || 0;
    const cards = [el('div', 'card total', el('span', 'label', 'total'), el('span', 'value', total.toLocaleString()))];
    for (const level of LEVELS) {
      const count = (stats.logs_by_level && stats.logs_by_level[level]) || 0;
      const card = el('div', `card level-${level}`, el('span', 'label', level), el('span', 'value', count.toLocaleString()));
      card.dataset.level = level;
      card.dataset.count = String(count);
      if (total) card.append(el('span', 'share', `${((count / total) * 100).toFixed(1)}%`));
      cards.push(card);
    }
    this.levels.replaceChildren(...cards);

    const services = Object.entries(stats.logs_by_service || {});
    const largest = services.reduce((max, [, count]) => Math.max(max, count), 0);
    const rows = services.map(([service, count]) => {
      const bar = el('span', 'bar');
      bar.style.width = `${largest ? Math.max(0.5, (count / largest) * 100) : 0}%`;
      const name = el('button', 'name', service);
      name.type = 'button';
      name.title = `Filter by service ${service}`;
      name.addEventListener('click', () => this.onPickService(service));
      const row = el('div', 'service-row', name, el('span', 'track', bar), el('span', 'count', count.toLocaleString()));
      row.dataset.service = service;
      row.dataset.count = String(count);
      return row;
    });
    this.services.replaceChildren(...(rows.length ? rows : [el('p', 'empty', 'No entries in this range.')]));
  }
}
