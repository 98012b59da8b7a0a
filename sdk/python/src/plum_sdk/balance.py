"""Choosing one endpoint among several: random, round robin, power of two choices on requests in
flight. Pure and thread-safe; the same strategies as the Rust SDK's ``balance.rs``."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .models import Endpoint


class Balancer:
    """``strategy``: ``"random"``, ``"round_robin"`` or ``"p2c"`` (the less busy of two drawn at
    random; wrap each request in :meth:`track` so the balancer counts it)."""

    def __init__(self, strategy: str = "p2c", rng: random.Random | None = None) -> None:
        if strategy not in ("random", "round_robin", "p2c"):
            raise ValueError(f"unknown strategy {strategy!r}")
        self.strategy = strategy
        self._rng = rng or random.Random()
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    def pick(self, endpoints: Sequence[Endpoint]) -> Endpoint | None:
        if not endpoints:
            return None
        if self.strategy == "random":
            return self._rng.choice(endpoints)
        if self.strategy == "round_robin":
            return endpoints[next(self._next) % len(endpoints)]
        if len(endpoints) == 1:
            return endpoints[0]
        a, b = self._rng.sample(range(len(endpoints)), 2)
        with self._lock:
            load_a = self._in_flight.get(endpoints[a].address, 0)
            load_b = self._in_flight.get(endpoints[b].address, 0)
        return endpoints[a] if load_a <= load_b else endpoints[b]

    def in_flight(self, e: Endpoint) -> int:
        with self._lock:
            return self._in_flight.get(e.address, 0)

    @contextmanager
    def track(self, e: Endpoint) -> Iterator[None]:
        with self._lock:
            self._in_flight[e.address] = self._in_flight.get(e.address, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                n = self._in_flight[e.address] - 1
                if n:
                    self._in_flight[e.address] = n
                else:
                    del self._in_flight[e.address]
