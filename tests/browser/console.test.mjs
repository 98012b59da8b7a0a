// The web console (`/ui`) in headless Chromium against a real local cluster (tests/browser/run.sh
// starts one, deploys the echo service, runs this file and tears the cluster down).
//
// For every page: it loads, says no error in the browser console, fails no request, shows the
// leader `GET /v1/cluster` names, labels every form field, and can be reached by keyboard; a
// screenshot of it goes to docs/screenshots/. Then the pages' actions and live updates: scaling
// and rolling back through their dialogs, a compare-and-set KV edit (and its conflict, seen
// through the KV watch), one agent killed (nodes, services, deployments and the cluster page,
// with its node failover, follow), and the leader replica killed (the header and the failover
// timeline follow).
//
// Environment: PLUM_HOME (the cluster's home: cluster.env, admin token, pid files; required),
// PLUM_SCREENSHOT_DIR (default docs/screenshots), PLUM_CHROMIUM (default /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const HOME = process.env.PLUM_HOME;
if (!HOME) throw new Error('PLUM_HOME must name the cluster home (tests/browser/run.sh sets it)');
const CLUSTER_DIR = join(HOME, 'cluster');
const SHOTS = process.env.PLUM_SCREENSHOT_DIR || join(HERE, '..', '..', 'docs', 'screenshots');
const CHROMIUM = process.env.PLUM_CHROMIUM || '/usr/bin/chromium';
const VIEWPORT = { width: 1366, height: 800 };
const TOKEN_KEY = 'plum.console.token';
/** The nodes declare a 1 s TTL; the nodes page polls every 2 s. Generous on a busy machine. */
const NODE_DEAD_DEADLINE_MS = 20000;
/** The header polls `/v1/cluster` every 2 s. */
const LEADER_DEADLINE_MS = 15000;
const PAGES = ['cluster', 'nodes', 'services', 'deployments', 'topology', 'kv'];

