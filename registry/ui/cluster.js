// Cluster page: the replicas (role, term, log and applied index, lag, reachability, vote), the
// node failovers the applied log shows, the leader changes this page has seen, and the answering
// replica's failover timeline. Data: the app's `/v1/cluster` feed and `GET /v1/failovers`, both
// polled every 2 s (there is no watch for either).

import { api, poll } from './api.js';
import { agoMs, badge, clock, dateTime, freshness, h, ms, renderInto, table } from './dom.js';

const FAILOVERS_POLL_MS = 2000;

export function mount(root, ctx) {
  const body = h('div');
  root.append(
    h('h2', { tabindex: '-1', text: 'Cluster' }),
    h('p', { class: 'lede', text: 'The controller replicas and their Raft state, refreshed every 2 seconds.' }),
    body,
  );
  /** `GET /v1/failovers`: the last answer, and the last error (cleared by an answer). */
  const nodeFailovers = { data: null, error: null };
  const draw = () => renderInto(body, view(ctx.feed, nodeFailovers));
  draw();
  const off = ctx.feed.subscribe(draw);
  ctx.signal.addEventListener('abort', off, { once: true });
  poll((signal) => api('/v1/failovers', { signal }).then((r) => r.data), FAILOVERS_POLL_MS, ctx.signal, (d, e) => {
    if (e?.status === 401 || e?.status === 403) return; // The token form's business.
    if (d) nodeFailovers.data = d;
    nodeFailovers.error = e;
    draw();
  });
}

function fact(term, value) {
  return [h('dt', { text: term }), h('dd', {}, value)];
}

function view(feed, nodeFailovers) {
  const s = feed.status;
  if (!s) return [freshness(0, feed.error)];
  const leader = s.members.find((m) => m.id === s.leaderId);
  return [
    freshness(feed.at, feed.error),
    h('dl', { class: 'facts' },
      fact('Leader', s.leaderId ? `replica ${s.leaderId}` : badge('none', 'bad')),
      fact('Term', String(s.term)),
      fact('Answered by', `replica ${s.replicaId}`),
      fact('Nodes expired since that replica started', String(s.nodesExpired ?? 0))),
    s.reschedulePaused ? paused(s.reschedulePaused) : null,
    h('h3', { text: 'Replicas' }),
    members(s, leader),
    h('h3', { id: 'node-failovers', text: 'Node failovers' }),
    nodeFailoverTable(nodeFailovers),
    h('h3', { text: 'Leader changes seen by this page' }),
    history(feed.history),
    h('h3', { text: `Last leader change as replica ${s.replicaId} saw it` }),
    failover(s.failover),
    s.leaderContactGaps ? gaps(s.replicaId, s.leaderContactGaps) : null,
  ];
}

function paused(p) {
  return h('div', { class: 'notice warn' },
    h('strong', { text: 'Rescheduling is paused. ' }),
    `${p.reason}. Since ${dateTime(p.sinceMs)}; nodes lost together: ${(p.nodes ?? []).join(', ') || 'none'}.`);
}

function roleBadge(role) {
  const kind = { leader: 'ok', follower: 'muted', learner: 'muted', candidate: 'warn' }[role] ?? 'bad';
  return badge(role, kind);
}

function members(s, leader) {
  const leaderApplied = leader?.appliedIndex;
  const rows = [...s.members].sort((a, b) => a.id - b.id).map((m) => {
    const lag = leaderApplied !== undefined && leaderApplied !== null && m.appliedIndex !== null && m.appliedIndex !== undefined
      ? Math.max(0, leaderApplied - m.appliedIndex)
      : null;
    const addr = /^https?:\/\//.test(m.apiAddr)
      ? h('a', { href: `${m.apiAddr.replace(/\/$/, '')}/ui`, title: `The console on replica ${m.id}`, text: m.apiAddr,
        dataset: { key: `replica-link:${m.id}` } })
      : m.apiAddr;
    let vote;
    if (!m.voter) vote = badge('learner, no vote', 'muted');
    else if (m.voteWithheld) vote = badge(`withheld (${m.standing?.state ?? 'catching up'})`, 'warn');
    else vote = m.reachable ? badge('open', 'ok') : '—';
    return [
      `${m.id}${m.id === s.replicaId ? ' (answering)' : ''}`,
      addr,
      roleBadge(m.role),
      m.voter ? 'voter' : 'learner',
      m.lastLogIndex ?? '—',
      m.appliedIndex ?? '—',
      lag === null ? '—' : lag === 0 ? '0' : badge(String(lag), lag > 100 ? 'warn' : 'muted'),
      m.reachable ? badge('yes', 'ok') : badge('no', 'bad'),
      vote,
    ];
  });
  return table('Replicas of the controller', ['Replica', 'Address', 'Role', 'Membership', 'Last log index', 'Applied index',
    'Lag (entries behind the leader)', 'Reachable', 'Vote'], rows, { numeric: [4, 5, 6] });
}

/** What became of one instance of a dead node. */
function movedInstance(i) {
  const to = i.toNode ? `${i.fromNode} → ${i.toNode}` : `${i.fromNode} → no node yet`;
  let outcome;
  if (i.state === 'ready') {
    outcome = badge(i.standbyTakeover ? `standby ${i.replacementId} took over` : `ready after ${ms(i.durationMs)}`, 'ok');
  } else if (i.state === 'starting') {
    outcome = badge('starting', 'warn');
  } else if (i.state === 'waitingForNode') {
    outcome = badge('waiting for a node', 'bad');
  } else {
    outcome = badge('no longer followed', 'muted');
  }
  return h('li', {}, h('span', { class: 'mono', text: i.instanceId }), ` ${to} `, outcome);
}

