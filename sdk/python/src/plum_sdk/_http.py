"""The I/O of the transport: the sync and the async driver of :func:`plum_sdk._core.decide`.
Neither decides anything; each performs an attempt or a pause and reports what came of it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Generator
from typing import Any

import httpx2

from ._core import (Action, Answer, Answered, Lost, NotSent, Options, Outcome, Request, Send, Sleep,
                    TransportState, decide)
from .errors import DecodeError, clip

# Redirects to the leader are ours to follow (the hint in the headers matters, and a leader that
# just died must not be knocked on again); no proxies from the environment for a control plane.
_CLIENT_ARGS: dict[str, Any] = {"follow_redirects": False, "trust_env": False}
# Below the controller's 30 s header timeout, after which it closes idle connections.
_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=20.0)


def _not_sent(e: Exception) -> bool:
    """Whether the request certainly never reached the replica."""
    return isinstance(e, (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout,
                          httpx2.UnsupportedProtocol, httpx2.InvalidURL))


def _describe(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".rstrip(": ")
    return clip(text)


def _timeout(a: Send) -> httpx2.Timeout:
    return httpx2.Timeout(a.timeout, connect=a.connect_timeout, pool=a.connect_timeout)


def decode(text: str) -> Any:
    """A JSON answer (an empty body is ``None``)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise DecodeError(f"{e}: {clip(text)}") from None


def _drive_step(gen: Generator[Action, Outcome | None, Answer], outcome: Outcome | None) -> Action | Answer:
    try:
        return gen.send(outcome)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class SyncTransport:
    """Blocking transport over ``httpx2.Client`` (thread-safe; one per process is enough)."""

    def __init__(self, urls: list[str], options: Options | None = None) -> None:
        self.state = TransportState(urls, options or Options())
        self.http = httpx2.Client(limits=_LIMITS, **_CLIENT_ARGS)
        self.closed = False

    def send(self, req: Request) -> Answer:
        gen = decide(self.state, req)
        step = _drive_step(gen, None)
        while not isinstance(step, Answer):
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                step = _drive_step(gen, None)
            else:
                step = _drive_step(gen, self._attempt(step))
        return step

    def send_json(self, req: Request) -> tuple[Any, Answer]:
        answer = self.send(req)
        return decode(answer.text), answer

    def _attempt(self, a: Send) -> Outcome:
        started = time.monotonic()
        try:
            request = self.http.build_request(a.method, a.url, headers=a.headers, content=a.body, timeout=_timeout(a))
            resp = self.http.send(request, stream=True)
        except Exception as e:  # noqa: BLE001 - every transport failure is an outcome
            return NotSent(_describe(e)) if _not_sent(e) else Lost(_describe(e))
        try:
            chunks = []
            for chunk in resp.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() - started > a.timeout:
                    raise httpx2.ReadTimeout("the answer took longer than the attempt timeout")
            text = b"".join(chunks).decode("utf-8", "replace")
        except Exception as e:  # noqa: BLE001
            # The status line arrived: the request was received, the body was cut off.
            if 200 <= resp.status_code < 300:
                return Lost(_describe(e))
            text = _describe(e)
        finally:
            resp.close()
        return Answered(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, text)

    def close(self) -> None:
        self.closed = True
        self.http.close()


class AsyncTransport:
    """asyncio transport over ``httpx2.AsyncClient``; every attempt is bounded as a whole."""

    def __init__(self, urls: list[str], options: Options | None = None) -> None:
        self.state = TransportState(urls, options or Options())
        self.http = httpx2.AsyncClient(limits=_LIMITS, **_CLIENT_ARGS)
        self.closed = False

    async def send(self, req: Request) -> Answer:
        gen = decide(self.state, req)
        step = _drive_step(gen, None)
        while not isinstance(step, Answer):
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                step = _drive_step(gen, None)
            else:
                step = _drive_step(gen, await self._attempt(step))
        return step

    async def send_json(self, req: Request) -> tuple[Any, Answer]:
        answer = await self.send(req)
        return decode(answer.text), answer

    async def _attempt(self, a: Send) -> Outcome:
        status: list[int] = []
        try:
            if sys.version_info >= (3, 11):
                # Unlike wait_for on 3.10/3.11, never swallows a cancellation of the caller.
                async with asyncio.timeout(a.timeout):  # novermin (3.11+ only, checked above)
                    return await self._exchange(a, status)
            return await asyncio.wait_for(self._exchange(a, status), a.timeout)
        except asyncio.TimeoutError:
            if not status:
                return Lost("no answer within the attempt timeout")
            if 200 <= status[0] < 300:
                return Lost("the answer was cut off by the attempt timeout")
            return Answered(status[0], {}, "the answer was cut off by the attempt timeout")

    async def _exchange(self, a: Send, status: list[int]) -> Outcome:
        try:
            request = self.http.build_request(a.method, a.url, headers=a.headers, content=a.body, timeout=_timeout(a))
            resp = await self.http.send(request, stream=True)
        except Exception as e:  # noqa: BLE001
            return NotSent(_describe(e)) if _not_sent(e) else Lost(_describe(e))
        status.append(resp.status_code)
        try:
            text = (await resp.aread()).decode("utf-8", "replace")
        except Exception as e:  # noqa: BLE001
            if 200 <= resp.status_code < 300:
                return Lost(_describe(e))
            text = _describe(e)
        finally:
            await resp.aclose()
        return Answered(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, text)

    async def aclose(self) -> None:
        self.closed = True
        await self.http.aclose()


async def stop_task(task: asyncio.Task[None]) -> None:
    """Cancels ``task`` until it is done: a cancellation can be swallowed by code it runs (a
    timeout racing it, a shielded close in the HTTP library), so one ``cancel()`` is not enough."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
    if not task.cancelled():
        task.exception()  # retrieved: nothing logged as "never retrieved"