const env = Object.fromEntries(readFileSync(join(HOME, 'cluster.env'), 'utf8').split('\n')
  .filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
const CONTROLLERS = env.PLUM_CONTROLLERS.split(',');
const AGENTS = Number(env.PLUM_AGENTS || 3);
const TOKEN = readFileSync(env.PLUM_TOKEN_FILE, 'utf8').trim();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The replica the console is loaded from: a follower, so that killing the leader later leaves
 *  the page's own replica up. Set in `before`. */
let consoleBase = null;
let consoleId = null;

async function apiAt(base, path, { method = 'GET', body } = {}) {
  const resp = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const api = (path, options) => apiAt(consoleBase, path, options);

/** Retries `check` (returning a truthy value when satisfied) until `ms` pass; fails with the
 *  last thing seen. */
async function eventually(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const ok = await check();
      if (ok) return ok;
      last = 'condition false';
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms (last: ${last})`);
    await sleep(250);
  }
}

// ---- the browser, its tabs and what goes wrong in them ----

let browser = null;
let userDataDir = null;
const tabs = new Map(); // name -> {page, problems}

/** A new tab with the console at `hash`; with `token`, it is in the tab's session storage before
 *  the first script runs (else the tab shows the token form). Every console message of level
 *  warning or error, uncaught exception, failed request and HTTP error answer is recorded. */
async function openTab(name, hash, { token = true } = {}) {
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push({ kind: `console ${m.type()}`, text: m.text(), url: m.location()?.url ?? '' });
  });
  page.on('pageerror', (e) => problems.push({ kind: 'exception', text: String(e.stack || e), url: '' }));
  page.on('requestfailed', (r) => {
    // A page the operator leaves aborts its polls, watches and stream: that is no failure.
    const err = r.failure()?.errorText ?? '';
    if (err !== 'net::ERR_ABORTED') problems.push({ kind: 'request failed', text: err, url: r.url() });
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push({ kind: 'http', status: r.status(), text: `${r.status()} ${r.request().method()}`, url: r.url() });
  });
  if (token) await page.addInitScript(([k, t]) => sessionStorage.setItem(k, t), [TOKEN_KEY, TOKEN]);
  await page.goto(`${consoleBase}/ui${hash}`);
  const tab = { page, problems };
  tabs.set(name, tab);
  return tab;
}

/** Asserts the tab has had no problem since the last check, but for those `expected`
 *  (`{status, url}` regexps) of which each must have happened; then forgets them. */
function assertClean(tab, what, expected = []) {
  const seen = new Set();
  const rest = tab.problems.filter((p) => {
    const i = expected.findIndex((e) => (p.status === e.status || p.text.includes(`status of ${e.status}`)) && e.url.test(p.url));
    if (i >= 0) seen.add(i);
    return i < 0;
  });
  tab.problems.length = 0;
  assert.deepEqual(rest, [], `${what}: problems in the browser`);
  expected.forEach((e, i) => assert.ok(seen.has(i), `${what}: expected an HTTP ${e.status} for ${e.url}`));
}

/** `docs/screenshots/<name>.png` of the viewport (`fullPage`: the whole page). The focus ring
 *  of a heading focused by navigation is left out, unless `keepFocus` (a dialog or form). */
async function screenshot(page, name, { keepFocus = false, fullPage = false } = {}) {
  mkdirSync(SHOTS, { recursive: true });
  if (!keepFocus) await page.evaluate(() => document.activeElement?.blur());
  // No caret blinking or hover state in the picture.
  await page.mouse.move(0, VIEWPORT.height - 1);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), animations: 'disabled', caret: 'hide', fullPage });
}

/** Goes to a page by its link in the navigation (as a reader would) and waits for its heading. */
async function goTo(page, name) {
  await page.click(`nav.pages a[data-page="${name}"]`);
  await page.waitForFunction((n) => location.hash === `#/${n}` && document.querySelector('#page h2'), name);
}

/** The header and the page agree with `GET /v1/cluster` on the leader and term. */
async function assertLiveLeader(page, what) {
  return eventually(`${what}: the header shows the leader GET /v1/cluster names`, LEADER_DEADLINE_MS, async () => {
    const s = await api('/v1/cluster');
    const shown = (await page.textContent('#leader')).replace(/\s+/g, ' ').trim();
    if (!s.leaderId) throw new Error(`the API knows no leader (term ${s.term}); header: ${shown}`);
    if (!shown.startsWith(`Leader: replica ${s.leaderId} · term ${s.term}`)) throw new Error(`header "${shown}", API leader ${s.leaderId} term ${s.term}`);
    return s;
  });
}

/** Cheap accessibility checks of what is on screen now: one h1, a page h2, every form field
 *  with a label, every button and link with a name, no duplicate ids, tables in labelled
 *  regions. */
async function assertAccessible(page, what) {
  const issues = await page.evaluate(() => {
    const out = [];
    const visible = (el) => el.getClientRects().length > 0;
    const name = (el) => {
      const by = el.getAttribute('aria-labelledby');
      if (by) return by.split(/\s+/).map((id) => document.getElementById(id)?.textContent ?? '').join(' ').trim();
      return (el.getAttribute('aria-label') || [...(el.labels ?? [])].map((l) => l.textContent).join(' ') || '').trim();
    };
    if (!document.documentElement.lang) out.push('<html> has no lang');
    if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
    if (!document.querySelector('#page h2')) out.push('the page has no h2');
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden') continue;
      if (!name(el)) out.push(`unlabelled ${el.tagName.toLowerCase()}#${el.id || '?'}`);
    }
    for (const el of document.querySelectorAll('button, a[href]')) {
      if (!visible(el)) continue;
      if (!(el.getAttribute('aria-label') || el.textContent).trim()) out.push(`${el.tagName.toLowerCase()} without a name: ${el.outerHTML.slice(0, 80)}`);
    }
    for (const el of document.querySelectorAll('[role="region"], dialog, section[aria-labelledby]')) {
      if (visible(el) && !name(el)) out.push(`${el.tagName.toLowerCase()} region without a name`);
    }
    const ids = new Map();
    for (const el of document.querySelectorAll('[id]')) ids.set(el.id, (ids.get(el.id) ?? 0) + 1);
    for (const [id, n] of ids) if (n > 1) out.push(`id "${id}" used ${n} times`);
    for (const t of document.querySelectorAll('table')) if (!t.closest('[role="region"][aria-label]')) out.push('a table outside a labelled region');
    return out;
  });
  assert.deepEqual(issues, [], `${what}: accessibility`);
}

/** From the top of the page, Tab reaches the skip link and then every page of the navigation;
 *  Enter on a navigation link opens that page and moves focus to its heading. */
async function assertKeyboardReachable(page, what, current) {
  // Loaded anew, so that focus starts at the top of the document.
  await page.reload();
  await page.waitForSelector('#page h2');
  const reached = [];
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press('Tab');
    reached.push(await page.evaluate(() => {
      const el = document.activeElement;
      return el?.matches('nav.pages a') ? `nav:${el.dataset.page}` : el?.classList.contains('skip-link') ? 'skip' : (el?.id || el?.tagName || '').toString();
    }));
  }
  assert.equal(reached[0], 'skip', `${what}: the first Tab stop is the skip link (got ${reached.join(', ')})`);
  for (const p of PAGES) assert.ok(reached.includes(`nav:${p}`), `${what}: Tab reaches the ${p} link (got ${reached.join(', ')})`);
  // The skip link moves focus past the header and navigation.
  await page.focus('.skip-link');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'main', `${what}: the skip link moves focus to the content`);
  // Enter on a navigation link opens its page and focuses its heading (to another page and back).
  const other = PAGES.find((p) => p !== current);
  for (const p of [other, current]) {
    await page.focus(`nav.pages a[data-page="${p}"]`);
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => location.hash === `#/${n}` && document.activeElement?.tagName === 'H2', p);
  }
}

