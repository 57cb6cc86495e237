// Attribute filters: removable chips in the filter bar, the attribute side panel of Search (top values of the
// most common keys, GET /api/attributes) and the filter buttons of the entry detail. Clicking a value filters
// in (`attr.k=v`); alt-click, right-click or its ≠ button filters out (`attr.k!=v`); a chip's ✕ removes it.

import { ATTR_PREFIX, fetchAttributes } from './api.js';
import { el } from './render.js';
import { attrLabel } from './state.js';

// Keys and values per key the side panel asks for (the API allows up to 100 of each).
export const PANEL_KEYS = 12;
export const PANEL_VALUES = 6;

// An attribute value as the API compares it: strings as they are, numbers and booleans as their JSON text.
export function attrText(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// The two buttons for one key/value: filter in (also alt-click/right-click to filter out) and ≠ (filter out).
// `onFilter({key, op, value})`.
export function filterButtons(key, value, onFilter, { label = null, count = null } = {}) {
  const text = attrText(value);
  const pick = (op) => onFilter({ key, op, value: text });
  const valueButton = el('button', 'attr-in', el('span', 'attr-text', label ?? text));
  if (count !== null) valueButton.append(el('span', 'attr-count', String(count)));
  valueButton.type = 'button';
  valueButton.title = `Show only ${key} = ${text} (alt-click or right-click: exclude it)`;
  valueButton.setAttribute('aria-label', `Filter in ${key} = ${text}`);
  valueButton.addEventListener('click', (event) => pick(event.altKey ? '!=' : '='));
  valueButton.addEventListener('contextmenu', (event) => {
    event.preventDefault();
    pick('!=');
  });
  const outButton = el('button', 'attr-out', '≠');
  outButton.type = 'button';
  outButton.title = `Exclude ${key} = ${text}`;
  outButton.setAttribute('aria-label', `Filter out ${key} = ${text}`);
  outButton.addEventListener('click', () => pick('!='));
  return [valueButton, outButton];
}

// The current attribute conditions as chips; `onRemove(attr)` when a chip's ✕ is pressed.
export function renderChips(container, attrs, onRemove) {
  container.replaceChildren(...attrs.map((attr) => {
    const text = attrLabel(attr);
    const remove = el('button', 'chip-remove', '✕');
    remove.type = 'button';
    remove.title = 'Remove this filter';
    remove.setAttribute('aria-label', `Remove filter ${text}`);
    remove.addEventListener('click', () => onRemove(attr));
    const chip = el('span', `attr-chip${attr.op === '!=' ? ' negated' : ''}`, el('span', 'chip-text', text), remove);
    chip.title = text;
    chip.dataset.field = `${ATTR_PREFIX}${attr.key}`; // the `field` of the server's 400 about it
    return chip;
  }));
}

// The "+ filter" control: attribute, operator and value for a condition that is not on screen (the same as
// typing `key<op>value` in the search box). Enter in its fields or "Add filter" adds it; `onFilter(attr)`
// returns why it refused the condition (shown in the control too: it covers the filter bar's line) or null.
export function wireAddFilter(onFilter) {
  const root = document.getElementById('f-add');
  const key = document.getElementById('f-add-key');
  const op = document.getElementById('f-add-op');
  const value = document.getElementById('f-add-value');
  const error = document.getElementById('f-add-error');
  const presence = { exists: '=', missing: '!=' }; // the API spells them `=*` / `!=*`
  const sync = () => {
    value.disabled = op.value in presence;
  };
  const submit = () => {
    const name = key.value.trim();
    key.toggleAttribute('aria-invalid', !name);
    error.textContent = name ? '' : 'attribute: required';
    if (!name) {
      key.focus();
      return;
    }
    const numeric = !['=', '!='].includes(op.value) && !(op.value in presence);
    const refused = onFilter(op.value in presence
      ? { key: name, op: presence[op.value], value: '*' }
      : { key: name, op: op.value, value: numeric ? value.value.trim() : value.value });
    error.textContent = refused ?? '';
    if (refused) return; // left open to correct
    key.value = '';
    value.value = '';
    root.open = false;
  };
  op.addEventListener('change', sync);
  document.getElementById('f-add-submit').addEventListener('click', submit);
  for (const input of [key, op, value]) {
    input.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter') return;
      event.preventDefault(); // not the filter bar's submit
      submit();
    });
  }
  root.addEventListener('toggle', () => {
    if (!root.open) return;
    error.textContent = '';
    // Opens rightwards from its button, or leftwards when that would leave the window (the button moves
    // along the filter bar as chips come and go).
    const body = root.querySelector('.add-filter-body');
    body.classList.remove('leftwards');
    if (body.getBoundingClientRect().right > document.documentElement.clientWidth) body.classList.add('leftwards');
    key.focus();
  });
  sync();
}

// The side panel: refreshed for each new search (not for paging), newest request wins.
export class AttributePanel {
  constructor({ onFilter }) {
    this.list = document.getElementById('attr-list');
    this.onFilter = onFilter;
    this.controller = null;
  }

  async refresh(filters) {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.list.classList.add('loading');
    try {
      const body = await fetchAttributes(filters, { keys: PANEL_KEYS, values: PANEL_VALUES, signal: controller.signal });
      if (controller === this.controller) this.render(body.keys);
    } catch (err) {
      if (err.name === 'AbortError') return;
      // A refused filter (400) is shown once, next to the filters (app.js).
      this.list.replaceChildren(...(err.status === 400 ? [] : [el('p', 'empty error', `Attributes unavailable: ${err.message}`)]));
    } finally {
      if (controller === this.controller) this.list.classList.remove('loading');
    }
  }

  render(keys) {
    // The keys seen also suggest themselves in the "+ filter" control.
    document.getElementById('f-attr-keys').replaceChildren(...keys.map((key) => {
      const option = el('option');
      option.value = key.key;
      return option;
    }));
    if (!keys.length) {
      this.list.replaceChildren(el('p', 'empty', 'No attributes in this range.'));
      return;
    }
    this.list.replaceChildren(...keys.map((key) => {
      const section = el('section', 'attr-key');
      section.dataset.key = key.key;
      const head = el('h3', null, el('span', 'attr-name', key.key), el('span', 'attr-count', String(key.count)));
      head.title = `${key.key}: in ${key.count} entries`;
      const values = el('ul', 'attr-values');
      for (const item of key.values) {
        const row = el('li', 'attr-value', ...filterButtons(key.key, item.value, this.onFilter, { count: item.count }));
        row.dataset.value = attrText(item.value);
        values.append(row);
      }
      section.append(head, values);
      return section;
    }));
  }
}
