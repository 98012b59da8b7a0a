"""Discovery through a local cache kept fresh by a watch, not by a TTL.

The first lookup of a service fetches it and starts a background long poll
(``GET /v1/discovery?watch=true&index=N``) that replaces the cached endpoints when the cluster's
answer changes. Lookups are served from memory. Rules (shared by both clients, in
:func:`merge`, :func:`confirm` and :func:`judge`):

* an answer with an index below the cached one is older than what we hold (a lagging replica):
  ignored, the cache never goes back in time;
* an empty answer never wipes a non-empty cache by itself: the removal is confirmed first by a
  linearizable read (``consistent=true``), and only that read's answer is applied;
* while the cluster cannot be reached the last known endpoints are served, marked ``stale``, up
  to ``max_staleness``; past it a lookup raises :class:`~plum_sdk.errors.Unreachable` rather
  than hand out endpoints nobody has vouched for in a long time.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
from dataclasses import dataclass, replace

from ._core import Answer, Backoff, Request
from ._http import AsyncTransport, SyncTransport, decode, stop_task
from .errors import PlumError, Unreachable
from .models import Endpoint, Query


@dataclass(frozen=True)
class DiscoveryOptions:
    watch_wait: float = 10.0
    """How long the server holds one watch request open when nothing changes (seconds)."""
    max_staleness: float | None = 300.0
    """Serve the last known endpoints at most this long after the cluster last confirmed them
    (``None``: for ever)."""
    client_service: str | None = None
    """The service this process serves, if any: sent with lookups (``clientService``) so the
    cluster's topology shows what it depends on (observed edges)."""


@dataclass(frozen=True)
class Snapshot:
    endpoints: tuple[Endpoint, ...]
    index: int
    """The service's change index on the cluster (the watch's resume point)."""
    confirmed: float
    """``time.monotonic()`` when the cluster last confirmed this answer."""
    contact_lost: bool = False


@dataclass(frozen=True)
class Discovered:
    endpoints: list[Endpoint]
    stale: bool
    """True when the cluster could not confirm them lately (it is unreachable)."""
    age: float
    """Seconds since the cluster last confirmed them."""


_BACKOFF = Backoff(base=0.05, max=2.0)


def fetch_request(service: str, after: int | None, wait: float, consistent: bool = False,
                  client_service: str | None = None) -> Request:
    pairs = {"service": service}
    if client_service:
        pairs["clientService"] = client_service
    if consistent:
        pairs["consistent"] = "true"
    if after is None:
        return Request("GET", "/v1/discovery?" + urllib.parse.urlencode(pairs), attempt_timeout=3.0, deadline=6.0)
    pairs.update({"watch": "true", "index": str(after), "timeoutMs": str(int(wait * 1000))})
    return Request("GET", "/v1/discovery?" + urllib.parse.urlencode(pairs),
                   attempt_timeout=wait + 3.0, deadline=wait + 6.0, max_rounds=1)


def read_endpoints(a: Answer) -> tuple[list[Endpoint], int | None]:
    return [Endpoint.from_json(d) for d in (decode(a.text) or [])], a.index


def merge(s: Snapshot, endpoints: list[Endpoint], index: int | None, now: float) -> tuple[Snapshot, bool]:
    """Applies a (watch) answer; returns the new snapshot and whether the answer is an empty one
    over a non-empty cache, which needs :func:`confirm` before it may be applied."""
    if index is not None and index < s.index:
        return s, False  # older than what we hold: a lagging replica
    if not endpoints and s.endpoints:
        return s, True
    return Snapshot(tuple(endpoints), max(index or 0, s.index), now, False), False


def confirm(s: Snapshot, endpoints: list[Endpoint], index: int | None, now: float) -> Snapshot:
    """Applies the answer of the linearizable read that checks an empty answer."""
    if index is not None and index < s.index:
        return s
    return Snapshot(tuple(endpoints), max(index or 0, s.index), now, False)


def judge(service: str, s: Snapshot, options: DiscoveryOptions, now: float) -> Discovered:
    age = max(0.0, now - s.confirmed)
    # A long poll answers at least every watch_wait: silence well beyond it means the replica is
    # not answering even if no error was seen yet (black-holed).
    stale = s.contact_lost or age > options.watch_wait * 2 + 1.0
    if stale and options.max_staleness is not None and age > options.max_staleness:
        raise Unreachable(f"the cluster has not confirmed the endpoints of `{service}` for {age:.1f} s "
                          "(more than the maximum staleness)")
    return Discovered(list(s.endpoints), stale, age)


def _filter(d: Discovered, query: Query | None) -> Discovered:
    if query is None:
        return d
    vf = query.matcher()
    return replace(d, endpoints=[e for e in d.endpoints if query.matches(e, vf)])


