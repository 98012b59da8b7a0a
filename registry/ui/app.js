// The Plum console: token handling, hash routing, the leader indicator, and the shared
// `/v1/cluster` feed. Pages live in their own modules and get a context with an abort signal
// that stops their polls and watches when the operator leaves them.

import { api, clearToken, getToken, onResponse, poll, setAuthFailureHandler, setToken } from './api.js';
import { badge, describeError, h } from './dom.js';
import * as clusterPage from './cluster.js';
import * as nodesPage from './nodes.js';
import * as servicesPage from './services.js';
import * as deploymentsPage from './deployments.js';
import * as kvPage from './kv.js';
import * as topologyPage from './topology.js';

const PAGES = {
  cluster: { title: 'Cluster', module: clusterPage },
  nodes: { title: 'Nodes', module: nodesPage },
  services: { title: 'Services', module: servicesPage },
  deployments: { title: 'Deployments', module: deploymentsPage },
  topology: { title: 'Topology', module: topologyPage },
  kv: { title: 'Config KV', module: kvPage },
};

/** `/v1/cluster` has no watch: polled at this interval. */
const CLUSTER_POLL_MS = 2000;

const $ = (id) => document.getElementById(id);

/** The cluster status shared by the header and the cluster page, and the leader changes this
 *  page has seen. */
const feed = {
  status: null,
  error: null,
  at: 0,
  /** `{at, leaderId, term, replica}`, oldest first. */
  history: [],
  listeners: new Set(),
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  },
};

let session = null; // AbortController of everything that runs with the current token
let page = null; // {key, controller}
let role = null;

// ---- status and errors ----

function announce(message) {
  // Cleared first so the same message twice is read twice.
  const el = $('status');
  el.textContent = '';
  setTimeout(() => { el.textContent = message; }, 50);
}

function showAlert(...content) {
  const el = $('alert');
  el.replaceChildren(...content);
  el.hidden = false;
}

function clearAlert() {
  const el = $('alert');
  el.hidden = true;
  el.replaceChildren();
}

// ---- authentication ----

function showAuth(reason, { allowCancel = false } = {}) {
  $('auth-reason').textContent = reason;
  $('auth-cancel').hidden = !allowCancel;
  $('auth').hidden = false;
  $('token-input').focus();
}

function hideAuth() {
  $('auth').hidden = true;
  $('auth-reason').textContent = '';
}

setAuthFailureHandler((err) => {
  if (err.status === 401) {
    const had = getToken() !== null;
    // Several calls in flight fail together: the first one says why.
    if (!had && !$('auth').hidden) return;
    clearToken();
    stopSession();
    $('page').replaceChildren();
    $('sign-out').hidden = true;
    $('whoami').textContent = '';
    showAuth(had ? `${describeError(err)} Enter another token.` : 'This cluster needs an API token to show anything.');
  } else {
    const who = role ? ` (role ${role})` : '';
    showAuth(`${describeError(err)} Your token${who} may not do this; enter a token with more rights, or keep the current one.`,
      { allowCancel: true });
  }
});

async function checkToken() {
  try {
    const { data } = await api('/v1/auth/whoami');
    role = data.role ?? null;
    $('whoami').textContent = data.authEnabled === false
      ? 'Authentication is off on this cluster'
      : `Role: ${data.role}${data.tokenId ? ` · token ${data.tokenId}` : ' · no token (anonymous role)'}`;
    $('sign-out').hidden = getToken() === null;
    hideAuth();
    startSession();
  } catch (e) {
    if (e.status === 401 || e.status === 403) return; // The handler shows the token form.
    showAlert(`${describeError(e)} Trying again…`);
    setTimeout(checkToken, 2000);
  }
}

// ---- session: the cluster feed and the current page ----

function startSession() {
  stopSession();
  session = new AbortController();
  poll((signal) => api('/v1/cluster', { signal }).then((r) => r.data), CLUSTER_POLL_MS, session.signal, onCluster);
  showPage(false);
}

function stopSession() {
  session?.abort();
  session = null;
  page?.controller.abort();
  page = null;
}

function onCluster(status, error) {
  // A refused token is the token form's business, not a lost replica.
  if (error?.status === 401 || error?.status === 403) return;
  const wasError = feed.error;
  feed.error = error;
  if (status) {
    feed.status = status;
    feed.at = Date.now();
    noteLeader(status);
  }
  if (error && !wasError) {
    showAlert(`${describeError(error)} `, ...otherReplicaLinks());
  } else if (!error && wasError) {
    clearAlert();
    announce('In contact with the cluster again.');
  }
  renderLeader();
  for (const fn of feed.listeners) fn(feed);
}

