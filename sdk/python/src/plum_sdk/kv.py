"""Config KV: get, put, delete, list by prefix, compare-and-set, and watches resumable from an
index. Every write carries a generated ``requestId``, which makes it idempotent on the server (a
retry within 10 minutes is answered as the first time), so the transport may resend it after an
unknown outcome: each write is applied exactly once.

Each operation is described once (a :class:`~plum_sdk._core.Request` and how to read its
answer); :class:`Kv` and :class:`AsyncKv` only send it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._core import Answer, Request
from ._http import AsyncTransport, SyncTransport, decode
from .errors import NotFound
from .models import KvChange, KvItem, KvWritten

WATCH_WAIT = 25.0
"""How long one watch request waits on the server before answering unchanged (seconds)."""
KV_TYPES = ("string", "int", "double", "bool", "bytes")


def request_id() -> str:
    """A fresh id for one logical write (the same for all its retries)."""
    return os.urandom(16).hex()


def _seg(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def key_path(ns: str, key: str) -> str:
    """``/v1/kv/{ns}/key/{key}``, both escaped (keys may hold ``/``, spaces, ``keys``...)."""
    return f"/v1/kv/{_seg(ns)}/key/{_seg(key)}"


def ns_path(ns: str) -> str:
    return f"/v1/kv/{_seg(ns)}"


def _q(pairs: dict[str, str]) -> str:
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


# ---- requests and readers, shared by both clients -------------------------------------------


def get_request(ns: str, key: str, consistent: bool) -> Request:
    path = key_path(ns, key) + ("?consistent=true" if consistent else "")
    return Request("GET", path)


def put_request(ns: str, key: str, value: str, kind: str, expect_version: int | None) -> Request:
    if kind not in KV_TYPES:
        raise ValueError(f"unknown KV type {kind!r} (one of {', '.join(KV_TYPES)})")
    body: dict[str, Any] = {"value": value, "type": kind, "requestId": request_id()}
    if expect_version is not None:
        body["expectVersion"] = expect_version
    return Request("PUT", key_path(ns, key), json.dumps(body).encode(), idempotent=True)


def delete_request(ns: str, key: str, expect_version: int | None) -> Request:
    path = key_path(ns, key)
    if expect_version is not None:
        path += "?" + _q({"expectVersion": str(expect_version)})
    # Deleting is idempotent (done also when absent); with expectVersion a resend after an
    # unknown outcome may answer 409 although the first attempt deleted: read before deciding.
    return Request("DELETE", path, idempotent=expect_version is None)


def list_request(ns: str, prefix: str) -> Request:
    return Request("GET", f"{ns_path(ns)}?{_q({'prefix': prefix})}")


def watch_request(ns: str, prefix: str, index: int, wait: float) -> Request:
    q = _q({"prefix": prefix, "watch": "true", "index": str(index), "timeoutMs": str(int(wait * 1000))})
    return Request("GET", f"{ns_path(ns)}?{q}", attempt_timeout=wait + 5.0, deadline=wait * 3)


def read_written(a: Answer) -> KvWritten:
    return KvWritten.from_json(decode(a.text) or {})


def read_items(a: Answer) -> list[KvItem]:
    return [KvItem.from_json(d) for d in (decode(a.text) or [])]


def read_change(a: Answer, current: int) -> KvChange | None:
    """A watch answer: a change only when its index moved past where the watch stands (an
    answer on timeout, or from a replica that lags, is none)."""
    changed = a.index or 0
    if changed > current:
        return KvChange(changed, read_items(a))
    return None


# ---- the clients ------------------------------------------------------------------------------


class Kv:
    """Blocking KV client."""

    def __init__(self, t: SyncTransport) -> None:
        self._t = t

    def get(self, ns: str, key: str, *, consistent: bool = False) -> KvItem | None:
        """The key, or ``None``. ``consistent``: a linearizable read (needs a leader)."""
        try:
            return KvItem.from_json(decode(self._t.send(get_request(ns, key, consistent)).text))
        except NotFound:
            return None

    def put(self, ns: str, key: str, value: str, *, type: str = "string",
            expect_version: int | None = None) -> KvWritten:
        """Writes ``value``; with ``expect_version`` only if the key is at that version (0:
        absent), else :class:`~plum_sdk.errors.Conflict`."""
        return read_written(self._t.send(put_request(ns, key, value, type, expect_version)))

    def compare_and_set(self, ns: str, key: str, value: str, expect_version: int) -> KvWritten:
        return self.put(ns, key, value, expect_version=expect_version)

    def delete(self, ns: str, key: str, *, expect_version: int | None = None) -> None:
        self._t.send(delete_request(ns, key, expect_version))

    def list(self, ns: str, prefix: str = "") -> list[KvItem]:
        """Keys of ``ns`` starting with ``prefix``, sorted by key."""
        return read_items(self._t.send(list_request(ns, prefix)))

    def watch(self, ns: str, prefix: str = "", from_index: int = 0, *, wait: float = WATCH_WAIT) -> KvWatch:
        return KvWatch(self._t, ns, prefix, from_index, wait)


class KvWatch:
    """Changes under a namespace/prefix after an index; iterate, or call :meth:`next`.
    Resumable: :attr:`index` is where it stands, and a new watch from there misses nothing."""

    def __init__(self, t: SyncTransport, ns: str, prefix: str, index: int, wait: float) -> None:
        self._t, self.ns, self.prefix, self.index, self.wait = t, ns, prefix, index, wait

    def next(self) -> KvChange:
        """Waits for the next change (long polls, renewed until one comes; a failing replica
        passes the poll to another). Raises when no replica answers within a poll's deadline."""
        while True:
            change = read_change(self._t.send(watch_request(self.ns, self.prefix, self.index, self.wait)),
                                 self.index)
            if change is not None:
                self.index = change.index
                return change

    def __iter__(self) -> Iterator[KvChange]:
        while True:
            yield self.next()


