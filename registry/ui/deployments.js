// Deployments page: each deployment's instances, phases and rollout progress; scaling
// (`PATCH /v1/deployments/{id}` with `{"replicas": n}`) and rolling back to the spec the last
// rolling update replaced (`POST /v1/deployments/{id}/rollback`, offered when the deployment
// names one in `rollbackTo`), each after a confirmation dialog. Data: `GET /v1/deployments`,
// polled every 2 s (it has no watch; the assignments watch is per node and marks the node it
// names as running an agent, so a console must not call it).

import { api, isAbort, seg } from './api.js';
import { agoSecs, badge, dateTime, describeError, freshness, h, labelChips, phaseBadge, renderInto, table } from './dom.js';

const POLL_MS = 2000;
/** `MAX_REPLICAS` of the controller. */
const MAX_REPLICAS = 1000;

export function mount(root, ctx) {
  const body = h('div');
  let data = null;
  let error = null;
  let at = 0;
  let wake = () => {};
  const draw = () => renderInto(body, view(data, error, at, { scale: (d) => dialog.open(d), rollBack: (d) => back.open(d) }));
  const dialog = scaleDialog(ctx, body, () => wake());
  const back = rollbackDialog(ctx, body, () => wake());
  root.append(
    h('h2', { tabindex: '-1', text: 'Deployments' }),
    h('p', { class: 'lede', text: 'What should run, where each instance runs, and how far a rolling update has got. Refreshed every 2 seconds.' }),
    h('p', { class: 'muted', text: 'Scaling and rolling back ask for confirmation and need an admin token. Rolling back returns to the spec the last rolling update replaced.' }),
    body,
    dialog.el,
    back.el,
  );
  draw();
  (async () => {
    while (!ctx.signal.aborted) {
      try {
        const r = await api('/v1/deployments', { signal: ctx.signal });
        data = (r.data ?? []).sort((a, b) => a.deploymentId.localeCompare(b.deploymentId));
        at = Date.now();
        error = null;
      } catch (e) {
        if (isAbort(e) || ctx.signal.aborted) return;
        error = e;
        if (e.status === 401) return;
      }
      draw();
      // Sleeps until the next poll, or until an action asks for a fresh read at once.
      await new Promise((resolve) => {
        const t = setTimeout(resolve, POLL_MS);
        wake = () => { clearTimeout(t); resolve(); };
      });
    }
  })();
  ctx.signal.addEventListener('abort', () => wake(), { once: true });
}

function view(data, error, at, actions) {
  if (!data) return [freshness(0, error)];
  return [
    freshness(at, error),
    data.length === 0 ? h('p', { class: 'empty', text: 'No deployment yet (plumctl deploy, or POST /v1/deployments).' }) : null,
    data.map((d) => deployment(d, actions)),
  ];
}

function fact(term, value) {
  return [h('dt', { text: term }), h('dd', {}, value)];
}

function rollout(d, active) {
  const current = active.filter((i) => i.generation === d.generation);
  const ready = current.filter((i) => i.phase === 'Running' && i.healthy).length;
  const old = active.length - current.length;
  const want = d.spec.replicas;
  const r = d.rollout || '';
  if (r === 'InProgress') {
    return [badge('rolling update', 'warn'), ' ',
      want > 0 ? h('progress', { max: want, value: Math.min(ready, want), 'aria-label': `Rollout of ${d.deploymentId}` }) : null,
      ` ${ready} of ${want} new instance${want === 1 ? '' : 's'} ready, ${old} old left`];
  }
  if (r.startsWith('Failed')) return [badge('failed', 'bad'), ` ${r.replace(/^Failed:?\s*/, '')}`];
  if (r === 'Done') return badge('done', 'ok');
  return r ? badge(r, 'muted') : h('span', { class: 'muted', text: 'no update yet' });
}

/** What a spec runs, in a few words: version, command and arguments. */
function runs(spec) {
  return `version ${spec.version || '(none)'}: ${[spec.command, ...(spec.args ?? [])].join(' ')}`;
}