function noteLeader(s) {
  const leaderId = s.leaderId ?? null;
  const last = feed.history.at(-1);
  if (last && last.leaderId === leaderId && last.term === s.term) return;
  feed.history.push({ at: Date.now(), leaderId, term: s.term, replica: s.replicaId });
  if (feed.history.length > 100) feed.history.shift();
  if (last) announce(leaderId ? `Leader is now replica ${leaderId}, term ${s.term}.` : `No leader, term ${s.term}.`);
}

function renderLeader() {
  const el = $('leader');
  const s = feed.status;
  if (feed.error || !s) {
    const text = feed.error ? 'Leader: unknown (replica unreachable)' : 'Leader: …';
    el.replaceChildren(badge(text, feed.error ? 'bad' : 'muted'));
    return;
  }
  if (s.leaderId === null || s.leaderId === undefined) {
    el.replaceChildren(badge(`No leader · term ${s.term}`, 'bad'));
    return;
  }
  const member = s.members.find((m) => m.id === s.leaderId);
  el.replaceChildren(
    badge(`Leader: replica ${s.leaderId} · term ${s.term}`, 'ok'),
    member ? h('span', { class: 'muted addr', text: ` ${member.apiAddr}` }) : null,
  );
}

/** Links to the console on the other replicas, from the last cluster view (each serves it;
 *  the token must be entered again there, as storage is per origin). */
function otherReplicaLinks() {
  const members = feed.status?.members ?? [];
  const here = feed.status?.replicaId;
  const links = members
    .filter((m) => m.id !== here && /^https?:\/\//.test(m.apiAddr))
    .map((m) => h('a', { href: `${m.apiAddr.replace(/\/$/, '')}/ui`, text: `replica ${m.id}` }));
  if (links.length === 0) return [];
  return ['Other replicas serve this console too: ', ...links.flatMap((l, i) => (i ? [', ', l] : [l])), '.'];
}

// ---- routing ----

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  let params;
  try {
    params = rest.filter((p) => p !== '').map(decodeURIComponent);
  } catch {
    params = [];
  }
  return { name, params };
}

function showPage(moveFocus) {
  if (!session) return;
  const { name, params } = route();
  if (!Object.hasOwn(PAGES, name)) {
    location.replace('#/cluster');
    return;
  }
  const key = location.hash;
  if (page?.key === key) return;
  page?.controller.abort();
  const controller = new AbortController();
  session.signal.addEventListener('abort', () => controller.abort(), { once: true });
  page = { key, controller };

  for (const a of document.querySelectorAll('nav.pages a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${PAGES[name].title} · Plum console`;
  const root = $('page');
  root.replaceChildren();
  PAGES[name].module.mount(root, {
    signal: controller.signal,
    params,
    feed,
    announce,
    navigate: (hash) => { location.hash = hash; },
  });
  if (moveFocus) root.querySelector('h2')?.focus();
}

// ---- start ----

function boot() {
  $('auth-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('token-input');
    const token = input.value.trim();
    if (!token) {
      $('auth-reason').textContent = 'Enter a token first.';
      input.focus();
      return;
    }
    input.value = '';
    setToken(token);
    clearAlert();
    checkToken();
  });
  $('auth-cancel').addEventListener('click', () => {
    hideAuth();
    $('page').querySelector('h2')?.focus();
  });
  $('sign-out').addEventListener('click', () => {
    clearToken();
    stopSession();
    role = null;
    $('page').replaceChildren();
    $('whoami').textContent = '';
    $('sign-out').hidden = true;
    showAuth('The token was forgotten in this tab.');
  });
  onResponse((headers) => {
    const replica = headers.get('x-plum-replica');
    if (replica) $('served-by').textContent = `console on replica ${replica}`;
  });
  // The skip link moves focus, not the route: `#main` in the address would be taken for an
  // unknown page and send the reader to the cluster page.
  document.querySelector('.skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    $('main').focus();
  });
  window.addEventListener('hashchange', () => showPage(true));
  if (!location.hash) history.replaceState(null, '', '#/cluster');
  checkToken();
}

boot();