class AsyncKv:
    """asyncio KV client: the same operations as :class:`Kv`."""

    def __init__(self, t: AsyncTransport) -> None:
        self._t = t

    async def get(self, ns: str, key: str, *, consistent: bool = False) -> KvItem | None:
        try:
            return KvItem.from_json(decode((await self._t.send(get_request(ns, key, consistent))).text))
        except NotFound:
            return None

    async def put(self, ns: str, key: str, value: str, *, type: str = "string",
                  expect_version: int | None = None) -> KvWritten:
        return read_written(await self._t.send(put_request(ns, key, value, type, expect_version)))

    async def compare_and_set(self, ns: str, key: str, value: str, expect_version: int) -> KvWritten:
        return await self.put(ns, key, value, expect_version=expect_version)

    async def delete(self, ns: str, key: str, *, expect_version: int | None = None) -> None:
        await self._t.send(delete_request(ns, key, expect_version))

    async def list(self, ns: str, prefix: str = "") -> list[KvItem]:
        return read_items(await self._t.send(list_request(ns, prefix)))

    def watch(self, ns: str, prefix: str = "", from_index: int = 0, *, wait: float = WATCH_WAIT) -> AsyncKvWatch:
        return AsyncKvWatch(self._t, ns, prefix, from_index, wait)


class AsyncKvWatch:
    def __init__(self, t: AsyncTransport, ns: str, prefix: str, index: int, wait: float) -> None:
        self._t, self.ns, self.prefix, self.index, self.wait = t, ns, prefix, index, wait

    async def next(self) -> KvChange:
        while True:
            answer = await self._t.send(watch_request(self.ns, self.prefix, self.index, self.wait))
            change = read_change(answer, self.index)
            if change is not None:
                self.index = change.index
                return change

    def __aiter__(self) -> AsyncIterator[KvChange]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[KvChange]:
        while True:
            yield await self.next()
