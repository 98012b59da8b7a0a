"""The transport's decisions, free of I/O, shared by the sync and the async client.

Which replica next, redirects, failover, backoff with full jitter, the per-replica circuit
breaker, the deadline and what a lost write means are all decided here, in :func:`decide`: a
generator that yields an action (:class:`Send` one attempt, :class:`Sleep`) and is sent back
what came of it (:class:`Answered`, :class:`NotSent`, :class:`Lost`). The sync and async
drivers (``_http.py``) only perform those actions. It follows the Rust SDK's
``controllers.rs`` step by step.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Union

from .errors import ConfigError, OutcomeUnknown, PlumError, Unreachable, clip, status_error

LEADER_ID = "x-plum-leader"
LEADER_ADDR = "x-plum-leader-addr"
REDIRECT = "x-plum-redirect"
INDEX = "x-plum-index"
TRACEPARENT = "traceparent"
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: a wait drawn uniformly from zero to
    ``base * 2**attempt`` (capped at ``max``), so clients that failed together do not come back
    together."""

    base: float = 0.020
    max: float = 1.0

    def bound(self, attempt: int) -> float:
        return min(self.base * (2 ** min(attempt, 20)), self.max)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0.0, self.bound(attempt))


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 3
    """Consecutive failures that open the breaker."""
    cool_down: float = 0.5
    max_cool_down: float = 10.0


class Breaker:
    """A circuit breaker per replica: after a run of failures the replica is skipped for a
    cool-down (doubling while it keeps failing), then one request probes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.consecutive = 0
        self.open_until: float | None = None
        self.trips = 0

    def allows(self, policy: BreakerPolicy, now: float) -> bool:
        with self._lock:
            if self.open_until is None:
                return True
            if now >= self.open_until:
                # Half-open: this caller probes; the others wait another cool-down.
                self.open_until = now + policy.cool_down
                return True
            return False

    def is_open(self, now: float) -> bool:
        with self._lock:
            return self.open_until is not None and now < self.open_until

    def success(self) -> None:
        with self._lock:
            self.consecutive, self.open_until, self.trips = 0, None, 0

    def failure(self, policy: BreakerPolicy, now: float) -> None:
        with self._lock:
            self.consecutive += 1
            if self.consecutive >= policy.failures:
                cool = policy.cool_down * (2 ** min(self.trips, 16))
                self.open_until = now + min(cool, policy.max_cool_down)
                self.trips += 1
                self.consecutive = 0


@dataclass(frozen=True)
class Options:
    """Transport settings (seconds)."""

    attempt_timeout: float = 2.0
    """How long one attempt at one replica may take."""
    deadline: float = 5.0
    """How long a request may take in all, retries included."""
    connect_timeout: float = 0.5
    backoff: Backoff = field(default_factory=Backoff)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    token: str | None = None
    """Sent as ``Authorization: Bearer <token>``; ``None`` or blank: none."""

    def __repr__(self) -> str:  # never show the token
        token = "<redacted>" if self.token else None
        return (f"Options(attempt_timeout={self.attempt_timeout}, deadline={self.deadline}, "
                f"connect_timeout={self.connect_timeout}, backoff={self.backoff}, breaker={self.breaker}, "
                f"token={token})")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Path and query, starting with ``/``."""
    body: bytes | None = None
    """JSON, encoded once so that every attempt sends the same bytes."""
    idempotent: bool = True
    """May it be sent again after an unknown outcome (a timeout after sending, outcomeUnknown)?"""
    attempt_timeout: float | None = None
    deadline: float | None = None
    max_rounds: int | None = None
    """Give up after this many rounds over the replicas (``None``: only the deadline bounds it).
    Watches use 1: their own loop backs off, and marks the cache out of contact at once."""

    @property
    def is_read(self) -> bool:
        return self.method in ("GET", "HEAD")


@dataclass(frozen=True)
class Answer:
    status: int
    index: int | None
    """``x-plum-index`` when present."""
    text: str


# ---- actions (core → driver) and outcomes (driver → core) ---------------------------------


@dataclass(frozen=True)
class Send:
    replica: int
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float
    connect_timeout: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


Action = Union[Send, Sleep]


@dataclass(frozen=True)
class Answered:
    status: int
    headers: dict[str, str]
    """Lower-case names."""
    text: str


@dataclass(frozen=True)
class NotSent:
    """Nothing reached the replica (connect refused or timed out): safe to send elsewhere."""

    error: str


@dataclass(frozen=True)
class Lost:
    """Sent, but no (whole) answer: the outcome is unknown."""

    error: str


Outcome = Union[Answered, NotSent, Lost]


def random_hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


