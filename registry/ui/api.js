// The console's only door to the cluster: the same HTTP API every client uses, on the replica
// that served the page (same origin). The token lives in this tab's sessionStorage and goes in
// the `Authorization` header, never in a URL.

const TOKEN_KEY = 'plum.console.token';
/** Long polls ask the replica to answer within this (it allows up to 120 s). */
const WATCH_TIMEOUT_MS = 25000;

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: nothing was kept.
  }
}

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message);
    this.name = 'ApiError';
    /** HTTP status; 0 when the replica could not be reached. */
    this.status = status;
    /** The JSON error body (`{error, retryable?, outcomeUnknown?, detail?}`) when there was one. */
    this.body = body;
  }
}

let onAuthFailure = () => {};
const responseListeners = new Set();

/** Called with the error on every 401 and 403 (the app shows the token form). */
export function setAuthFailureHandler(fn) {
  onAuthFailure = fn;
}

/** Called with the headers of every answer (leader and replica ids). */
export function onResponse(fn) {
  responseListeners.add(fn);
  return () => responseListeners.delete(fn);
}

export function isAbort(err) {
  return err?.name === 'AbortError';
}

async function send(path, { method = 'GET', body, signal, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'same-origin',
      redirect: 'error',
    });
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new ApiError(0, null, 'Cannot reach the replica that served this page');
  }
  for (const fn of responseListeners) fn(resp.headers);
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch {
      // Not JSON (a proxy's page): the status says enough.
    }
    const err = new ApiError(resp.status, data, data?.error || `${resp.status} ${resp.statusText}`);
    // After the caller's own handling (e.g. closing a modal dialog that would keep the token
    // form from taking focus).
    if (resp.status === 401 || resp.status === 403) setTimeout(() => onAuthFailure(err), 0);
    throw err;
  }
  return resp;
}

function indexOf(headers) {
  const raw = headers.get('x-plum-index');
  return raw === null ? null : Number(raw);
}

/** One call: `{data, index, headers, status}`; throws `ApiError` on a refusal. */
export async function api(path, options = {}) {
  const resp = await send(path, options);
  const text = resp.status === 204 ? '' : await resp.text();
  return { data: text ? JSON.parse(text) : null, index: indexOf(resp.headers), headers: resp.headers, status: resp.status };
}

/** Path segment, escaped. */
export function seg(s) {
  return encodeURIComponent(s);
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/** Calls `load()` now and every `intervalMs` after it settles, until `signal` aborts;
 *  `onResult(data, error)` gets each outcome. For what has no watch (e.g. `/v1/cluster`). */
export async function poll(load, intervalMs, signal, onResult) {
  while (!signal.aborted) {
    try {
      const data = await load(signal);
      if (signal.aborted) return;
      onResult(data, null);
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      onResult(null, e);
      if (e.status === 401) return; // The app asks for another token and starts again.
    }
    await sleep(intervalMs, signal);
  }
}

/** Keeps `path` (a list with `x-plum-index`) fresh through its long-poll watch
 *  (`watch=true&index=N`): the first call reads at once, each next one waits for a change after
 *  the index the previous one returned. After an error it starts over with a plain read. */
export async function watch(path, signal, onResult) {
  let index = null;
  let backoff = 500;
  const sep = path.includes('?') ? '&' : '?';
  while (!signal.aborted) {
    const url = index === null ? path : `${path}${sep}watch=true&index=${index}&timeoutMs=${WATCH_TIMEOUT_MS}`;
    try {
      const r = await api(url, { signal });
      if (signal.aborted) return;
      // A watch that timed out answers with the same index: nothing changed, nothing to redraw.
      if (index === null || r.index !== index) onResult(r.data, null, r.index);
      index = r.index ?? 0;
      backoff = 500;
    } catch (e) {
      if (isAbort(e) || signal.aborted) return;
      onResult(null, e, index);
      if (e.status === 401) return;
      index = null;
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}

/** Reads a server-sent event stream through `fetch` (an `EventSource` cannot send the
 *  `Authorization` header), calling `onOpen()` once connected and `onEvent({event, id, data})`
 *  per event; resolves when the stream ends, throws on a refusal or a broken connection. */
export async function eventStream(path, signal, onEvent, onOpen) {
  const resp = await send(path, { signal, accept: 'text/event-stream' });
  onOpen?.();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
        const ev = { event: 'message', id: null, data: [] };
        for (const line of block.split(/\r?\n/)) {
          if (line === '' || line.startsWith(':')) continue;
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          let val = i < 0 ? '' : line.slice(i + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') ev.event = val;
          else if (field === 'id') ev.id = val;
          else if (field === 'data') ev.data.push(val);
        }
        if (ev.data.length > 0) onEvent({ event: ev.event, id: ev.id, data: ev.data.join('\n') });
      }
    }
  } catch (e) {
    if (isAbort(e) || signal.aborted) throw e;
    throw new ApiError(0, null, 'The live update stream broke');
  } finally {
    reader.releaseLock?.();
  }
}