/** One page: loads cleanly, shows the live leader, is accessible and keyboard-reachable; then
 *  `content(page)` checks what it shows, and a screenshot is taken. */
async function checkPage(name, content) {
  const { page } = tabs.get('main');
  await goTo(page, name);
  const status = await assertLiveLeader(page, name);
  await content(page, status);
  await assertAccessible(page, name);
  await assertKeyboardReachable(page, name, name);
  await content(page, status); // Still right after the round trip through another page.
  await screenshot(page, name);
  assertClean(tabs.get('main'), name);
}

const text = (page, sel) => page.evaluate((s) => document.querySelector(s)?.innerText ?? '', sel);
/** The rows of the table in the region labelled `label`, as arrays of cell texts. */
const rows = (page, label) => page.evaluate((l) => [...document.querySelectorAll(`[role="region"][aria-label="${l}"] tbody tr`)]
  .map((tr) => [...tr.cells].map((c) => c.innerText.trim())), label);

function pidOf(file, binary) {
  const pid = Number(readFileSync(join(CLUSTER_DIR, 'pids', file), 'utf8').trim());
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  assert.ok(cmdline.includes(binary), `pid ${pid} (${file}) is ${binary}`);
  return pid;
}

// ---- the run ----

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} (Debian's chromium package)`);
  // A follower serves the console: the leader is killed at the end.
  const s = await apiAt(CONTROLLERS[0], '/v1/cluster');
  const follower = s.members.find((m) => m.id !== s.leaderId);
  consoleBase = follower.apiAddr.replace(/\/$/, '');
  consoleId = follower.id;
  userDataDir = mkdtempSync(join(tmpdir(), 'plum-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: VIEWPORT,
    colorScheme: 'light',
    locale: 'en-GB',
    timeout: 30000,
    // Without the background-networking flags Chromium's own outgoing connections are refused
    // many at a time on these machines.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  browser.setDefaultTimeout(15000);
  // A persistent context starts with one blank tab: not used.
  for (const p of browser.pages()) await p.close();
});

after(async () => {
  await browser?.close().catch(() => {});
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

test('sign in: without a token the console asks for one, and takes it', async () => {
  const tab = await openTab('main', '#/cluster', { token: false });
  const { page } = tab;
  await page.waitForSelector('#auth:not([hidden])');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'token-input', 'the token field has focus');
  assert.equal(await page.evaluate(() => document.querySelector('#token-input').labels[0]?.textContent), 'API token');
  await screenshot(page, 'sign-in', { keepFocus: true });
  await page.fill('#token-input', TOKEN);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#auth', { state: 'hidden' });
  await page.waitForFunction(() => document.querySelector('#whoami')?.textContent.startsWith('Role: admin'));
  // The one refusal: the console asks who it is before it has a token.
  assertClean(tab, 'sign in', [{ status: 401, url: /\/v1\/auth\/whoami$/ }]);
});

test('cluster page: every replica, its role, and the leader', async () => {
  await checkPage('cluster', async (page, s) => {
    await page.waitForSelector('[aria-label="Replicas of the controller"]');
    const r = await rows(page, 'Replicas of the controller');
    assert.equal(r.length, s.members.length, 'one row per replica');
    for (const m of s.members) {
      const row = r.find((cells) => cells[0].startsWith(String(m.id)));
      assert.ok(row, `a row for replica ${m.id}`);
      assert.equal(row[2], m.id === s.leaderId ? 'leader' : 'follower', `replica ${m.id}'s role`);
    }
    assert.match(await text(page, 'dl.facts'), new RegExp(`Leader\\s+replica ${s.leaderId}\\b`));
    assert.match(await text(page, '#page'), /Last leader change as replica \d+ saw it/);
    // Node failovers (none yet: every agent is alive), from `GET /v1/failovers`.
    await page.waitForFunction(() => /Node failovers\s+Nodes declared dead/.test(document.querySelector('#page')?.innerText ?? ''));
  });
});

test('nodes page: every node alive, with its instance', async () => {
  await checkPage('nodes', async (page) => {
    await page.waitForSelector('[aria-label="Nodes"]');
    const r = await rows(page, 'Nodes');
    assert.equal(r.length, AGENTS);
    for (const cells of r) {
      assert.equal(cells[2], 'alive', `${cells[0]} is alive`);
      assert.match(cells[5], /echo-demo-\d+\s+Running/, `${cells[0]} runs an echo instance`);
    }
    // The filter narrows the list (and its field has a label, checked with the rest).
    await page.fill('#node-filter', 'node-1');
    await page.waitForFunction(() => document.querySelectorAll('[aria-label="Nodes"] tbody tr').length === 1);
    await page.fill('#node-filter', '');
    await page.waitForFunction((n) => document.querySelectorAll('[aria-label="Nodes"] tbody tr').length === n, AGENTS);
  });
});

test('services page: echo with every endpoint healthy, live', async () => {
  await checkPage('services', async (page) => {
    await page.waitForSelector('[aria-label="Endpoints of echo"]');
    await page.waitForFunction(() => document.querySelector('.toolbar .badge')?.textContent === 'live');
    const eps = await api('/v1/discovery?service=echo');
    await page.waitForFunction((n) => document.querySelector('section[aria-labelledby="svc-echo"] .summary')?.textContent
      .startsWith(`${n} of ${n} endpoints healthy`), eps.length);
    const r = await rows(page, 'Endpoints of echo');
    assert.deepEqual(r.map((c) => c[0]).sort(), eps.map((e) => e.instanceId).sort());
  });
});

test('deployments page: echo-demo, its instances, and scaling through the dialog', async () => {
  await checkPage('deployments', async (page) => {
    await page.waitForSelector('[aria-label="Instances of echo-demo"]');
    await page.waitForFunction(() => /3 desired · 3 running · 3 ready/.test(document.querySelector('#page').innerText));
    assert.equal((await rows(page, 'Instances of echo-demo')).length, 3);
  });
  const tab = tabs.get('main');
  const { page } = tab;
  // Scale to 4 with the dialog (keyboard only), then back to 3.
  for (const n of [4, 3]) {
    await page.click('button[aria-label="Scale echo-demo"]');
    await page.waitForSelector('dialog[open]');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'scale-replicas', 'the dialog focuses its field');
    await assertAccessible(page, 'scale dialog');
    await page.fill('#scale-replicas', String(n));
    assert.match(await text(page, '#scale-summary'), new RegExp(`echo-demo goes from ${n === 4 ? 3 : 4} to ${n} replicas`));
    if (n === 4) await screenshot(page, 'deployments-scale', { keepFocus: true });
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => !document.querySelector('dialog')?.open);
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Scale echo-demo',
      'focus returns to the button that opened the dialog');
    await eventually(`the API has echo-demo at ${n} replicas`, 5000, async () => (await api('/v1/deployments/echo-demo')).spec.replicas === n);
    await page.waitForFunction((k) => new RegExp(`${k} desired · ${k} running · ${k} ready`).test(document.querySelector('#page').innerText)
      && document.querySelectorAll('[aria-label="Instances of echo-demo"] tbody tr').length === k, n, { timeout: 30000 });
  }
  assertClean(tab, 'scaling');
});

