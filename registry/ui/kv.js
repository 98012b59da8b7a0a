// Config KV page: namespaces (`GET /v1/kv`, polled every 2 s: no watch), the keys of one
// namespace under a prefix (`GET /v1/kv/{ns}?prefix=`, kept fresh by its long-poll watch
// `watch=true&index=N`), and an editor that writes with compare-and-set
// (`PUT /v1/kv/{ns}/key/{key}` with `expectVersion`; a 409 means someone changed it meanwhile).

import { api, isAbort, poll, seg, watch } from './api.js';
import { agoSecs, dateTime, describeError, freshness, h, renderInto, table } from './dom.js';

const TYPES = ['string', 'int', 'double', 'bool', 'bytes'];
const SHOWN_VALUE = 80;

export function mount(root, ctx) {
  const ns = ctx.params[0] ?? null;
  const nsList = h('div');
  root.append(
    h('h2', { tabindex: '-1', text: 'Config KV' }),
    h('p', { class: 'lede', text: 'Configuration by namespace. Edits are compare-and-set: a value changed by someone else meanwhile is never overwritten.' }),
  );
  const layout = h('div', { class: 'kv-layout' });
  root.append(layout);
  layout.append(h('nav', { class: 'kv-namespaces', 'aria-label': 'Namespaces' }, h('h3', { text: 'Namespaces' }), nsList, openForm(ctx)));
  watchNamespaces(nsList, ns, ctx);
  const main = h('div', { class: 'kv-main' });
  layout.append(main);
  if (ns === null) {
    main.append(h('p', { class: 'empty', text: 'Choose a namespace, or open one by name (a new namespace starts with its first key).' }));
    return;
  }
  namespacePage(main, ns, ctx);
}

function watchNamespaces(el, current, ctx) {
  let names = null;
  let error = null;
  poll((signal) => api('/v1/kv', { signal }).then((r) => r.data?.namespaces ?? []), 2000, ctx.signal, (d, e) => {
    if (d) names = d;
    error = e;
    if (!names) {
      renderInto(el, freshness(0, error));
      return;
    }
    const all = current !== null && !names.includes(current) ? [...names, current].sort() : names;
    renderInto(el,
      error ? freshness(0, error) : null,
      all.length === 0 ? h('p', { class: 'empty', text: 'No namespace yet.' })
        : h('ul', { class: 'plain' }, all.map((n) => h('li', {},
          h('a', { href: `#/kv/${seg(n)}`, 'aria-current': n === current ? 'page' : null, dataset: { key: `ns:${n}` }, text: n })))));
  });
}

function openForm(ctx) {
  const input = h('input', { id: 'kv-open-ns', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  return h('form', {
    class: 'stack',
    novalidate: true,
    onsubmit: (ev) => {
      ev.preventDefault();
      const name = input.value.trim();
      if (name) ctx.navigate(`#/kv/${seg(name)}`);
      else input.focus();
    },
  }, h('label', { for: 'kv-open-ns', text: 'Open a namespace' }), input, h('button', { type: 'submit', class: 'secondary', text: 'Open' }));
}

function namespacePage(main, ns, ctx) {
  const prefix = h('input', { id: 'kv-prefix', type: 'search', autocomplete: 'off', spellcheck: 'false' });
  const newKey = h('button', { type: 'button', text: 'New key…' });
  const list = h('div');
  const editor = makeEditor(ns, ctx, list);
  main.append(
    h('h3', { text: `Namespace ${ns}` }),
    h('div', { class: 'toolbar' }, h('label', { for: 'kv-prefix', text: 'Key prefix' }), prefix, newKey),
    editor.el,
    list,
  );
  newKey.addEventListener('click', () => editor.open(null));

  let items = null;
  let at = 0;
  let current = null; // the watch of the prefix shown
  const start = () => {
    current?.abort();
    current = new AbortController();
    const signal = current.signal;
    items = null;
    const p = prefix.value;
    const draw = (error) => renderInto(list, view(ns, p, items, at, error, (item) => editor.open(item)));
    draw(null);
    watch(`/v1/kv/${seg(ns)}?prefix=${encodeURIComponent(p)}`, signal, (data, error) => {
      if (data) {
        items = data;
        at = Date.now();
        editor.seen(items);
      }
      draw(error);
    });
  };
  let debounce = null;
  prefix.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(start, 300);
  });
  ctx.signal.addEventListener('abort', () => {
    clearTimeout(debounce);
    current?.abort();
  }, { once: true });
  start();
}

function shown(item) {
  const v = item.value ?? '';
  return v.length > SHOWN_VALUE ? `${v.slice(0, SHOWN_VALUE)}…` : v;
}

function view(ns, prefix, items, at, error, onEdit) {
  if (!items) return [freshness(0, error)];
  return [
    freshness(at, error),
    table(`Keys of namespace ${ns}`, ['Key', 'Value', 'Type', 'Version', 'Updated', 'Last write (log index)', 'Action'],
      items.map((item) => [
        h('span', { class: 'mono', text: item.key }),
        h('span', { class: 'mono value', title: item.value, text: shown(item) }),
        item.type,
        String(item.version),
        h('span', { title: dateTime(item.updatedAt * 1000), text: agoSecs(item.updatedAt) }),
        String(item.modIndex),
        h('button', { type: 'button', class: 'secondary small', dataset: { key: `edit:${item.key}` },
          'aria-label': `Edit ${item.key}`, onclick: () => onEdit(item), text: 'Edit' }),
      ]), { numeric: [3, 5], empty: prefix ? `No key starts with “${prefix}”.` : 'This namespace has no key yet.' }),
  ];
}