function nodeFailoverTable({ data, error }) {
  if (!data) {
    return error ? h('p', { class: 'stale', text: `Node failovers are not available: ${error.message}.` })
      : h('p', { class: 'muted', text: 'Loading…' });
  }
  const rows = (data.failovers ?? []).map((f) => [
    f.nodeId,
    h('span', { title: dateTime(f.lastSeenMs), text: `${clock(f.lastSeenMs)} (${agoMs(f.lastSeenMs)})` }),
    ms(f.declaredDeadMs - f.lastSeenMs),
    f.instances.length ? h('ul', { class: 'plain' }, f.instances.map(movedInstance)) : h('span', { class: 'muted', text: 'none to move' }),
    f.inProgress ? badge('in progress', 'warn') : badge('done', 'ok'),
    f.inProgress ? `${ms(Date.now() - f.lastSeenMs)} so far` : ms(f.durationMs),
  ]);
  return [
    h('p', { class: 'muted', text: `Nodes declared dead (silent past their TTL), newest first, and where their instances went, as replica ${data.replicaId} applied them since it started; leader clock. Duration: from the last heartbeat to the last replacement ready.` }),
    error ? h('p', { class: 'stale' }, badge('stale', 'warn'), ` Node failovers: ${error.message}. Retrying…`) : null,
    table('Node failovers', ['Node', 'Last heard from', 'Declared dead after', 'Instances (from → to)', 'State', 'Duration'], rows,
      { empty: 'No node has died since this replica started.' }),
  ];
}

/** Steps of one leader change follow each other within election timeouts (well under a
 *  second); a silence longer than this separates two changes. */
const EARLIER_CHANGE_GAP_MS = 5000;

function history(entries) {
  if (entries.length === 0) return h('p', { class: 'empty', text: 'None yet.' });
  const rows = entries.map((e, i) => {
    const next = entries[i + 1];
    return [
      clock(e.at),
      e.leaderId ? `replica ${e.leaderId}` : badge('no leader', 'bad'),
      String(e.term),
      next ? ms(next.at - e.at) : `${ms(Date.now() - e.at)} so far`,
    ];
  }).reverse();
  return [
    h('p', { class: 'muted', text: 'Observed through the 2-second poll since this page was opened (newest first); a change shorter than that can be missed.' }),
    table('Leader changes seen by this page', ['Seen at', 'Leader', 'Term', 'Lasted'], rows, { numeric: [2, 3] }),
  ];
}

function failover(f) {
  if (!f) return h('p', { class: 'empty', text: 'This replica reports no failover timeline.' });
  const steps = [
    ['Found the silent leader down (its port refused connections)', f.leaderDownConfirmedMs],
    ['Granted a pre-vote to a candidate', f.preVoteGrantedMs],
    ['Granted its vote to a candidate', f.voteGrantedMs],
    ['Started an election', f.campaignStartedMs],
    ['Became leader', f.becameLeaderMs],
    ['Committed the first entry of its term as leader', f.firstCommitMs],
    [`Learned of a new leader (replica ${f.learnedLeaderId})`, f.learnedLeaderMs],
  ].filter(([, t]) => t > 0).sort((a, b) => a[1] - b[1]);
  const contact = h('p', {},
    'Last append (entries or heartbeat) from a leader: ',
    f.lastLeaderContactMs ? `${clock(f.lastLeaderContactMs)} (${agoMs(f.lastLeaderContactMs)})` : 'never (it leads, or has not heard from one)',
    '.');
  if (steps.length === 0) return [contact, h('p', { class: 'empty', text: 'No leader change seen since it started.' })];
  // The replica keeps the last time of each step, whichever change it was part of (a vote it
  // granted at the cluster's first election stays when it campaigns itself later): a step long
  // before the next one belongs to an earlier change, and is shown apart.
  let cut = 0;
  for (let i = steps.length - 1; i > 0; i--) {
    if (steps[i][1] - steps[i - 1][1] > EARLIER_CHANGE_GAP_MS) {
      cut = i;
      break;
    }
  }
  const earlier = steps.slice(0, cut);
  const last = steps.slice(cut);
  const first = last[0][1];
  const rows = last.map(([what, t], i) => [what, clock(t), i === 0 ? '0 ms' : `+${ms(t - first)}`,
    i === 0 ? '—' : `+${ms(t - last[i - 1][1])}`, agoMs(t)]);
  return [
    contact,
    table('Steps of the last leader change', ['Step', 'Time (replica clock)', 'Since the first step', 'Since the step before', 'Age'],
      rows, { numeric: [2, 3] }),
    h('p', { class: 'muted', text: `From the first step to the last: ${ms(last.at(-1)[1] - first)}.` }),
    earlier.length
      ? h('p', { class: 'muted', text: `From an earlier leader change: ${earlier.map(([what, t]) => `${what.toLowerCase()} at ${clock(t)}`).join('; ')}.` })
      : null,
  ];
}

function gaps(replica, g) {
  const rows = g.counts.map((count, i) => [
    i < g.bucketLeMs.length ? `≤ ${g.bucketLeMs[i]} ms` : `> ${g.bucketLeMs.at(-1) ?? 0} ms`,
    String(count),
  ]).filter(([, c]) => c !== '0');
  return h('details', { dataset: { key: 'gaps' } },
    h('summary', { dataset: { key: 'gaps-summary' }, text: `Silences between appends from the leader, as replica ${replica} saw them (longest ${ms(g.maxMs)})` }),
    table('Histogram of silences between appends from the leader', ['Gap', 'Count'], rows,
      { numeric: [1], empty: 'No appends received (this replica leads, or has just started).' }));
}