test('deployments page: rolling back an update through the dialog', async () => {
  const tab = tabs.get('main');
  const { page } = tab;
  const before = (await api('/v1/deployments/echo-demo')).spec.version;
  // An update (through the API), done: the page offers to roll it back.
  await api('/v1/deployments/echo-demo', { method: 'PATCH', body: { version: `${before}-next` } });
  const settled = (version) => eventually(`echo-demo at version ${version}, its rollout done`, 60000, async () => {
    const d = await api('/v1/deployments/echo-demo');
    const active = d.instances.filter((i) => !i.standby);
    return d.rollout === 'Done' && d.spec.version === version && active.length === 3
      && active.every((i) => i.generation === d.generation && i.phase === 'Running' && i.healthy);
  });
  await settled(`${before}-next`);
  await page.waitForSelector('button[aria-label="Roll back echo-demo"]');
  await page.click('button[aria-label="Roll back echo-demo"]');
  await page.waitForSelector('dialog[aria-labelledby="rollback-title"][open]');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Cancel', 'the dialog focuses Cancel');
  assert.match(await text(page, '#rollback-summary'), new RegExp(`runs version ${before}-next.*with version ${before}:`));
  await assertAccessible(page, 'rollback dialog');
  await screenshot(page, 'deployments-rollback', { keepFocus: true });
  await page.click(`dialog[open] button[type="submit"]`);
  await page.waitForFunction(() => !document.querySelector('dialog[aria-labelledby="rollback-title"]')?.open);
  await settled(before);
  await page.waitForFunction((v) => new RegExp(`Version\\s+${v.replace(/\./g, '\\.')}\\s`).test(document.querySelector('#page').innerText)
    && /Rollout\s+done/.test(document.querySelector('#page').innerText), before, { timeout: 10000 });
  assertClean(tab, 'rolling back');
});

