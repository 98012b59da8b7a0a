// Services page: every service with its endpoints (address, version, health, node). Data:
// `GET /v1/services/list` for the names, then the discovery stream (`GET /v1/discovery/stream`,
// server-sent events read through fetch: one connection for every service, resumed from the
// last event id) for live endpoints. While the stream is down, each service is read once with
// `GET /v1/discovery?service=` so what is shown stays current.

import { api, eventStream, isAbort, seg, sleep } from './api.js';
import { agoSecs, badge, dateTime, freshness, h, labelChips, renderInto, table } from './dom.js';

export function mount(root, ctx) {
  const filter = h('input', { id: 'service-filter', type: 'search', autocomplete: 'off', spellcheck: 'false' });
  const live = h('p', { class: 'muted' });
  const body = h('div');
  root.append(
    h('h2', { tabindex: '-1', text: 'Services' }),
    h('p', { class: 'lede', text: 'Services and the endpoints discovery hands out (live and healthy only), updated as they change.' }),
    h('div', { class: 'toolbar' }, h('label', { for: 'service-filter', text: 'Filter by service name' }), filter, live),
    body,
  );
  const state = { names: new Set(), endpoints: new Map(), error: null, at: 0, streaming: false };
  let pending = null;
  const draw = () => {
    pending = null;
    live.replaceChildren(state.streaming ? badge('live', 'ok') : badge('reconnecting', 'warn'),
      state.streaming ? ' Updates arrive as discovery changes.' : ' Live updates interrupted.');
    renderInto(body, view(state, filter.value.trim().toLowerCase()));
  };
  // A burst of events (the stream starts with every service) is drawn once.
  const schedule = () => { pending ??= setTimeout(draw, 100); };
  ctx.signal.addEventListener('abort', () => clearTimeout(pending), { once: true });
  filter.addEventListener('input', draw);
  draw();
  run(state, ctx.signal, schedule);
}

async function loadNames(state, signal) {
  const { data } = await api('/v1/services/list', { signal });
  for (const n of data ?? []) state.names.add(n);
}

/** One plain read of every service (while the stream is down). */
async function readAll(state, signal) {
  await loadNames(state, signal);
  for (const name of state.names) {
    const { data } = await api(`/v1/discovery?service=${seg(name)}`, { signal });
    state.endpoints.set(name, data ?? []);
  }
  state.at = Date.now();
}

async function readMissing(state, signal) {
  for (const name of [...state.names].filter((n) => !state.endpoints.has(n))) {
    if (signal.aborted) return;
    const { data } = await api(`/v1/discovery?service=${seg(name)}`, { signal });
    state.endpoints.set(name, data ?? []);
  }
}

async function run(state, signal, redraw) {
  let lastId = null;
  let backoff = 1000;
  try {
    await loadNames(state, signal);
  } catch (e) {
    if (isAbort(e) || signal.aborted) return;
    state.error = e;
  }
  redraw();
  while (!signal.aborted) {
    try {
      const path = lastId === null ? '/v1/discovery/stream' : `/v1/discovery/stream?index=${lastId}`;
      await eventStream(path, signal, (ev) => {
        if (ev.event !== 'endpoints') return;
        const d = JSON.parse(ev.data);
        if (!state.names.has(d.service)) state.names.add(d.service);
        state.endpoints.set(d.service, d.endpoints ?? []);
        const id = Number(ev.id);
        if (Number.isFinite(id)) lastId = Math.max(lastId ?? 0, id);
        state.at = Date.now();
        redraw();
      }, () => {
        state.streaming = true;
        state.error = null;
        state.at = Date.now();
        backoff = 1000;
        redraw();
        // The stream starts with every service; one it did not name is read once.
        setTimeout(() => readMissing(state, signal).then(redraw, () => {}), 1500);
      });
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      state.error = e;
      if (e.status === 401) return;
    }
    state.streaming = false;
    redraw();
    // Missed nothing on resume, but the endpoints shown may be old meanwhile: read them once.
    try {
      await readAll(state, signal);
      state.error = null;
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      state.error = e;
      // A replica that restarted may not know the index any more: resume from scratch.
      lastId = null;
    }
    redraw();
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, 10000);
  }
}

function view(state, query) {
  const names = [...state.names].sort().filter((n) => !query || n.toLowerCase().includes(query));
  const total = state.names.size;
  return [
    freshness(state.at, state.error),
    h('p', { class: 'summary', text: `${total} service${total === 1 ? '' : 's'}${query ? `, ${names.length} matching` : ''}.` }),
    names.length === 0
      ? h('p', { class: 'empty', text: query ? 'No service matches the filter.' : 'No service is registered.' })
      : names.map((name) => service(name, state.endpoints.get(name))),
  ];
}

function service(name, endpoints) {
  const eps = [...(endpoints ?? [])].sort((a, b) => a.instanceId.localeCompare(b.instanceId) || a.port - b.port);
  const versions = new Map();
  for (const e of eps) versions.set(e.version || '(none)', (versions.get(e.version || '(none)') ?? 0) + 1);
  const healthy = eps.filter((e) => e.healthy).length;
  const headingId = `svc-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  return h('section', { class: 'panel', 'aria-labelledby': headingId },
    h('h3', { id: headingId, text: name }),
    h('p', { class: 'summary' },
      endpoints === undefined ? badge('loading', 'muted')
        : eps.length === 0 ? badge('no live endpoint', 'bad')
          : badge(`${healthy} of ${eps.length} endpoint${eps.length === 1 ? '' : 's'} healthy`, healthy === eps.length ? 'ok' : 'warn'),
      versions.size ? ` · versions: ${[...versions].map(([v, n]) => `${v} ×${n}`).join(', ')}` : ''),
    eps.length ? table(`Endpoints of ${name}`, ['Instance', 'Node', 'Address', 'Protocol', 'Version', 'Health', 'Labels', 'Last seen'],
      eps.map((e) => [
        h('span', { class: 'mono', text: e.instanceId }),
        e.nodeId || '—',
        h('span', { class: 'mono', text: `${e.ip}:${e.port}` }),
        e.protocol || '—',
        e.version || '—',
        e.healthy ? badge('healthy', 'ok') : badge('unhealthy', 'bad'),
        labelChips(e.labels),
        h('span', { title: dateTime(e.lastSeen * 1000), text: agoSecs(e.lastSeen) }),
      ])) : null);
}
