// Stacked bar chart of /api/histogram, drawn as inline SVG through DOM calls (no chart library).
// One bar per bucket, one segment per level stacked debug (bottom) to fatal (top); colours come from CSS.

import { LEVELS } from './api.js';

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 220;
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

// Draw `histogram` (the /api/histogram body) into `container`, replacing what was there.
export function renderHistogram(container, histogram) {
  const buckets = histogram.buckets || [];
  const width = Math.max(320, Math.floor(container.clientWidth || 800));
  const chart = svg('svg', {
    class: 'histogram', width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img',
    'aria-label': `Entries per ${histogram.interval} by level`,
  });
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const maxTotal = buckets.reduce((max, bucket) => Math.max(max, bucket.total), 0);
  const yMax = niceCeil(maxTotal);
  const y = (value) => MARGIN.top + plotHeight - (value / yMax) * plotHeight;

  const grid = svg('g', { class: 'grid' });
  for (let i = 0; i <= 4; i += 1) {
    const value = (yMax * i) / 4;
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
    axis.append(svg('text', { x: x.toFixed(2), y: HEIGHT - 6, 'text-anchor': 'middle' }, bucketLabel(bucket.timestamp, histogram.interval_seconds, spanSeconds)));
  });
  chart.append(axis);
  if (!maxTotal) {
    chart.append(svg('text', { class: 'no-data', x: MARGIN.left + plotWidth / 2, y: MARGIN.top + plotHeight / 2, 'text-anchor': 'middle' }, 'no entries in this range'));
  }
  container.replaceChildren(chart);
  return chart;
}
