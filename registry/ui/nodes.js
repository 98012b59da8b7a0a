// Nodes page: every node (alive or dead), its labels, the age of its last heartbeat, and the
// instances placed on it. Data: `GET /v1/nodes` and `GET /v1/deployments`, polled every 2 s
// (neither has a watch a console may use: the assignments watch marks the node it names as
// running an agent).

import { api, poll } from './api.js';
import { agoSecs, badge, dateTime, freshness, h, labelChips, phaseBadge, renderInto, table } from './dom.js';

const POLL_MS = 2000;
/** Rows drawn at most; a filter narrows the rest. */
const MAX_ROWS = 500;

export function mount(root, ctx) {
  const filter = h('input', { id: 'node-filter', type: 'search', autocomplete: 'off', spellcheck: 'false' });
  const body = h('div');
  root.append(
    h('h2', { tabindex: '-1', text: 'Nodes' }),
    h('p', { class: 'lede', text: 'Machines that heartbeat to the cluster, and the instances placed on them. Refreshed every 2 seconds.' }),
    h('div', { class: 'toolbar' }, h('label', { for: 'node-filter', text: 'Filter by id, address or label' }), filter),
    body,
  );
  let data = null;
  let error = null;
  let at = 0;
  const draw = () => renderInto(body, view(data, error, at, filter.value.trim().toLowerCase()));
  filter.addEventListener('input', draw);
  draw();
  poll(async (signal) => {
    const [nodes, deployments] = await Promise.all([api('/v1/nodes', { signal }), api('/v1/deployments', { signal })]);
    return { nodes: nodes.data ?? [], deployments: deployments.data ?? [] };
  }, POLL_MS, ctx.signal, (d, e) => {
    if (d) {
      data = d;
      at = Date.now();
    }
    error = e;
    draw();
  });
}

function view(data, error, at, query) {
  if (!data) return [freshness(0, error)];
  const byNode = new Map();
  for (const d of data.deployments) {
    for (const i of d.instances ?? []) {
      const list = byNode.get(i.nodeId) ?? [];
      list.push({ ...i, deploymentId: d.deploymentId });
      byNode.set(i.nodeId, list);
    }
  }
  const nodes = [...data.nodes].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  const alive = nodes.filter((n) => n.health === 'Healthy').length;
  const known = new Set(nodes.map((n) => n.nodeId));
  const matching = query
    ? nodes.filter((n) => [n.nodeId, n.ip, ...Object.entries(n.labels ?? {}).map(([k, v]) => `${k}=${v}`)]
      .some((t) => String(t).toLowerCase().includes(query)))
    : nodes;
  const rows = matching.slice(0, MAX_ROWS).map((n) => [
    n.nodeId,
    n.ip || '—',
    n.health === 'Healthy' ? badge('alive', 'ok') : badge('dead', 'bad'),
    labelChips(n.labels),
    h('span', { title: dateTime(n.lastSeen * 1000), text: agoSecs(n.lastSeen) }),
    instances(byNode.get(n.nodeId)),
  ]);
  const unplaced = [...byNode.entries()].filter(([node]) => !known.has(node)).flatMap(([, list]) => list);
  return [
    freshness(at, error),
    h('p', { class: 'summary' },
      `${nodes.length} node${nodes.length === 1 ? '' : 's'}: `, badge(`${alive} alive`, 'ok'), ' ',
      badge(`${nodes.length - alive} dead`, nodes.length - alive ? 'bad' : 'muted')),
    table('Nodes', ['Node', 'Address', 'State', 'Labels', 'Last heartbeat', 'Instances'], rows,
      { empty: query ? 'No node matches the filter.' : 'No node has sent a heartbeat yet.' }),
    matching.length > MAX_ROWS
      ? h('p', { class: 'muted', text: `Showing the first ${MAX_ROWS} of ${matching.length}; filter to narrow.` }) : null,
    unplaced.length
      ? [h('h3', { text: 'Instances on no known node' }),
        h('p', { class: 'muted', text: 'Waiting for a node that can take them (Pending), or on a node forgotten since.' }),
        instances(unplaced, true)]
      : null,
  ];
}

function instances(list, withNode = false) {
  if (!list || list.length === 0) return h('span', { class: 'muted', text: 'none' });
  return h('ul', { class: 'plain' }, [...list].sort((a, b) => a.instanceId.localeCompare(b.instanceId)).map((i) =>
    h('li', {},
      h('span', { class: 'mono', text: i.instanceId }), ' ',
      phaseBadge(i.phase, i.healthy),
      i.standby ? [' ', badge('standby', 'muted')] : null,
      withNode && i.nodeId ? h('span', { class: 'muted', text: ` on ${i.nodeId}` }) : null)));
}
