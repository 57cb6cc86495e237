// Stacked bar chart of /api/histogram, drawn as inline SVG through DOM calls (no chart library).
// One bar per bucket, one segment per level stacked debug (bottom) to fatal (top); colours come from CSS.

import { LEVELS } from './api.js';

const SVG = 'http://www.w3.org/2000/svg';
const DEFAULT_HEIGHT = 220;
// A pointer that moved less than this between press and release clicked (zooms into one bucket), not dragged.
const CLICK_SLOP_PX = 3;
const MARGIN = { top: 10, right: 28, bottom: 24, left: 48 };
const X_LABELS = 6;

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// 1, 2, 5 x 10^n at or above `value`: an axis maximum that gives round tick labels.
function niceCeil(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function bucketLabel(iso, intervalSeconds, spanSeconds) {
  const date = new Date(iso);
  const hm = `${String(date.getHours()).padStart(2, '0')}:${String(date.getMinutes()).padStart(2, '0')}`;
  const withSeconds = intervalSeconds < 60 && date.getSeconds() ? `${hm}:${String(date.getSeconds()).padStart(2, '0')}` : hm;
  if (spanSeconds <= 86400) return withSeconds;
  const day = `${date.getMonth() + 1}/${date.getDate()}`;
  return intervalSeconds >= 86400 ? day : `${day} ${hm}`;
}

function formatCount(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M` : n >= 1e4 ? `${Math.round(n / 1e3)}k` : String(n);
}

// Draw `histogram` (the /api/histogram body) into `container`, replacing what was there. `height` in px;
// with `onSelect(fromIso, toIso)`, dragging across the bars (or clicking one) selects whole buckets.
export function renderHistogram(container, histogram, { height = DEFAULT_HEIGHT, onSelect = null } = {}) {
  const buckets = histogram.buckets || [];
  const width = Math.max(320, Math.floor(container.clientWidth || 800));
  const chart = svg('svg', {
    class: 'histogram', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Entries per ${histogram.interval} by level${onSelect ? '; drag across the bars, or use the arrow keys and Enter, to zoom into a time range' : ''}`,
  });
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = height - MARGIN.top - MARGIN.bottom;
  const maxTotal = buckets.reduce((max, bucket) => Math.max(max, bucket.total), 0);
  const yMax = niceCeil(maxTotal);
  const y = (value) => MARGIN.top + plotHeight - (value / yMax) * plotHeight;

  const grid = svg('g', { class: 'grid' });
  // Whole-number steps: 1, 2 and 5 x 10^n maxima split into 5, 4 and 5 steps (at most yMax steps below 5).
  const ticks = yMax <= 5 ? yMax : String(yMax)[0] === '2' ? 4 : 5;
  for (let i = 0; i <= ticks; i += 1) {
    const value = (yMax * i) / ticks;
    grid.append(
      svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value) }),
      svg('text', { x: MARGIN.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, formatCount(Math.round(value))),
    );
  }
  chart.append(grid);

  const slot = buckets.length ? plotWidth / buckets.length : plotWidth;
  const barWidth = Math.max(1, slot - (slot > 4 ? Math.min(2, slot * 0.15) : 0));
  const spanSeconds = buckets.length * (histogram.interval_seconds || 60);
  const bars = svg('g', { class: 'bars' });
  buckets.forEach((bucket, index) => {
    const x = MARGIN.left + index * slot;
    const group = svg('g', { class: 'bucket', 'data-timestamp': bucket.timestamp, 'data-total': bucket.total });
    const lines = [`${bucketLabel(bucket.timestamp, histogram.interval_seconds, spanSeconds)} (${histogram.interval}): ${bucket.total}`];
    let base = 0;
    for (const level of LEVELS) {
      const count = (bucket.counts && bucket.counts[level]) || 0;
      if (!count) continue;
      lines.push(`${level}: ${count}`);
      group.append(svg('rect', {
        class: `seg level-${level}`, x: x.toFixed(2), width: barWidth.toFixed(2),
        y: y(base + count).toFixed(2), height: Math.max(0.5, y(base) - y(base + count)).toFixed(2),
        'data-level': level, 'data-count': count,
      }));
      base += count;
    }
    // A full-height transparent target, so hovering anywhere over the slot shows the bucket's numbers.
    group.append(svg('rect', { class: 'hit', x: x.toFixed(2), width: slot.toFixed(2), y: MARGIN.top, height: plotHeight }));
    group.append(svg('title', {}, lines.join('\n')));
    bars.append(group);
  });
  chart.append(bars);

  const axis = svg('g', { class: 'x-axis' });
  axis.append(svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(0), y2: y(0) }));
  const every = Math.max(1, Math.ceil(buckets.length / X_LABELS));
  buckets.forEach((bucket, index) => {
    if (index % every !== 0) return;
    const x = MARGIN.left + (index + 0.5) * slot;
    axis.append(svg('text', { x: x.toFixed(2), y: height - 6, 'text-anchor': 'middle' }, bucketLabel(bucket.timestamp, histogram.interval_seconds, spanSeconds)));
  });
  chart.append(axis);
  if (!maxTotal) {
    chart.append(svg('text', { class: 'no-data', x: MARGIN.left + plotWidth / 2, y: MARGIN.top + plotHeight / 2, 'text-anchor': 'middle' }, 'no entries in this range'));
  }
  if (onSelect && buckets.length) wireBrush(chart, buckets, histogram.interval_seconds, { slot, plotHeight, onSelect });
  container.replaceChildren(chart);
  return chart;
}