test('config KV page: namespaces, keys, compare-and-set edits, live through the watch', async () => {
  await api('/v1/kv/app/key/color', { method: 'PUT', body: { value: 'red' } });
  await checkPage('kv', async (page) => {
    await page.waitForSelector('nav.kv-namespaces a[href="#/kv/app"]');
  });
  const tab = tabs.get('main');
  const { page } = tab;
  await page.click('nav.kv-namespaces a[href="#/kv/app"]');
  await page.waitForSelector('[aria-label="Keys of namespace app"]');
  const row = async (key) => (await rows(page, 'Keys of namespace app')).find((c) => c[0] === key);

  // Edit: compare-and-set on the version shown.
  const before = await api('/v1/kv/app/key/color');
  await page.click('button[aria-label="Edit color"]');
  await page.waitForSelector('section.editor:not([hidden])');
  assert.match(await text(page, '#kv-cas'), new RegExp(`still at version ${before.version}`));
  await assertAccessible(page, 'kv editor');
  await page.fill('#kv-value', 'blue');
  await page.click('section.editor button[type="submit"]');
  await page.waitForSelector('section.editor', { state: 'hidden' });
  const saved = await api('/v1/kv/app/key/color');
  assert.equal(saved.value, 'blue');
  assert.equal(saved.version, before.version + 1);
  await eventually('the table shows the new value (watch)', 5000, async () => (await row('color'))?.[1] === 'blue');

  // Another writer changes the key while it is being edited: the watch tells the editor, and
  // the save is refused (409) with nothing written.
  await page.click('button[aria-label="Edit color"]');
  await page.fill('#kv-value', 'purple');
  await api('/v1/kv/app/key/color', { method: 'PUT', body: { value: 'green' } });
  await page.waitForFunction(() => /changed meanwhile/.test(document.querySelector('section.editor .notice')?.textContent ?? ''), null,
    { timeout: 10000 });
  await eventually('the table shows the other writer\'s value (watch)', 5000, async () => (await row('color'))?.[1] === 'green');
  await page.click('section.editor button[type="submit"]');
  await page.waitForFunction(() => /Nothing was written/.test(document.querySelector('section.editor .notice')?.textContent ?? ''));
  assert.equal((await api('/v1/kv/app/key/color')).value, 'green', 'the refused save wrote nothing');
  await screenshot(page, 'kv-conflict', { keepFocus: true });
  // Reload takes the current version; saving then works.
  await page.click('section.editor button:text("Reload current value")');
  await page.waitForFunction(() => document.querySelector('#kv-value').value === 'green');
  await page.fill('#kv-value', 'purple');
  await page.click('section.editor button[type="submit"]');
  await page.waitForSelector('section.editor', { state: 'hidden' });
  assert.equal((await api('/v1/kv/app/key/color')).value, 'purple');

  // A key written elsewhere appears without a reload.
  await api('/v1/kv/app/key/size', { method: 'PUT', body: { value: '3', type: 'int' } });
  await eventually('a new key appears (watch)', 5000, async () => (await row('size'))?.[2] === 'int');
  await screenshot(page, 'kv');
  assertClean(tab, 'kv edits', [{ status: 409, url: /\/v1\/kv\/app\/key\/color$/ }]);
});

