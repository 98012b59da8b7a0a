from __future__ import annotations

import random

import pytest

from plum_sdk import Balancer, Endpoint, Query, VersionFilter
from plum_sdk.discovery import DiscoveryOptions, Snapshot, confirm, judge, merge
from plum_sdk.errors import Unreachable


def ep(version: str = "1.0.0", protocol: str = "http", zone: str = "a", port: int = 1) -> Endpoint:
    return Endpoint("s", f"i{port}", "n", "127.0.0.1", port, protocol, version, {"zone": zone})


def test_version_filters_are_exact_unless_ranges() -> None:
    assert VersionFilter("1.2").matches("1.2") and not VersionFilter("1.2").matches("1.2.0")
    caret = VersionFilter("^1.2")
    assert caret.matches("1.2.0") and caret.matches("1.9.3") and caret.matches("v1.4.0")
    assert not caret.matches("2.0.0") and not caret.matches("1.1.9") and not caret.matches("latest")
    both = VersionFilter(">=1.0, <2.0")
    assert both.matches("1.5.0") and not both.matches("2.0.0")
    assert VersionFilter("*").matches("0.1.0")
    assert VersionFilter("~1.4.0").matches("1.4.9") and not VersionFilter("~1.4.0").matches("1.5.0")
    assert VersionFilter("^0.2.3").matches("0.2.9") and not VersionFilter("^0.2.3").matches("0.3.0")
    assert not VersionFilter("^1.2").matches("1.3.0-beta.1"), "pre-releases only when named"
    with pytest.raises(ValueError):
        VersionFilter("^one")


def test_queries_filter_by_range_protocol_and_labels() -> None:
    q = Query(version="^1.2", protocol="http", labels={"zone": "a"})
    assert q.matches(ep("1.4.0"))
    assert not q.matches(ep("2.0.0")) and not q.matches(ep("1.4.0", "grpc")) and not q.matches(ep("1.4.0", zone="b"))
    assert Query().matches(ep("x", "y", "z"))


def test_the_cache_never_goes_back_nor_empties_unconfirmed() -> None:
    s = Snapshot((ep(),), 5, 0.0)
    assert merge(s, [], 7, 1.0) == (s, True), "an empty answer needs confirming"
    assert merge(s, [ep(port=2)], 3, 1.0) == (s, False), "older index ignored"
    new, check = merge(s, [ep(port=2)], 6, 1.0)
    assert not check and new.index == 6 and new.endpoints[0].port == 2 and new.confirmed == 1.0
    assert confirm(s, [], 7, 2.0).endpoints == ()
    assert confirm(s, [], 4, 2.0) is s
    assert merge(Snapshot((), 5, 0.0), [], 5, 1.0)[1] is False


def test_staleness_is_reported_and_bounded() -> None:
    o = DiscoveryOptions(watch_wait=1.0, max_staleness=5.0)
    fresh = Snapshot((ep(),), 3, 10.0)
    assert not judge("s", fresh, o, 10.5).stale
    lost = Snapshot((ep(),), 3, 10.0, contact_lost=True)
    assert judge("s", lost, o, 11.0).stale
    with pytest.raises(Unreachable):
        judge("s", lost, o, 16.0)
    assert judge("s", fresh, o, 14.0).stale, "silent for two watch periods"


def test_balancers() -> None:
    eps = [ep(port=p) for p in (1, 2, 3)]
    rr = Balancer("round_robin")
    assert [rr.pick(eps).port for _ in range(4)] == [1, 2, 3, 1]  # type: ignore[union-attr]
    assert Balancer("random").pick([]) is None
    p2c = Balancer("p2c", random.Random(3))
    with p2c.track(eps[0]), p2c.track(eps[0]):
        picks = {p2c.pick(eps[:2]).port for _ in range(20)}  # type: ignore[union-attr]
    assert picks == {2}, "the less busy of the two"
    assert p2c.in_flight(eps[0]) == 0