// Drag-to-select: a translucent band follows the pointer; on release the covered buckets' [start, end) is
// passed to onSelect as RFC 3339 UTC. From the keyboard: focus the chart, ←/→ move, Shift+←/→ widen,
// Enter zooms, Esc cancels.
function wireBrush(chart, buckets, intervalSeconds, { slot, plotHeight, onSelect }) {
  chart.classList.add('brushable');
  chart.setAttribute('tabindex', '0');
  chart.setAttribute('aria-keyshortcuts', 'ArrowLeft ArrowRight Shift+ArrowLeft Shift+ArrowRight Enter Escape');
  const band = svg('rect', { class: 'brush', x: 0, width: 0, y: MARGIN.top, height: plotHeight, visibility: 'hidden' });
  chart.append(band);
  const indexAt = (clientX) => {
    const x = clientX - chart.getBoundingClientRect().left - MARGIN.left;
    return Math.min(buckets.length - 1, Math.max(0, Math.floor(x / slot)));
  };
  let start = null;
  let startX = 0;
  const span = (a, b) => [Math.min(a, b), Math.max(a, b)];
  const draw = (a, b) => {
    const [lo, hi] = span(a, b);
    band.setAttribute('x', (MARGIN.left + lo * slot).toFixed(2));
    band.setAttribute('width', ((hi - lo + 1) * slot).toFixed(2));
    band.setAttribute('visibility', 'visible');
  };
  chart.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    start = indexAt(event.clientX);
    startX = event.clientX;
    chart.setPointerCapture(event.pointerId);
    draw(start, start);
  });
  chart.addEventListener('pointermove', (event) => {
    if (start !== null) draw(start, indexAt(event.clientX));
  });
  const select = (a, b) => {
    const [lo, hi] = span(a, b);
    const from = new Date(buckets[lo].timestamp);
    const to = new Date(new Date(buckets[hi].timestamp).getTime() + intervalSeconds * 1000);
    onSelect(from.toISOString(), to.toISOString());
  };
  const finish = (event, cancelled) => {
    if (start === null) return;
    const end = Math.abs(event.clientX - startX) < CLICK_SLOP_PX ? start : indexAt(event.clientX);
    const first = start;
    start = null;
    band.setAttribute('visibility', 'hidden');
    if (!cancelled) select(first, end);
  };
  // Keyboard selection: [anchor, cursor], starting on the newest bucket.
  let anchor = null;
  let cursor = null;
  chart.addEventListener('keydown', (event) => {
    const step = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (step) {
      event.preventDefault();
      if (cursor === null) {
        anchor = buckets.length - 1;
        cursor = anchor;
      } else {
        cursor = Math.min(buckets.length - 1, Math.max(0, cursor + step));
        if (!event.shiftKey) anchor = cursor;
      }
      draw(anchor, cursor);
    } else if (event.key === 'Enter' && cursor !== null) {
      event.preventDefault();
      select(anchor, cursor);
    } else if (event.key === 'Escape') {
      anchor = null;
      cursor = null;
      band.setAttribute('visibility', 'hidden');
    }
  });
  chart.addEventListener('pointerup', (event) => finish(event, false));
  chart.addEventListener('pointercancel', (event) => finish(event, true));
}