test('topology page: services as boxes, dependencies as arrows, each satisfied or not', async () => {
  // Two instances that declare their upstreams when they register: one on echo (healthy), one
  // on a service nothing provides.
  const gateways = [['gw-1', 'echo'], ['gw-2', 'ghost']];
  for (const [id, up] of gateways) {
    await api('/v1/services/register', { method: 'POST', body: { instanceId: id, ip: '127.0.0.1', ttlMs: 600000,
      endpoints: [{ serviceName: 'gateway', port: 9, protocol: 'http' }], upstreams: [up] } });
  }
  await checkPage('topology', async (page) => {
    await page.waitForFunction(() => document.querySelectorAll('svg.topology line.edge').length === 2);
    const r = await rows(page, 'Dependencies');
    assert.deepEqual(r.map((c) => [c[0], c[1], c[2], c[4]]),
      [['gateway', 'echo', 'registered', 'satisfied'], ['gateway', 'ghost', 'registered', 'unsatisfied']]);
    assert.equal(await page.locator('svg.topology line.edge.ok').count(), 1, 'the satisfied edge is drawn as such');
    assert.equal(await page.locator('svg.topology line.edge.bad').count(), 1, 'the unsatisfied edge is drawn as such');
    const boxes = await page.evaluate(() => [...document.querySelectorAll('svg.topology .svc text.name')].map((t) => t.textContent).sort());
    assert.deepEqual(boxes, ['echo', 'gateway', 'ghost']);
  });
  for (const [id] of gateways) await api(`/v1/services?instanceId=${id}`, { method: 'DELETE' });
});