class Discovery:
    """The blocking client's discovery cache: one daemon thread per watched service, stopped by
    :meth:`close` (the client's ``close``)."""

    def __init__(self, t: SyncTransport, options: DiscoveryOptions) -> None:
        self._t, self.options = t, options
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()

    def endpoints(self, service: str) -> Discovered:
        return judge(service, self._snapshot(service), self.options, time.monotonic())

    def find(self, service: str, query: Query | None = None) -> Discovered:
        """The cached endpoints of ``service`` that pass ``query``."""
        return _filter(self.endpoints(service), query)

    def cached(self, service: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(service)

    def _snapshot(self, service: str) -> Snapshot:
        if self._stop.is_set():
            raise PlumError("the client is closed")
        with self._lock:
            s = self._snapshots.get(service)
        if s is not None:
            return s
        first = fetch_request(service, None, 0, client_service=self.options.client_service)
        endpoints, index = read_endpoints(self._t.send(first))
        with self._lock:
            if service in self._snapshots:  # another caller started it meanwhile
                return self._snapshots[service]
            s = Snapshot(tuple(endpoints), index or 0, time.monotonic())
            self._snapshots[service] = s
            th = threading.Thread(target=self._keep_fresh, args=(service,), name=f"plum-discovery-{service}",
                                  daemon=True)
            self._threads[service] = th
            th.start()
        return s

    def _set(self, service: str, s: Snapshot) -> None:
        with self._lock:
            self._snapshots[service] = s

    def _keep_fresh(self, service: str) -> None:
        failures = 0
        while not self._stop.is_set():
            s = self.cached(service)
            assert s is not None
            try:
                endpoints, index = read_endpoints(self._t.send(fetch_request(service, s.index, self.options.watch_wait,
                                                  client_service=self.options.client_service)))
                s2, check = merge(s, endpoints, index, time.monotonic())
                if check:
                    endpoints, index = read_endpoints(self._t.send(fetch_request(service, None, 0, consistent=True)))
                    s2 = confirm(s, endpoints, index, time.monotonic())
                self._set(service, s2)
                failures = 0
                if check or s2 is s:
                    # Nothing new came of that answer: do not spin on a replica answering at once.
                    self._stop.wait(_BACKOFF.delay(0))
            except PlumError:
                if self._stop.is_set():
                    return
                cur = self.cached(service)
                if cur is not None and not cur.contact_lost:
                    self._set(service, replace(cur, contact_lost=True))
                self._stop.wait(_BACKOFF.delay(failures))
                failures += 1
            except Exception:  # noqa: BLE001 - the transport was closed under us
                if self._stop.is_set():
                    return
                self._stop.wait(_BACKOFF.delay(failures))
                failures += 1

    def close(self) -> None:
        """Stops every watch thread (the transport must be closed after, which also ends a poll
        in flight)."""
        self._stop.set()

    def join(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for th in list(self._threads.values()):
            th.join(max(0.0, deadline - time.monotonic()))


class AsyncDiscovery:
    """The asyncio client's discovery cache: one task per watched service, cancelled by
    :meth:`aclose` (the client's ``aclose``)."""

    def __init__(self, t: AsyncTransport, options: DiscoveryOptions) -> None:
        self._t, self.options = t, options
        self._snapshots: dict[str, Snapshot] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._starting: dict[str, asyncio.Future[Snapshot]] = {}
        self._closed = False

    async def endpoints(self, service: str) -> Discovered:
        return judge(service, await self._snapshot(service), self.options, time.monotonic())

    async def find(self, service: str, query: Query | None = None) -> Discovered:
        return _filter(await self.endpoints(service), query)

    def cached(self, service: str) -> Snapshot | None:
        return self._snapshots.get(service)

    async def _snapshot(self, service: str) -> Snapshot:
        if self._closed:
            raise PlumError("the client is closed")
        s = self._snapshots.get(service)
        if s is not None:
            return s
        if service in self._starting:
            return await asyncio.shield(self._starting[service])
        fut: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        self._starting[service] = fut
        try:
            first = fetch_request(service, None, 0, client_service=self.options.client_service)
            endpoints, index = read_endpoints(await self._t.send(first))
            s = Snapshot(tuple(endpoints), index or 0, time.monotonic())
            self._snapshots[service] = s
            self._tasks[service] = asyncio.create_task(self._keep_fresh(service), name=f"plum-discovery-{service}")
            fut.set_result(s)
            return s
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            del self._starting[service]

    async def _keep_fresh(self, service: str) -> None:
        failures = 0
        while not self._closed:
            s = self._snapshots[service]
            try:
                answer = await self._t.send(fetch_request(service, s.index, self.options.watch_wait,
                                                  client_service=self.options.client_service))
                endpoints, index = read_endpoints(answer)
                s2, check = merge(s, endpoints, index, time.monotonic())
                if check:
                    answer = await self._t.send(fetch_request(service, None, 0, consistent=True))
                    endpoints, index = read_endpoints(answer)
                    s2 = confirm(s, endpoints, index, time.monotonic())
                self._snapshots[service] = s2
                failures = 0
                if check or s2 is s:
                    await asyncio.sleep(_BACKOFF.delay(0))
            except PlumError:
                cur = self._snapshots[service]
                if not cur.contact_lost:
                    self._snapshots[service] = replace(cur, contact_lost=True)
                await asyncio.sleep(_BACKOFF.delay(failures))
                failures += 1
            except Exception:  # noqa: BLE001 - the transport was closed under us
                if self._closed:
                    return
                raise

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks.values()):
            await stop_task(task)
