"""The SDK's entry points: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio). Each
shares one transport (connection pool, leader knowledge, breakers, token) between KV, discovery
and registration. Close them (or use them as context managers): that stops every background
thread or task, deregisters what a registrar holds and closes the connections."""

from __future__ import annotations

import json
import os
from typing import Any

from ._core import Answer, Options, Request
from ._http import AsyncTransport, SyncTransport
from .discovery import AsyncDiscovery, Discovered, Discovery, DiscoveryOptions
from .errors import ConfigError
from .kv import AsyncKv, Kv
from .models import Query
from .registration import DEFAULT_TTL, AsyncRegistrar, Registrar


def parse_controllers(text: str) -> list[str]:
    """``host:port,http://host:port,...`` → URLs (``http://`` when no scheme is given)."""
    urls = []
    for part in text.replace(" ", ",").split(","):
        part = part.strip().rstrip("/")
        if part:
            urls.append(part if "://" in part else f"http://{part}")
    if not urls:
        raise ConfigError("no controller addresses")
    return urls


def from_env(options: Options | None = None) -> tuple[list[str], Options]:
    """Controllers from ``PLUM_CONTROLLERS``, the token from ``PLUM_TOKEN`` or the file
    ``PLUM_TOKEN_FILE`` names (unless ``options`` has one)."""
    text = os.environ.get("PLUM_CONTROLLERS", "")
    if not text:
        raise ConfigError("PLUM_CONTROLLERS is not set")
    options = options or Options()
    if options.token is None:
        token = os.environ.get("PLUM_TOKEN")
        path = os.environ.get("PLUM_TOKEN_FILE")
        if not token and path:
            try:
                with open(path) as f:
                    token = f.read().strip()
            except OSError as e:
                raise ConfigError(f"PLUM_TOKEN_FILE: {e}") from None
        if token:
            options = Options(**{**options.__dict__, "token": token})
    return parse_controllers(text), options


def _write(method: str, path: str, body: Any, idempotent: bool) -> Request:
    data = None if body is None else json.dumps(body).encode()
    return Request(method.upper(), path, data, idempotent=idempotent)


class Client:
    """Blocking client. ``urls``: every replica (``http://host:port``)."""

    def __init__(self, urls: list[str], options: Options | None = None,
                 discovery: DiscoveryOptions | None = None) -> None:
        self.transport = SyncTransport(urls, options)
        self.kv = Kv(self.transport)
        self.discovery = Discovery(self.transport, discovery or DiscoveryOptions())
        self._registrars: list[Registrar] = []

    @classmethod
    def from_env(cls, options: Options | None = None, discovery: DiscoveryOptions | None = None) -> Client:
        urls, options = from_env(options)
        return cls(urls, options, discovery)

    def discover(self, service: str, query: Query | None = None) -> Discovered:
        """Endpoints of ``service`` passing ``query``, from the watched cache."""
        return self.discovery.find(service, query)

    def registrar(self, ttl: float = DEFAULT_TTL) -> Registrar:
        r = Registrar(self.transport, ttl)
        self._registrars.append(r)
        return r

    def request(self, method: str, path: str, body: Any = None, *, idempotent: bool = False) -> Answer:
        """Any API call through the transport. A write that is not ``idempotent`` is never resent
        after an unknown outcome (:class:`~plum_sdk.errors.OutcomeUnknown`)."""
        return self.transport.send(_write(method, path, body, idempotent or method.upper() in ("GET", "HEAD")))

    @property
    def leader(self) -> str | None:
        return self.transport.state.leader_url()

    def close(self) -> None:
        """Deregisters every registrar's instances, stops the watches, closes the connections.
        Closing twice does nothing."""
        if self.transport.closed:
            return
        try:
            for r in self._registrars:
                r.close()
        finally:
            self.discovery.close()
            self.transport.close()
            self.discovery.join()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """asyncio client; create it inside a running event loop."""

    def __init__(self, urls: list[str], options: Options | None = None,
                 discovery: DiscoveryOptions | None = None) -> None:
        self.transport = AsyncTransport(urls, options)
        self.kv = AsyncKv(self.transport)
        self.discovery = AsyncDiscovery(self.transport, discovery or DiscoveryOptions())
        self._registrars: list[AsyncRegistrar] = []

    @classmethod
    def from_env(cls, options: Options | None = None, discovery: DiscoveryOptions | None = None) -> AsyncClient:
        urls, options = from_env(options)
        return cls(urls, options, discovery)

    async def discover(self, service: str, query: Query | None = None) -> Discovered:
        return await self.discovery.find(service, query)

    def registrar(self, ttl: float = DEFAULT_TTL) -> AsyncRegistrar:
        r = AsyncRegistrar(self.transport, ttl)
        self._registrars.append(r)
        return r

    async def request(self, method: str, path: str, body: Any = None, *, idempotent: bool = False) -> Answer:
        return await self.transport.send(_write(method, path, body, idempotent or method.upper() in ("GET", "HEAD")))

    @property
    def leader(self) -> str | None:
        return self.transport.state.leader_url()

    async def aclose(self) -> None:
        if self.transport.closed:
            return
        try:
            for r in self._registrars:
                await r.aclose()
        finally:
            await self.discovery.aclose()
            await self.transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
