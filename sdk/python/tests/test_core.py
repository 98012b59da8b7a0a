"""The shared decisions, driven without any I/O: the generator is fed scripted outcomes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from plum_sdk._core import (Answer, Answered, Backoff, Breaker, BreakerPolicy, Lost, NotSent, Options, Request, Send,
                            Sleep, TransportState, decide)
from plum_sdk.errors import ConfigError, Conflict, OutcomeUnknown, Unauthorized, Unreachable

URLS = ["http://a:1", "http://b:2", "http://c:3"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def state(**kw: Any) -> tuple[TransportState, Clock]:
    clock = Clock()
    opts = Options(**{"deadline": 5.0, "attempt_timeout": 1.0, **kw})
    return TransportState(URLS, opts, clock=clock, rng=random.Random(1)), clock


def run(t: TransportState, clock: Clock, req: Request, script: Any) -> tuple[Answer | BaseException, list[Any]]:
    """Drives one call; ``script(send) -> outcome``. Returns the result and the actions."""
    gen = decide(t, req)
    actions: list[Any] = []
    feed: Any = None
    try:
        while True:
            action = gen.send(feed)
            actions.append(action)
            if isinstance(action, Sleep):
                clock.now += action.seconds
                feed = None
            else:
                clock.now += 0.001
                feed = script(action)
    except StopIteration as stop:
        return stop.value, actions
    except Exception as e:  # noqa: BLE001
        return e, actions


def ok(body: str = "{}", leader: str | None = None, status: int = 200) -> Answered:
    h = {"x-plum-leader-addr": leader} if leader else {}
    return Answered(status, h, body)


PUT = Request("PUT", "/v1/kv/a/key/b", b"{}", idempotent=True)
DEPLOY = Request("POST", "/v1/deployments", b"{}", idempotent=False)


def test_backoff_bounds_double_to_the_cap_and_delays_use_full_jitter() -> None:
    b = Backoff(0.010, 0.100)
    assert [b.bound(i) for i in (0, 3, 4, 60)] == [0.010, 0.080, 0.100, 0.100]
    delays = [b.delay(2) for _ in range(300)]
    assert all(0 <= d <= 0.040 for d in delays) and min(delays) < 0.010


def test_breaker_opens_probes_once_doubles_and_closes() -> None:
    p = BreakerPolicy(2, 0.1, 1.0)
    b = Breaker()
    b.failure(p, 0)
    assert b.allows(p, 0)
    b.failure(p, 0)
    assert not b.allows(p, 0.05)
    assert b.allows(p, 0.1) and not b.allows(p, 0.101), "one probe"
    b.failure(p, 0.11)
    b.failure(p, 0.11)
    assert not b.allows(p, 0.30) and b.allows(p, 0.31), "cool-down doubled"
    b.success()
    assert not b.is_open(0.32)


def test_a_redirect_is_followed_and_the_leader_remembered() -> None:
    t, clock = state()
    seen: list[int] = []

    def script(s: Send) -> Any:
        seen.append(s.replica)
        assert s.headers["x-plum-redirect"] == "1"
        return ok(leader="http://c:3", status=307) if s.replica != 2 else ok(leader="http://c:3")

    result, _ = run(t, clock, PUT, script)
    assert isinstance(result, Answer) and seen == [0, 2]
    seen.clear()
    run(t, clock, PUT, script)
    assert seen == [2], "straight to the leader"


def test_connect_errors_move_on_and_every_attempt_shares_one_trace() -> None:
    t, clock = state()
    sends: list[Send] = []

    def script(s: Send) -> Any:
        sends.append(s)
        return NotSent("refused") if s.replica == 0 else ok()

    result, _ = run(t, clock, PUT, script)
    assert isinstance(result, Answer)
    traces = {s.headers["traceparent"].split("-")[1] for s in sends}
    spans = {s.headers["traceparent"].split("-")[2] for s in sends}
    assert len(traces) == 1 and len(spans) == len(sends) == 2


def test_no_leader_backs_off_within_the_deadline_then_gives_up_as_unreachable() -> None:
    t, clock = state(deadline=1.0, backoff=Backoff(0.05, 0.2))
    result, actions = run(t, clock, PUT, lambda s: ok('{"error":"no leader","retryable":true}', status=503))
    assert isinstance(result, Unreachable)
    assert any(isinstance(a, Sleep) for a in actions)
    assert clock.now <= 1.0


def test_a_lost_write_is_never_resent_unless_idempotent() -> None:
    t, clock = state()
    result, actions = run(t, clock, DEPLOY, lambda s: Lost("read timeout"))
    assert isinstance(result, OutcomeUnknown) and len(actions) == 1
    t, clock = state()
    result, actions = run(t, clock, DEPLOY, lambda s: ok('{"error":"x","outcomeUnknown":true}', status=503))
    assert isinstance(result, OutcomeUnknown) and len(actions) == 1
    # Idempotent: resent; ending without an answer it is "unknown", never "unreachable".
    t, clock = state(deadline=0.5)
    result, actions = run(t, clock, PUT, lambda s: Lost("read timeout") if len(actions) < 2 else NotSent("refused"))
    assert isinstance(result, OutcomeUnknown) and "earlier attempt" in str(result)


def test_a_follower_naming_a_leader_that_failed_us_is_asked_to_hold_the_write() -> None:
    t, clock = state()
    t.leader = 0
    sends: list[Send] = []

    def script(s: Send) -> Any:
        sends.append(s)
        if s.replica == 0:
            return Lost("timeout")
        if "x-plum-redirect" in s.headers:
            return ok(leader="http://a:1", status=307)
        return ok()

    result, _ = run(t, clock, PUT, script)
    assert isinstance(result, Answer)
    assert [s.replica for s in sends] == [0, 1, 1]
    assert "x-plum-redirect" not in sends[-1].headers


def test_auth_and_client_errors_end_the_call_at_once() -> None:
    t, clock = state()
    result, actions = run(t, clock, PUT, lambda s: ok('{"error":"token revoked"}', status=401))
    assert isinstance(result, Unauthorized) and len(actions) == 1 and "token revoked" in str(result)
    assert not t.breakers[0].is_open(clock.now)
    result, _ = run(t, clock, PUT, lambda s: ok('{"error":"version mismatch"}', status=409))
    assert isinstance(result, Conflict)


def test_open_breakers_go_to_the_bottom_of_the_plan() -> None:
    t, clock = state()
    for _ in range(3):
        t.breakers[0].failure(t.options.breaker, clock.now)
    assert t.plan(False)[::-1] == [1, 2, 0]


def test_the_token_is_sent_and_never_shown() -> None:
    t, clock = state(token="plum_x_secret")
    sends: list[Send] = []
    run(t, clock, PUT, lambda s: sends.append(s) or ok())
    assert sends[0].headers["authorization"] == "Bearer plum_x_secret"
    assert "secret" not in repr(t.options)
    with pytest.raises(ConfigError):
        TransportState(URLS, Options(token="bad token"))
    with pytest.raises(ConfigError):
        TransportState(["a:1"], Options())


def test_discovery_names_the_service_the_client_serves_and_registration_its_upstreams() -> None:
    from plum_sdk.discovery import fetch_request
    from plum_sdk.registration import Instance

    assert "clientService=web" in fetch_request("db", None, 0, client_service="web").path
    assert "clientService=web" in fetch_request("db", 3, 1.0, client_service="web").path
    assert "clientService" not in fetch_request("db", None, 0).path
    body = Instance("i-1", "web", 80, upstreams=("db", "cache")).body(10.0)
    assert body["upstreams"] == ["db", "cache"]
    assert "upstreams" not in Instance("i-2", "web", 80).body(10.0)
