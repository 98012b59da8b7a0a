// Topology page: services as boxes and who depends on whom as arrows, each arrow green when
// its condition holds now and red when not (dashed: optional, or declared at registration);
// the same edges as a table for screen readers and exact figures. Data: `GET /v1/topology`,
// polled every 2 s (it has no watch).

import { api, poll } from './api.js';
import { badge, freshness, h, renderInto, table } from './dom.js';

const POLL_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';
const BOX_W = 150;
const BOX_H = 46;
const GAP_X = 90;
const GAP_Y = 28;

export function mount(root, ctx) {
  const body = h('div');
  root.append(
    h('h2', { tabindex: '-1', text: 'Topology' }),
    h('p', { class: 'lede', text: 'Services and their dependencies (declared dependsOn, and upstreams instances registered), with whether each holds now. Refreshed every 2 seconds.' }),
    body,
  );
  let data = null;
  let error = null;
  let at = 0;
  poll(async (signal) => (await api('/v1/topology', { signal })).data, POLL_MS, ctx.signal, (d, e) => {
    if (d) {
      data = d;
      at = Date.now();
    }
    error = e;
    renderInto(body, view(data, error, at));
  });
}

/** Columns by dependency depth: a service with no dependency in column 0, every other one
 *  right of everything it depends on (the graph has no cycle: the cluster refuses them). */
export function layers(services, edges) {
  const deps = new Map(services.map((s) => [s.name, []]));
  for (const e of edges) if (deps.has(e.from) && e.from !== e.to) deps.get(e.from).push(e.to);
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0; // a cycle slipped in: do not loop
    seen.add(name);
    const d = Math.max(-1, ...(deps.get(name) ?? []).map((n) => visit(n, seen))) + 1;
    depth.set(name, d);
    return d;
  };
  for (const s of services) visit(s.name, new Set());
  const columns = [];
  for (const s of services) (columns[depth.get(s.name)] ??= []).push(s);
  return columns.map((c) => c ?? []);
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function graph(services, edges) {
  const columns = layers(services, edges);
  const pos = new Map();
  columns.forEach((col, x) => col.forEach((s, y) => pos.set(s.name, { x: 20 + x * (BOX_W + GAP_X), y: 20 + y * (BOX_H + GAP_Y) })));
  const width = 40 + columns.length * (BOX_W + GAP_X) - GAP_X;
  const height = 40 + Math.max(1, ...columns.map((c) => c.length)) * (BOX_H + GAP_Y) - GAP_Y;
  const marker = (id, cls) => svg('marker', { id, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
    svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: cls }));
  const arrows = edges.filter((e) => pos.has(e.from) && pos.has(e.to) && e.from !== e.to).map((e) => {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    // From the dependent's left side to the dependency's right side (dependencies sit left).
    const kind = e.satisfied ? 'ok' : 'bad';
    const dashed = e.optional || e.kind !== 'declared' ? ' dashed' : '';
    return svg('line', { x1: a.x, y1: a.y + BOX_H / 2, x2: b.x + BOX_W, y2: b.y + BOX_H / 2, class: `edge ${kind}${dashed}`, 'marker-end': `url(#arrow-${kind})` },
      svg('title', {}, `${e.from} → ${e.to}: ${e.condition}, ${e.satisfied ? 'satisfied' : 'unsatisfied'} (${e.detail})`));
  });
  const boxes = services.filter((s) => pos.has(s.name)).map((s) => {
    const p = pos.get(s.name);
    return svg('g', { class: `svc ${s.healthy > 0 ? 'ok' : 'bad'}` },
      svg('rect', { x: p.x, y: p.y, width: BOX_W, height: BOX_H, rx: 6 }),
      svg('text', { x: p.x + 10, y: p.y + 19, class: 'name' }, s.name),
      svg('text', { x: p.x + 10, y: p.y + 36, class: 'count' }, `${s.healthy} healthy`));
  });
  return h('div', { class: 'topology-wrap' },
    svg('svg', { class: 'topology', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Dependency graph (the table below lists the same edges)' },
      svg('defs', {}, marker('arrow-ok', 'edge-head ok'), marker('arrow-bad', 'edge-head bad')), ...arrows, ...boxes));
}

function view(data, error, at) {
  if (!data) return [freshness(0, error)];
  const services = data.services ?? [];
  const edges = data.edges ?? [];
  const broken = edges.filter((e) => !e.satisfied).length;
  const rows = edges.map((e) => [
    e.from,
    e.to,
    e.kind,
    e.optional ? `${e.condition} (optional)` : e.condition,
    e.satisfied ? badge('satisfied', 'ok') : badge('unsatisfied', 'bad'),
    e.detail,
  ]);
  return [
    freshness(at, error),
    h('p', { class: 'summary' },
      `${services.length} service${services.length === 1 ? '' : 's'}, ${edges.length} dependenc${edges.length === 1 ? 'y' : 'ies'}: `,
      badge(`${edges.length - broken} satisfied`, 'ok'), ' ', badge(`${broken} unsatisfied`, broken ? 'bad' : 'muted')),
    services.length ? graph(services, edges) : null,
    table('Dependencies', ['From', 'To', 'Kind', 'Condition', 'State', 'Detail'], rows,
      { empty: 'No dependency declared: deployments name theirs in dependsOn, instances in upstreams.' }),
  ];
}
