"""Register-and-heartbeat for services that no agent runs: register (declaring a TTL),
heartbeat in the background at the interval the cluster advises (a quarter of the TTL until it
does), register again what the cluster says it forgot, deregister on close. All instances of one
registrar go in one batch request per interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ._core import Request
from ._http import AsyncTransport, SyncTransport, decode, stop_task
from .errors import PlumError

log = logging.getLogger("plum_sdk.registration")

DEFAULT_TTL = 10.0


@dataclass(frozen=True)
class Instance:
    """One instance and the endpoints it serves (``/v1/services/register`` body)."""

    instance_id: str
    service: str
    port: int
    ip: str = "127.0.0.1"
    node_id: str | None = None
    protocol: str = "http"
    version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ttl: float | None = None
    """Seconds; the registrar's TTL when ``None``."""
    upstreams: tuple[str, ...] = ()
    """Services this instance depends on: edges of the cluster's topology (``GET /v1/topology``)."""

    def body(self, default_ttl: float) -> dict[str, Any]:
        b: dict[str, Any] = {
            "instanceId": self.instance_id, "ip": self.ip,
            "endpoints": [{"serviceName": self.service, "port": self.port, "protocol": self.protocol,
                           "version": self.version, "labels": dict(self.labels)}],
            "ttlMs": int((self.ttl if self.ttl is not None else default_ttl) * 1000),
        }
        if self.node_id:
            b["nodeId"] = self.node_id
        if self.upstreams:
            b["upstreams"] = list(self.upstreams)
        return b


def interval_for(ttl: float) -> float:
    """Four heartbeats per TTL, so three may be lost before the instance expires."""
    return max(ttl / 4, 0.05)


def register_request(bodies: list[dict[str, Any]]) -> Request:
    return Request("POST", "/v1/services/register/batch", json.dumps({"items": bodies}).encode(), idempotent=True)


def heartbeat_request(bodies: list[dict[str, Any]], interval: float) -> Request:
    items = [{"instanceId": b["instanceId"], "ttlMs": b["ttlMs"]} for b in bodies]
    return Request("POST", "/v1/services/heartbeat/batch", json.dumps({"items": items}).encode(), idempotent=True,
                   deadline=max(interval, 0.5))


def deregister_request(instance_id: str) -> Request:
    return Request("DELETE", "/v1/services?" + urllib.parse.urlencode({"instanceId": instance_id}), idempotent=True)


class _Book:
    """What both registrars hold: the instances, and the interval in force."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.interval = interval_for(ttl)
        self.held: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def add(self, instances: list[Instance]) -> list[dict[str, Any]]:
        return [i.body(self.ttl) for i in instances]

    def keep(self, bodies: list[dict[str, Any]]) -> None:
        with self.lock:
            for b in bodies:
                self.held[b["instanceId"]] = b

    def follow(self, answer: Any) -> list[str]:
        """Takes the cluster's advice; returns the ids it says it does not know."""
        if isinstance(answer, dict):
            ms = answer.get("heartbeatIntervalMs")
            if isinstance(ms, int) and ms > 0:
                self.interval = ms / 1000
            unknown = answer.get("unknown") or []
            return [str(u) for u in unknown]
        return []

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.held.values())

    def again(self, ids: list[str]) -> list[dict[str, Any]]:
        with self.lock:
            return [self.held[i] for i in ids if i in self.held]

    def drop(self, instance_id: str) -> None:
        with self.lock:
            self.held.pop(instance_id, None)

    def ids(self) -> list[str]:
        with self.lock:
            return list(self.held)


class Registrar:
    """Blocking registrar: a daemon thread heartbeats; :meth:`close` stops it and deregisters."""

    def __init__(self, t: SyncTransport, ttl: float = DEFAULT_TTL) -> None:
        self._t = t
        self._book = _Book(ttl)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plum-registrar", daemon=True)
        self._thread.start()

    @property
    def interval(self) -> float:
        return self._book.interval

    def instance_ids(self) -> list[str]:
        return self._book.ids()

    def register(self, *instances: Instance) -> None:
        bodies = self._book.add(list(instances))
        self._book.follow(decode(self._t.send(register_request(bodies)).text))
        self._book.keep(bodies)

    def deregister(self, instance_id: str) -> None:
        self._book.drop(instance_id)
        self._t.send(deregister_request(instance_id))

    def _loop(self) -> None:
        while not self._stop.wait(self._book.interval):
            bodies = self._book.snapshot()
            if not bodies:
                continue
            try:
                answer = decode(self._t.send(heartbeat_request(bodies, self._book.interval)).text)
                again = self._book.again(self._book.follow(answer))
                if again:
                    log.info("the cluster forgot %d instance(s); registering them again", len(again))
                    self._book.follow(decode(self._t.send(register_request(again)).text))
            except PlumError as e:
                log.warning("heartbeat of %d instance(s) not acknowledged: %s", len(bodies), e)
            except Exception:  # noqa: BLE001 - the transport was closed under us
                if self._stop.is_set():
                    return
                raise

    def close(self) -> None:
        """Stops heartbeating and deregisters every instance (errors are raised after all were
        tried)."""
        self._stop.set()
        self._thread.join(5.0)
        first: PlumError | None = None
        for iid in self._book.ids():
            try:
                self.deregister(iid)
            except PlumError as e:
                first = first or e
        if first is not None:
            raise first


class AsyncRegistrar:
    """asyncio registrar: a task heartbeats; :meth:`aclose` cancels it and deregisters."""

    def __init__(self, t: AsyncTransport, ttl: float = DEFAULT_TTL) -> None:
        self._t = t
        self._book = _Book(ttl)
        self._closed = False
        self._task = asyncio.create_task(self._loop(), name="plum-registrar")

    @property
    def interval(self) -> float:
        return self._book.interval

    def instance_ids(self) -> list[str]:
        return self._book.ids()

    async def register(self, *instances: Instance) -> None:
        bodies = self._book.add(list(instances))
        self._book.follow(decode((await self._t.send(register_request(bodies))).text))
        self._book.keep(bodies)

    async def deregister(self, instance_id: str) -> None:
        self._book.drop(instance_id)
        await self._t.send(deregister_request(instance_id))

    async def _loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._book.interval)
            bodies = self._book.snapshot()
            if not bodies:
                continue
            try:
                answer = decode((await self._t.send(heartbeat_request(bodies, self._book.interval))).text)
                again = self._book.again(self._book.follow(answer))
                if again:
                    log.info("the cluster forgot %d instance(s); registering them again", len(again))
                    self._book.follow(decode((await self._t.send(register_request(again))).text))
            except PlumError as e:
                log.warning("heartbeat of %d instance(s) not acknowledged: %s", len(bodies), e)

    async def aclose(self) -> None:
        self._closed = True
        await stop_task(self._task)
        first: PlumError | None = None
        for iid in self._book.ids():
            try:
                await self.deregister(iid)
            except PlumError as e:
                first = first or e
        if first is not None:
            raise first
