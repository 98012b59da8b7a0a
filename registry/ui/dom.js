// DOM helpers. Every value from the API reaches the page as text (`textContent`, text nodes or
// attribute values), never as markup: nothing here parses HTML.

/** Creates an element. `props`: `class`, `text`, `on<event>` handlers, `dataset`, attributes
 *  (string values: `aria-*`, `for`, `type`, ...) or properties (`value`, `disabled`, `min`, ...).
 *  `false`, `null` and `undefined` leave a prop out. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    // Text goes in attributes (`value` excepted: a textarea has no such attribute); booleans
    // and numbers in properties (`hidden`, `disabled`, `min`, ...).
    else if ((typeof v === 'string' && k !== 'value') || !(k in el)) el.setAttribute(k, v === true ? '' : String(v));
    else el[k] = v;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the container's content, keeping keyboard focus on the element with the same
 *  `data-key` when the focused element was inside (live updates must not steal focus). */
export function renderInto(container, ...nodes) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : undefined;
  // Disclosures the reader opened stay open.
  const open = new Set([...container.querySelectorAll('details[data-key]')].filter((d) => d.open).map((d) => d.dataset.key));
  container.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
  for (const d of container.querySelectorAll('details[data-key]')) if (open.has(d.dataset.key)) d.open = true;
  if (key !== undefined) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/** A table: `columns` are header texts, `rows` arrays of cells (node or text). */
export function table(caption, columns, rows, { empty = 'Nothing to show.', numeric = [] } = {}) {
  if (rows.length === 0) return h('p', { class: 'empty', text: empty });
  const head = h('tr', {}, columns.map((c, i) => h('th', { scope: 'col', class: numeric.includes(i) ? 'num' : null, text: c })));
  const body = rows.map((cells) =>
    h('tr', {}, cells.map((c, i) => h(i === 0 ? 'th' : 'td', { scope: i === 0 ? 'row' : null, class: numeric.includes(i) ? 'num' : null }, c ?? '—'))),
  );
  // A scrollable region is focusable, so keyboard users can scroll it too.
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption, dataset: { key: `table:${caption}` } },
    h('table', {}, h('caption', { class: 'visually-hidden', text: caption }), h('thead', {}, head), h('tbody', {}, body)));
}

/** A small coloured badge; `kind`: ok, bad, warn, muted. The text carries the meaning. */
export function badge(text, kind = 'muted') {
  return h('span', { class: `badge ${kind}`, text });
}

/** An instance's phase as its agent reported it, and whether it is ready. */
export function phaseBadge(phase, healthy) {
  const kind = phase === 'Running' ? (healthy ? 'ok' : 'warn') : ['Pending', 'Assigned', 'Starting'].includes(phase) ? 'warn'
    : /fail|exit|crash|stop/i.test(phase ?? '') ? 'bad' : 'muted';
  const text = phase === 'Running' && !healthy ? 'Running, not ready' : (phase || 'unknown');
  return badge(text, kind);
}

export function labelChips(labels) {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return h('span', { class: 'muted', text: 'none' });
  return h('ul', { class: 'chips' }, entries.map(([k, v]) => h('li', { class: 'chip', text: `${k}=${v}` })));
}

/** "3 s ago" for a Unix time in seconds (the browser's clock against the replica's). */
export function agoSecs(unixSecs) {
  if (!unixSecs) return '—';
  return agoMs(unixSecs * 1000);
}

export function agoMs(unixMs) {
  if (!unixMs) return '—';
  const d = Math.max(0, Date.now() - unixMs);
  if (d < 1000) return 'just now';
  const s = Math.round(d / 1000);
  if (s < 90) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 48) return `${hrs} h ago`;
  return `${Math.round(hrs / 24)} d ago`;
}

/** Local wall-clock time with milliseconds, for failover steps. */
export function clock(unixMs) {
  if (!unixMs) return '—';
  const d = new Date(unixMs);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function dateTime(unixMs) {
  return unixMs ? new Date(unixMs).toLocaleString() : '—';
}

export function ms(n) {
  if (n === null || n === undefined) return '—';
  return n >= 10000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`;
}

/** A line saying when the data shown was fetched, and whether it is stale. */
export function freshness(at, error) {
  if (error) return h('p', { class: 'stale', role: 'status' }, badge('stale', 'warn'), ` ${describeError(error)} Retrying…`);
  return h('p', { class: 'fresh muted', text: at ? `Updated ${clock(at)}` : 'Loading…' });
}

/** A sentence for an error from `api()`, with what the operator may do about it. */
export function describeError(err) {
  if (!err) return '';
  const body = err.body ?? {};
  if (err.status === 0) return `${err.message}.`;
  if (err.status === 401) return `The token was refused: ${err.message}.`;
  if (err.status === 403) return `Not allowed with this token: ${err.message}.`;
  if (err.status === 409) return `Conflict: ${err.message}.`;
  if (body.outcomeUnknown) return `The outcome is unknown (${err.message}): check the current state before trying again.`;
  if (body.retryable) return `Not applied, the cluster is busy or has no leader right now (${err.message}): try again.`;
  return `${err.message} (HTTP ${err.status}).`;
}