test('an agent killed: the node shows dead, its instance moves, every page follows', async () => {
  // Each page in a tab of its own, all open while the node dies.
  const views = {};
  for (const name of ['nodes', 'services', 'deployments', 'cluster']) {
    views[name] = await openTab(`after-kill:${name}`, `#/${name}`);
    await views[name].page.waitForSelector('#page h2');
  }
  await views.nodes.page.waitForFunction((n) => document.querySelectorAll('[aria-label="Nodes"] tbody tr').length === n, AGENTS);
  await views.services.page.waitForFunction(() => document.querySelector('.toolbar .badge')?.textContent === 'live');
  const expiredBefore = (await api('/v1/cluster')).nodesExpired ?? 0;
  // The last node (node-N, agent N of the cluster script) that runs an echo instance.
  const placed = (await api('/v1/deployments/echo-demo')).instances.filter((i) => !i.standby && /^node-\d+$/.test(i.nodeId ?? ''))
    .sort((a, b) => Number(b.nodeId.slice(5)) - Number(a.nodeId.slice(5)));
  assert.ok(placed.length > 0, 'echo instances are placed');
  const victim = placed[0].nodeId;
  const instanceOnVictim = placed[0].instanceId;

  const pid = pidOf(`agent-${victim.slice(5)}.pid`, 'plum-agent');
  const killedAt = Date.now();
  process.kill(pid, 'SIGKILL');

  // Nodes: dead within the deadline, and no longer counted alive.
  await views.nodes.page.waitForFunction((v) => {
    const tr = [...document.querySelectorAll('[aria-label="Nodes"] tbody tr')].find((r) => r.cells[0].innerText.trim() === v);
    return tr?.cells[2].innerText.trim() === 'dead';
  }, victim, { timeout: NODE_DEAD_DEADLINE_MS });
  const deadAfter = Date.now() - killedAt;
  console.log(`# ${victim} shown dead ${deadAfter} ms after its agent was killed`);
  assert.match(await text(views.nodes.page, '.summary'), new RegExp(`${AGENTS - 1} alive\\s+1 dead`));
  await screenshot(views.nodes.page, 'nodes-node-dead');
  // Cluster page: a node failover row for it, naming the instance that left it.
  await views.cluster.page.waitForFunction(([v, i]) => {
    const tr = [...document.querySelectorAll('[aria-label="Node failovers"] tbody tr')].find((r) => r.cells[0].innerText.trim() === v);
    return tr?.cells[3].innerText.includes(i);
  }, [victim, instanceOnVictim], { timeout: NODE_DEAD_DEADLINE_MS });

  // Services (discovery stream): the dead node's endpoint leaves without a reload.
  await views.services.page.waitForFunction((v) => ![...document.querySelectorAll('[aria-label="Endpoints of echo"] tbody tr')]
    .some((r) => r.cells[1].innerText.trim() === v), victim, { timeout: NODE_DEAD_DEADLINE_MS });
  // Deployments: the instance is rescheduled on a live node and runs there.
  await views.deployments.page.waitForFunction(([i, v]) => {
    const tr = [...document.querySelectorAll('[aria-label="Instances of echo-demo"] tbody tr')].find((r) => r.cells[0].innerText.trim() === i);
    return tr && tr.cells[1].innerText.trim() !== v && /^node-/.test(tr.cells[1].innerText.trim());
  }, [instanceOnVictim, victim], { timeout: NODE_DEAD_DEADLINE_MS });
  const moved = (await api('/v1/deployments/echo-demo')).instances.find((i) => i.instanceId === instanceOnVictim);
  assert.notEqual(moved.nodeId, victim, 'the API has the instance on another node too');
  // ... and comes back into discovery there.
  await views.services.page.waitForFunction((n) => document.querySelector('section[aria-labelledby="svc-echo"] .summary')?.textContent
    .startsWith(`${n} of ${n} endpoints healthy`), 3, { timeout: 30000 });
  await views.deployments.page.waitForFunction(() => /3 desired · 3 running · 3 ready/.test(document.querySelector('#page').innerText),
    null, { timeout: 30000 });
  // Cluster page: the node failover done once its instance is ready elsewhere, with its duration,
  // as `GET /v1/failovers` says.
  await views.cluster.page.waitForFunction((v) => {
    const tr = [...document.querySelectorAll('[aria-label="Node failovers"] tbody tr')].find((r) => r.cells[0].innerText.trim() === v);
    return tr?.cells[4].innerText.trim() === 'done' && /^\d+(\.\d)? m?s$/.test(tr.cells[5].innerText.trim());
  }, victim, { timeout: NODE_DEAD_DEADLINE_MS });
  const failover = (await api('/v1/failovers')).failovers.find((f) => f.nodeId === victim);
  assert.ok(failover && !failover.inProgress && failover.durationMs > 0, `the API's failover of ${victim}: ${JSON.stringify(failover)}`);
  const movedOff = failover.instances.find((i) => i.instanceId === instanceOnVictim);
  assert.ok(movedOff && movedOff.state === 'ready' && movedOff.toNode !== victim, `${instanceOnVictim} in it: ${JSON.stringify(failover)}`);
  await screenshot(views.cluster.page, 'cluster-node-failover');
  // Cluster page: the expiry counted, as the API says.
  const expiredNow = await eventually('the API counts the expiry', 5000, async () => {
    const n = (await api('/v1/cluster')).nodesExpired ?? 0;
    return n > expiredBefore ? n : 0;
  });
  await views.cluster.page.waitForFunction((n) => new RegExp(`Nodes expired since that replica started\\s+${n}\\b`)
    .test(document.querySelector('dl.facts')?.innerText ?? ''), expiredNow, { timeout: 10000 });
  for (const [name, tab] of Object.entries(views)) assertClean(tab, `${name} after the agent was killed`);
});