function deployment(d, { scale, rollBack }) {
  const spec = d.spec ?? {};
  const instances = [...(d.instances ?? [])].sort((a, b) => a.instanceId.localeCompare(b.instanceId));
  const active = instances.filter((i) => !i.standby);
  const running = active.filter((i) => i.phase === 'Running').length;
  const ready = active.filter((i) => i.phase === 'Running' && i.healthy).length;
  const headingId = `dep-${d.deploymentId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  return h('section', { class: 'panel', 'aria-labelledby': headingId },
    h('div', { class: 'panel-head' },
      h('h3', { id: headingId, text: d.deploymentId }),
      h('div', { class: 'actions' },
        d.rollbackTo
          ? h('button', { type: 'button', class: 'secondary', dataset: { key: `rollback:${d.deploymentId}` }, onclick: () => rollBack(d),
            'aria-label': `Roll back ${d.deploymentId}`, text: 'Roll back…' })
          : null,
        h('button', { type: 'button', dataset: { key: `scale:${d.deploymentId}` }, onclick: () => scale(d),
          'aria-label': `Scale ${d.deploymentId}`, text: 'Scale…' }))),
    d.reschedulePaused ? h('p', { class: 'notice warn', text: `Rescheduling paused: ${d.reschedulePaused}` }) : null,
    h('dl', { class: 'facts' },
      fact('Name', spec.name ?? '—'),
      fact('Version', spec.version || '—'),
      fact('Replicas', `${spec.replicas} desired · ${running} running · ${ready} ready`),
      spec.standby ? fact('Warm standbys', String(spec.standby)) : null,
      fact('Generation', String(d.generation ?? 0)),
      fact('Rollout', rollout(d, active)),
      d.rollbackTo ? fact('Rolls back to', runs(d.rollbackTo)) : null,
      spec.service?.name ? fact('Service', `${spec.service.name}${spec.service.protocol ? ` (${spec.service.protocol})` : ''}`) : null,
      fact('Placement', labelChips(spec.placement?.labels)),
      fact('Created', h('span', { title: dateTime(d.createdAt * 1000), text: agoSecs(d.createdAt) }))),
    table(`Instances of ${d.deploymentId}`, ['Instance', 'Node', 'Phase', 'Port', 'Restarts', 'Generation', 'Role', 'Updated'],
      instances.map((i) => [
        h('span', { class: 'mono', text: i.instanceId }),
        i.nodeId || badge('unplaced', 'warn'),
        phaseBadge(i.phase, i.healthy),
        i.port ? String(i.port) : '—',
        String(i.restarts ?? 0),
        i.generation === d.generation ? String(i.generation) : `${i.generation} (old)`,
        i.standby ? badge('standby', 'muted') : 'active',
        h('span', { title: dateTime(i.updatedAt * 1000), text: agoSecs(i.updatedAt) }),
      ]), { numeric: [3, 4, 5], empty: 'No instance.' }));
}

/** The scale dialog: the number of replicas, what will happen, and a button that says it. */
function scaleDialog(ctx, list, refresh) {
  const title = h('h3', { id: 'scale-title' });
  const input = h('input', { id: 'scale-replicas', type: 'number', min: 0, max: MAX_REPLICAS, step: 1, required: true,
    inputmode: 'numeric', 'aria-describedby': 'scale-summary' });
  const summary = h('p', { id: 'scale-summary' });
  const error = h('p', { class: 'error', role: 'alert' });
  const confirm = h('button', { type: 'submit', text: 'Scale' });
  const cancel = h('button', { type: 'button', class: 'secondary', text: 'Cancel' });
  const form = h('form', { novalidate: true }, title,
    h('label', { for: 'scale-replicas', text: 'Replicas' }), input, summary, error,
    h('div', { class: 'actions' }, confirm, cancel));
  const el = h('dialog', { class: 'dialog', 'aria-labelledby': 'scale-title' }, form);
  let current = null;

  const wanted = () => {
    const n = Number(input.value);
    return input.value.trim() !== '' && Number.isInteger(n) && n >= 0 && n <= MAX_REPLICAS ? n : null;
  };
  const update = () => {
    const n = wanted();
    confirm.disabled = n === null || n === current.replicas;
    if (n === null) {
      summary.textContent = `Enter a whole number from 0 to ${MAX_REPLICAS}.`;
      confirm.textContent = 'Scale';
    } else if (n === current.replicas) {
      summary.textContent = `${current.id} already has ${n} replica${n === 1 ? '' : 's'}.`;
      confirm.textContent = 'Scale';
    } else {
      summary.textContent = `${current.id} goes from ${current.replicas} to ${n} replica${n === 1 ? '' : 's'}.`
        + (n < current.replicas ? ` ${current.replicas - n} instance${current.replicas - n === 1 ? '' : 's'} will be stopped.` : '')
        + (n === 0 ? ' Nothing of it will run.' : '');
      confirm.textContent = `Scale to ${n}`;
    }
  };
  input.addEventListener('input', update);
  cancel.addEventListener('click', () => el.close());
  el.addEventListener('close', () => {
    // Back to the button that opened it (the list may have been redrawn meanwhile).
    if (current) list.querySelector(`[data-key="${CSS.escape(`scale:${current.id}`)}"]`)?.focus();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const n = wanted();
    if (n === null || n === current.replicas) return;
    await submitDialog({ el, confirm, error, ctx }, async () => {
      await api(`/v1/deployments/${seg(current.id)}`, { method: 'PATCH', body: { replicas: n }, signal: ctx.signal });
      ctx.announce(`Scaled ${current.id} to ${n} replicas.`);
      refresh();
    });
  });
  ctx.signal.addEventListener('abort', () => { if (el.open) el.close(); }, { once: true });
  return {
    el,
    open(d) {
      current = { id: d.deploymentId, replicas: d.spec.replicas };
      title.textContent = `Scale ${d.deploymentId}`;
      input.value = String(d.spec.replicas);
      error.textContent = '';
      update();
      el.showModal();
      input.focus();
      input.select();
    },
  };
}

/** The rollback dialog: what runs now, what it goes back to, and a button that says it. */
function rollbackDialog(ctx, list, refresh) {
  const title = h('h3', { id: 'rollback-title' });
  const summary = h('p', { id: 'rollback-summary' });
  const error = h('p', { class: 'error', role: 'alert' });
  const confirm = h('button', { type: 'submit', text: 'Roll back' });
  const cancel = h('button', { type: 'button', class: 'secondary', text: 'Cancel' });
  const form = h('form', { novalidate: true }, title, summary, error, h('div', { class: 'actions' }, confirm, cancel));
  const el = h('dialog', { class: 'dialog', 'aria-labelledby': 'rollback-title', 'aria-describedby': 'rollback-summary' }, form);
  let current = null;

  cancel.addEventListener('click', () => el.close());
  el.addEventListener('close', () => {
    if (current) list.querySelector(`[data-key="${CSS.escape(`rollback:${current.id}`)}"]`)?.focus();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    await submitDialog({ el, confirm, error, ctx }, async () => {
      await api(`/v1/deployments/${seg(current.id)}/rollback`, { method: 'POST', signal: ctx.signal });
      ctx.announce(`Rolling ${current.id} back to ${current.to}.`);
      refresh();
    });
  });
  ctx.signal.addEventListener('abort', () => { if (el.open) el.close(); }, { once: true });
  return {
    el,
    open(d) {
      const to = d.rollbackTo.version || 'the previous spec';
      current = { id: d.deploymentId, to };
      title.textContent = `Roll back ${d.deploymentId}`;
      summary.textContent = `${d.deploymentId} runs ${runs(d.spec)}. A rolling update replaces its ${d.spec.replicas} `
        + `instance${d.spec.replicas === 1 ? '' : 's'} one at a time with ${runs(d.rollbackTo)}`
        + (d.rollout === 'InProgress' ? '. A rolling update is in progress now: the cluster will refuse until it ends.' : '.');
      confirm.textContent = `Roll back to ${to}`;
      error.textContent = '';
      el.showModal();
      cancel.focus();
    },
  };
}

// Runs a dialog's confirmed action: the dialog closes when it succeeds, shows the error when it
// fails, and closes on 401/403 (the token form the app shows must not sit behind a modal).
async function submitDialog({ el, confirm, error, ctx }, action) {
  confirm.disabled = true;
  error.textContent = '';
  try {
    await action();
    el.close();
  } catch (e) {
    if (isAbort(e)) return;
    if (e.status === 401 || e.status === 403) {
      el.close();
      return;
    }
    error.textContent = describeError(e);
  } finally {
    confirm.disabled = false;
  }
}
