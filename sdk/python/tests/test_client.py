"""Clean shutdown (no thread, task or connection left behind) and the watch path through both
clients, against the fake controller."""

from __future__ import annotations

import asyncio
import threading
import time

from test_conformance import SCENARIOS, Fake

from plum_sdk import AsyncClient, Client, DiscoveryOptions, Instance, Options, Query


def scenario(name: str) -> dict:
    return next(s for s in SCENARIOS["scenarios"] if s["name"] == name)


def test_close_leaves_no_thread_behind() -> None:
    fake = Fake("discovery-empty-answer-keeps-cache")
    try:
        before = set(threading.enumerate())
        c = Client(fake.replicas, Options(token=fake.token), DiscoveryOptions(watch_wait=5.0))
        assert len(c.discover("web").endpoints) == 2
        assert len(c.discover("web", Query(version="^1")).endpoints) == 2
        assert c.discover("web", Query(version="^2")).endpoints == []
        r = c.registrar(ttl=1.0)
        r.register(Instance("i-9", "api", 9000))
        assert r.instance_ids() == ["i-9"]
        started = time.monotonic()
        c.close()
        assert time.monotonic() - started < 2.0, "close does not wait out a long poll"
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        assert left == [], left
        applied = fake.get("/report")["applied"]
        assert {"what": "deregister", "ids": ["i-9"]} in applied
    finally:
        fake.stop()


def test_async_close_leaves_no_task_behind() -> None:
    fake = Fake("discovery-empty-answer-keeps-cache")

    async def main() -> None:
        async with AsyncClient(fake.replicas, Options(token=fake.token), DiscoveryOptions(watch_wait=5.0)) as c:
            assert len((await c.discover("web")).endpoints) == 2
            r = c.registrar(ttl=1.0)
            await r.register(Instance("i-9", "api", 9000))
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == [], others

    try:
        asyncio.run(main())
        assert {"what": "deregister", "ids": ["i-9"]} in fake.get("/report")["applied"]
    finally:
        fake.stop()


def test_kv_round_trip_and_watch_through_both_clients() -> None:
    fake = Fake("kv-cas-conflict")
    try:
        with Client(fake.replicas, Options(token=fake.token)) as c:
            w = c.kv.put("app", "db/url", "x")
            assert (w.key, w.version) == ("db/url", 1)
            assert c.kv.get("app", "db/url").value == "x"  # type: ignore[union-attr]
            assert [i.key for i in c.kv.list("app")] == ["color", "db/url"]
            watch = c.kv.watch("app", "db/", from_index=0, wait=1.0)
            change = watch.next()
            assert change.index > 0 and [i.value for i in change.items] == ["x"]
            t = threading.Timer(0.2, lambda: c.kv.put("app", "db/url", "y"))
            t.start()
            change = watch.next()
            t.join()
            assert [i.value for i in change.items] == ["y"] and watch.index == change.index

        async def main() -> None:
            async with AsyncClient(fake.replicas, Options(token=fake.token)) as c:
                assert (await c.kv.put("app", "n", "1", type="int")).type == "int"
                assert (await c.kv.get("app", "missing")) is None
                watch = c.kv.watch("app", "n", from_index=0, wait=1.0)
                assert (await watch.next()).items[0].value == "1"

        asyncio.run(main())
    finally:
        fake.stop()