/** The edit form: compare-and-set on the version the value was read at (0: a new key). */
function makeEditor(ns, ctx, list) {
  const title = h('h3', { id: 'kv-edit-title' });
  const key = h('input', { id: 'kv-key', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true });
  const type = h('select', { id: 'kv-type' }, TYPES.map((t) => h('option', { value: t, text: t })));
  const value = h('textarea', { id: 'kv-value', rows: 6, spellcheck: 'false' });
  const cas = h('p', { class: 'hint', id: 'kv-cas' });
  const changed = h('p', { class: 'notice warn', role: 'status', hidden: true });
  const error = h('p', { class: 'error', role: 'alert' });
  const save = h('button', { type: 'submit', text: 'Save' });
  const reload = h('button', { type: 'button', class: 'secondary', hidden: true, text: 'Reload current value' });
  const cancel = h('button', { type: 'button', class: 'secondary', text: 'Cancel' });
  const form = h('form', { novalidate: true },
    title,
    h('div', { class: 'field' }, h('label', { for: 'kv-key', text: 'Key' }), key),
    h('div', { class: 'field' }, h('label', { for: 'kv-type', text: 'Type' }), type),
    h('div', { class: 'field' }, h('label', { for: 'kv-value', text: 'Value' }), value),
    cas, changed, error,
    h('div', { class: 'actions' }, save, reload, cancel));
  const el = h('section', { class: 'panel editor', 'aria-labelledby': 'kv-edit-title', hidden: true }, form);
  value.setAttribute('aria-describedby', 'kv-cas');
  let editing = null; // {key, expectVersion}

  const setCas = () => {
    cas.textContent = editing.expectVersion === 0
      ? 'Saved only if the key does not exist yet.'
      : `Saved only if the key is still at version ${editing.expectVersion} (compare-and-set).`;
  };
  const load = (item) => {
    editing = { key: item?.key ?? null, expectVersion: item?.version ?? 0 };
    title.textContent = item ? `Edit ${ns}/${item.key}` : `New key in ${ns}`;
    key.value = item?.key ?? '';
    key.readOnly = Boolean(item);
    type.value = item?.type ?? 'string';
    value.value = item?.value ?? '';
    changed.hidden = true;
    reload.hidden = true;
    error.textContent = '';
    setCas();
  };
  const close = () => {
    const k = editing?.key;
    el.hidden = true;
    editing = null;
    const back = k === null || k === undefined ? null : list.querySelector(`[data-key="${CSS.escape(`edit:${k}`)}"]`);
    back?.focus();
  };
  const conflict = (message) => {
    changed.textContent = message;
    changed.hidden = false;
    reload.hidden = false;
  };

  reload.addEventListener('click', async () => {
    const k = editing?.key ?? key.value.trim();
    error.textContent = '';
    try {
      const { data } = await api(`/v1/kv/${seg(ns)}/key/${seg(k)}`, { signal: ctx.signal });
      load(data);
      ctx.announce(`Reloaded ${k}: version ${data.version}.`);
      value.focus();
    } catch (e) {
      if (isAbort(e)) return;
      if (e.status === 404) {
        load(null);
        key.value = k;
        ctx.announce(`${k} no longer exists; saving creates it.`);
        value.focus();
        return;
      }
      error.textContent = describeError(e);
    }
  });
  cancel.addEventListener('click', close);
  el.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') close();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const k = editing.key ?? key.value.trim();
    if (!k) {
      error.textContent = 'Enter a key.';
      key.focus();
      return;
    }
    save.disabled = true;
    error.textContent = '';
    try {
      const body = { value: value.value, type: type.value, expectVersion: editing.expectVersion };
      const { data } = await api(`/v1/kv/${seg(ns)}/key/${seg(k)}`, { method: 'PUT', body, signal: ctx.signal });
      ctx.announce(`Saved ${ns}/${k}: version ${data.version}.`);
      editing.key = k;
      close();
    } catch (e) {
      if (isAbort(e)) return;
      if (e.status === 409) {
        const now = e.body?.detail?.currentVersion;
        conflict(`Changed meanwhile${now !== undefined ? ` (now at version ${now})` : ''}: reload, then save again. Nothing was written.`);
        reload.focus();
      } else if (e.status !== 401 && e.status !== 403) {
        error.textContent = describeError(e);
      }
    } finally {
      save.disabled = false;
    }
  });

  return {
    el,
    open(item) {
      load(item);
      el.hidden = false;
      (item ? value : key).focus();
    },
    /** Called with each list the watch brings: warns when the key edited moved on. */
    seen(items) {
      if (!editing || editing.key === null || el.hidden) return;
      const now = items.find((i) => i.key === editing.key);
      if (now && now.version !== editing.expectVersion) {
        conflict(`${editing.key} changed meanwhile (now at version ${now.version}); saving would be refused: reload first.`);
      }
    },
  };
}