class TransportState:
    """What the transport knows across calls: replicas, leader, last replica that answered,
    breakers. Thread-safe; shared by every call of one client."""

    def __init__(self, urls: list[str], options: Options, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        for u in self.urls:
            if not (u.startswith("http://") or u.startswith("https://")):
                raise ConfigError(f"controller address `{u}` needs http:// or https://")
        self.options = options
        self.clock = clock
        self.rng = rng or random.Random()
        self.breakers = [Breaker() for _ in self.urls]
        self.leader: int | None = None
        self.last = 0
        token = (options.token or "").strip()
        if any(c.isspace() for c in token):
            raise ConfigError("the token is not valid (it holds white space)")
        self.auth = f"Bearer {token}" if token else None

    def plan(self, to_leader: bool) -> list[int]:
        """Replicas to try, as a stack (last = first to try): for writes the leader first, then
        the one that answered last, then the rest; open breakers at the bottom."""
        n = len(self.urls)
        last = self.last % n
        order = [(last + i) % n for i in range(n)]
        leader = self.leader
        if to_leader and leader is not None and leader < n:
            order.remove(leader)
            order.insert(0, leader)
        now = self.clock()
        policy = self.options.breaker
        closed = [i for i in order if self.breakers[i].allows(policy, now)]
        opened = [i for i in order if i not in closed]
        return list(reversed(closed + opened))

    def learn(self, headers: dict[str, str]) -> int | None:
        """Learns the leader from an answer; returns it when it is one of ours."""
        addr = headers.get(LEADER_ADDR)
        if not addr:
            return None
        addr = addr.strip().rstrip("/")
        if addr in self.urls:
            i = self.urls.index(addr)
            self.leader = i
            return i
        return None

    def leader_url(self) -> str | None:
        return self.urls[self.leader] if self.leader is not None else None


def _index(headers: dict[str, str]) -> int | None:
    try:
        return int(headers[INDEX])
    except (KeyError, ValueError):
        return None


def _json_flag(text: str, name: str) -> bool:
    import json

    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get(name) is True


def decide(t: TransportState, req: Request) -> Generator[Action, Outcome | None, Answer]:
    """One call: yields attempts and pauses, returns the answer or raises a :class:`PlumError`.
    Every attempt carries the call's W3C trace id with a span id of its own."""
    if not t.urls:
        raise ConfigError("no controller addresses")
    opts = t.options
    clock = t.clock
    trace_id = random_hex(16)
    deadline = clock() + (req.deadline if req.deadline is not None else opts.deadline)
    attempt_timeout = req.attempt_timeout if req.attempt_timeout is not None else opts.attempt_timeout
    last_error = "no attempt made"
    redirects = 0
    round_ = 0
    failed = [False] * len(t.urls)
    hold = False
    maybe_applied = False

    def give_up(message: str) -> PlumError:
        if maybe_applied:
            return OutcomeUnknown(f"{message} (an earlier attempt's outcome is unknown)")
        return Unreachable(message)

    while True:
        plan = t.plan(not req.is_read)
        while plan:
            at = plan.pop()
            now = clock()
            if now >= deadline:
                raise give_up(f"deadline passed; last: {last_error}")
            timeout = min(attempt_timeout, deadline - now)
            headers = {TRACEPARENT: f"00-{trace_id}-{random_hex(8)}-01"}
            if t.auth:
                headers["authorization"] = t.auth
            if not hold:
                headers[REDIRECT] = "1"
            if req.body is not None:
                headers["content-type"] = "application/json"
            url = t.urls[at]
            outcome = yield Send(at, req.method, url + req.path, headers, req.body, timeout,
                                 min(opts.connect_timeout, timeout))
            policy = opts.breaker
            if isinstance(outcome, NotSent):
                t.breakers[at].failure(policy, clock())
                failed[at] = True
                last_error = f"{url}: {outcome.error}"
                continue
            if isinstance(outcome, Lost):
                t.breakers[at].failure(policy, clock())
                failed[at] = True
                last_error = f"{url}: {outcome.error}"
                if not req.is_read:
                    if not req.idempotent:
                        raise OutcomeUnknown(last_error)
                    maybe_applied = True
                continue
            assert isinstance(outcome, Answered)
            t.breakers[at].success()
            named = t.learn(outcome.headers)
            status, text = outcome.status, outcome.text
            if status == 307:
                if redirects >= MAX_REDIRECTS:
                    # Redirected in circles: leadership is moving. Not applied; the next round
                    # (after its pause) starts over.
                    last_error = f"{url}: redirected in circles while leadership moved"
                    continue
                redirects += 1
                last_error = f"{url}: redirected to the leader"
                # A leader that just failed us, whose breaker is open, or that we have no
                # address for: let this replica hold the write and pass it on instead.
                usable = named is not None and not failed[named] and not t.breakers[named].is_open(clock())
                if usable:
                    plan = t.plan(True)
                else:
                    hold = True
                    plan.append(at)
                continue
            if status in (503, 429):
                # 429: at its limit, did nothing. 503 retryable: certainly not applied.
                if _json_flag(text, "outcomeUnknown"):
                    if not req.idempotent:
                        raise OutcomeUnknown(f"{url}: {clip(text)}")
                    maybe_applied = True
                last_error = f"{url}: {clip(text)}"
                continue
            t.last = at
            if not 200 <= status < 300:
                raise status_error(status, text)
            return Answer(status, _index(outcome.headers), text)
        # Every replica failed this round: wait (jittered) before the next.
        pause = opts.backoff.delay(round_, t.rng)
        round_ += 1
        redirects = 0
        if (req.max_rounds is not None and round_ >= req.max_rounds) or clock() + pause >= deadline:
            raise give_up(last_error)
        yield Sleep(pause)