test('the leader killed: the header names the new leader, the failover timeline shows the change', async () => {
  const tab = tabs.get('after-kill:cluster');
  const { page } = tab;
  let before = await assertLiveLeader(page, 'before the leader kill');
  if (before.leaderId === consoleId) {
    // The console's own replica leads (an election since the start): hand leadership over, so
    // that the page survives the kill.
    const to = before.members.find((m) => m.id !== consoleId).id;
    await api('/v1/cluster/transfer-leader', { method: 'POST', body: { id: to } });
    await eventually('leadership handed over', LEADER_DEADLINE_MS, async () => (await api('/v1/cluster')).leaderId === to);
    before = await assertLiveLeader(page, 'after handing leadership over');
  }
  const pid = pidOf(`${before.leaderId}.pid`, 'plum-controller');
  const killedAt = Date.now();
  process.kill(pid, 'SIGKILL');
  const after = await eventually('a new leader', LEADER_DEADLINE_MS, async () => {
    const s = await api('/v1/cluster');
    return s.leaderId && s.leaderId !== before.leaderId && s.term > before.term ? s : null;
  });
  await assertLiveLeader(page, 'after the leader kill');
  // The leader changes this page saw: the old leader, then the new one.
  await page.waitForFunction((id) => [...document.querySelectorAll('[aria-label="Leader changes seen by this page"] tbody tr')]
    .some((r) => r.cells[1].innerText.trim() === `replica ${id}`), after.leaderId);
  // The answering replica's timeline of the change: it learned of the new leader or became it.
  const steps = await rows(page, 'Steps of the last leader change');
  assert.ok(steps.some((c) => c[0] === 'Became leader' || c[0] === `Learned of a new leader (replica ${after.leaderId})`),
    `failover steps: ${JSON.stringify(steps)}`);
  // ... and only steps of this change (the replica's clock is this machine's; shown in local time).
  const msOfDay = (d) => ((d.getHours() * 60 + d.getMinutes()) * 60 + d.getSeconds()) * 1000 + d.getMilliseconds();
  for (const [what, at] of steps) {
    const [hh, mm, rest] = at.split(':');
    const shown = ((Number(hh) * 60 + Number(mm)) * 60) * 1000 + Math.round(Number(rest) * 1000);
    const sinceKill = (shown - msOfDay(new Date(killedAt - 1000)) + 86400000) % 86400000;
    assert.ok(sinceKill < 60000, `step "${what}" at ${at} belongs to this change (the leader was killed at ${new Date(killedAt).toTimeString()})`);
  }
  // The killed replica shows as unreachable.
  await page.waitForFunction((id) => {
    const tr = [...document.querySelectorAll('[aria-label="Replicas of the controller"] tbody tr')].find((r) => r.cells[0].innerText.trim() === String(id));
    return tr?.cells[7].innerText.trim() === 'no';
  }, before.leaderId);
  await screenshot(page, 'cluster-failover', { fullPage: true });
  for (const [name, t] of tabs) assertClean(t, `${name} after the leader was killed`);
});
