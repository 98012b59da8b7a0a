"""The Python runner of the shared conformance suite (``sdk/conformance/``): every scenario,
through the blocking client and through the asyncio client, against the scripted fake
controller started as a subprocess. The runner contract is ``sdk/conformance/README.md``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from plum_sdk import (AsyncClient, Backoff, BreakerPolicy, Client, Conflict, DiscoveryOptions, Forbidden, Instance,
                      NotFound, Options, OutcomeUnknown, StatusError, Unauthorized, Unreachable)

SUITE = Path(os.environ.get("PLUM_CONFORMANCE_DIR", Path(__file__).resolve().parents[2] / "conformance"))
SCENARIOS = json.loads((SUITE / "scenarios.json").read_text())
SUPPORTED = {"kv.put", "kv.get", "kv.cas", "kv.delete", "kv.list", "kv.watch", "kv.putMany", "write", "read",
             "discovery.lookup", "register", "close", "sleep", "control"}
# Cluster scenarios start real replicas (sdk/conformance/real_cluster.py finds plum-controller);
# PLUM_CONFORMANCE_CLUSTER=0 skips them, reported as skipped.
CLUSTER_OFF = os.environ.get("PLUM_CONFORMANCE_CLUSTER") == "0"


def outcome_of(e: BaseException | None) -> str:
    if e is None:
        return "ok"
    for cls, name in ((OutcomeUnknown, "outcome_unknown"), (Unreachable, "unreachable"),
                      (Unauthorized, "unauthorized"), (Forbidden, "forbidden"), (NotFound, "not_found"),
                      (Conflict, "conflict"), (StatusError, "status")):
        if isinstance(e, cls):
            return name
    return f"error ({type(e).__name__}: {e})"


class Fake:
    """The scenario's controllers: the fake, or a real cluster for a ``cluster`` scenario (a
    subprocess started and stopped by its PID only)."""

    def __init__(self, name: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="plum-conf-")
        ports = os.path.join(self.dir, "ports.json")
        real = any("cluster" in s for s in SCENARIOS["scenarios"] if s["name"] == name)
        launcher = "real_cluster.py" if real else "fake_controller.py"
        self.proc = subprocess.Popen([sys.executable, str(SUITE / launcher), "--scenario", name,
                                      "--ports-file", ports, "--scenarios", str(SUITE / "scenarios.json")])
        deadline = time.monotonic() + (90 if real else 10)
        while not os.path.exists(ports):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{launcher} did not start (exit {self.proc.returncode})")
            time.sleep(0.02)
        info = json.loads(Path(ports).read_text())
        self.replicas: list[str] = info["replicas"]
        self.control: str = info["control"]
        self.token: str | None = info.get("token")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.control + path, timeout=60) as r:
            return json.loads(r.read())

    def control_step(self, step: dict[str, Any]) -> dict[str, Any]:
        """The ``control`` op: the step goes to the launcher's control port as it is."""
        body = {k: v for k, v in step.items() if k not in ("op", "expect")}
        req = urllib.request.Request(self.control + "/action", data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=90) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise StatusError(e.code, e.read().decode(errors="replace")) from None
        return {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                urllib.request.urlopen(urllib.request.Request(self.control + "/shutdown", method="POST"), timeout=5)
            except Exception:  # noqa: BLE001
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def settings(scenario: dict[str, Any], token: str | None) -> tuple[Options, DiscoveryOptions]:
    c = {**SCENARIOS["defaults"]["client"], **scenario.get("client", {})}
    options = Options(attempt_timeout=c["attemptTimeoutMs"] / 1000, deadline=c["deadlineMs"] / 1000,
                      connect_timeout=c["connectTimeoutMs"] / 1000,
                      backoff=Backoff(c["backoffBaseMs"] / 1000, c["backoffMaxMs"] / 1000),
                      breaker=BreakerPolicy(c["breakerFailures"], c["breakerCoolDownMs"] / 1000, 30.0),
                      token=token)
    discovery = DiscoveryOptions(watch_wait=c["watchWaitMs"] / 1000, max_staleness=c["maxStalenessMs"] / 1000)
    return options, discovery


def check(step: dict[str, Any], outcome: str, result: dict[str, Any], elapsed_ms: float,
          error: BaseException | None = None) -> list[str]:
    expect = step.get("expect", {})
    where = f"step {step['op']} {step.get('key', step.get('service', ''))}"
    bad = []
    if "outcome" in expect and outcome != expect["outcome"]:
        bad.append(f"{where}: outcome {outcome}, expected {expect['outcome']}" + (f" ({error})" if error else ""))
    for field in ("value", "version", "count", "stale", "indices", "values"):
        if field in expect and outcome == "ok" and result.get(field, "<missing>") != expect[field]:
            bad.append(f"{where}: {field} {result.get(field, '<missing>')!r}, expected {expect[field]!r}")
    if "maxCallMs" in expect and result.get("maxCallMs", 0) > expect["maxCallMs"]:
        bad.append(f"{where}: longest call {result['maxCallMs']:.0f} ms, at most {expect['maxCallMs']} expected")
    if "maxElapsedMs" in expect and elapsed_ms > expect["maxElapsedMs"]:
        bad.append(f"{where}: took {elapsed_ms:.0f} ms, at most {expect['maxElapsedMs']} expected")
    if "minElapsedMs" in expect and elapsed_ms < expect["minElapsedMs"]:
        bad.append(f"{where}: took {elapsed_ms:.0f} ms, at least {expect['minElapsedMs']} expected")
    return bad


def run_sync(client: Client, step: dict[str, Any]) -> dict[str, Any]:
    op = step["op"]
    if op == "kv.put":
        return {"version": client.kv.put(step["ns"], step["key"], step["value"]).version}
    if op == "kv.cas":
        return {"version": client.kv.compare_and_set(step["ns"], step["key"], step["value"],
                                                     step["expectVersion"]).version}
    if op == "kv.get":
        item = client.kv.get(step["ns"], step["key"])
        return {"value": item.value if item else None}
    if op == "kv.delete":
        client.kv.delete(step["ns"], step["key"])
        return {}
    if op == "kv.list":
        return {"count": len(client.kv.list(step["ns"], step.get("prefix", "")))}
    if op == "kv.putMany":
        return put_many(step, lambda key, value: client.kv.put(step["ns"], key, value).version)
    if op == "kv.watch":
        w = client.kv.watch(step["ns"], step.get("prefix", ""), step["fromIndex"], wait=1.0)
        return watched(step, [w.next() for _ in range(step["changes"])])
    if op in ("write", "read"):
        method = step.get("method", "GET" if op == "read" else "POST")
        client.request(method, step["path"], step.get("body"), idempotent=step.get("idempotent", op == "read"))
        return {}
    if op == "discovery.lookup":
        d = client.discover(step["service"])
        return {"count": len(d.endpoints), "stale": d.stale}
    if op == "register":
        r = client.registrar(ttl=step.get("ttlMs", 10000) / 1000)
        r.register(Instance(step["instanceId"], step["service"], step["port"]))
        return {}
    if op == "close":
        client.close()
        return {}
    raise AssertionError(f"unsupported op {op}")


async def run_async(client: AsyncClient, step: dict[str, Any]) -> dict[str, Any]:
    op = step["op"]
    if op == "kv.put":
        return {"version": (await client.kv.put(step["ns"], step["key"], step["value"])).version}
    if op == "kv.cas":
        w = await client.kv.compare_and_set(step["ns"], step["key"], step["value"], step["expectVersion"])
        return {"version": w.version}
    if op == "kv.get":
        item = await client.kv.get(step["ns"], step["key"])
        return {"value": item.value if item else None}
    if op == "kv.delete":
        await client.kv.delete(step["ns"], step["key"])
        return {}
    if op == "kv.list":
        return {"count": len(await client.kv.list(step["ns"], step.get("prefix", "")))}
    if op == "kv.putMany":
        out: dict[str, Any] = {"count": 0, "version": 0, "maxCallMs": 0.0}
        for n in range(step["count"]):
            started = time.monotonic()
            version = (await client.kv.put(step["ns"], f"{step['prefix']}{n}", f"v{n}")).version
            tally(out, version, started)
            await asyncio.sleep(step.get("intervalMs", 0) / 1000)
        return out
    if op == "kv.watch":
        watch = client.kv.watch(step["ns"], step.get("prefix", ""), step["fromIndex"], wait=1.0)
        return watched(step, [await watch.next() for _ in range(step["changes"])])
    if op in ("write", "read"):
        method = step.get("method", "GET" if op == "read" else "POST")
        await client.request(method, step["path"], step.get("body"), idempotent=step.get("idempotent", op == "read"))
        return {}
    if op == "discovery.lookup":
        d = await client.discover(step["service"])
        return {"count": len(d.endpoints), "stale": d.stale}
    if op == "register":
        r = client.registrar(ttl=step.get("ttlMs", 10000) / 1000)
        await r.register(Instance(step["instanceId"], step["service"], step["port"]))
        return {}
    if op == "close":
        await client.aclose()
        return {}
    raise AssertionError(f"unsupported op {op}")


def put_many(step: dict[str, Any], put: Any) -> dict[str, Any]:
    """``kv.putMany``: keys ``prefix0..`` one after another; the first error ends it (raised)."""
    out: dict[str, Any] = {"count": 0, "version": 0, "maxCallMs": 0.0}
    for n in range(step["count"]):
        started = time.monotonic()
        tally(out, put(f"{step['prefix']}{n}", f"v{n}"), started)
        time.sleep(step.get("intervalMs", 0) / 1000)
    return out


def tally(out: dict[str, Any], version: int, started: float) -> None:
    """One acknowledged put of ``kv.putMany``: counted, its version (the highest seen is
    reported: above 1 means a write was applied twice) and its wall time."""
    out["count"] += 1
    out["version"] = max(out["version"], version)
    out["maxCallMs"] = max(out["maxCallMs"], (time.monotonic() - started) * 1000)


def watched(step: dict[str, Any], changes: list[Any]) -> dict[str, Any]:
    """``kv.watch``: each change's index, and with ``key`` the key's value in each change."""
    out: dict[str, Any] = {"indices": [c.index for c in changes]}
    if "key" in step:
        out["values"] = [next((i.value for i in c.items if i.key == step["key"]), None) for c in changes]
    return out


def scenario_ids() -> list[Any]:
    out = []
    for s in SCENARIOS["scenarios"]:
        unsupported = {st["op"] for st in s["steps"]} - SUPPORTED
        marks = [pytest.mark.skip(reason=f"unsupported ops {sorted(unsupported)}")] if unsupported else []
        if "cluster" in s and CLUSTER_OFF:
            marks = [pytest.mark.skip(reason="PLUM_CONFORMANCE_CLUSTER=0: no real cluster")]
        for mode in ("sync", "async"):
            out.append(pytest.param(s, mode, id=f"{s['name']}[{mode}]", marks=marks))
    return out


@pytest.mark.parametrize("scenario,mode", scenario_ids())
def test_scenario(scenario: dict[str, Any], mode: str) -> None:
    fake = Fake(scenario["name"])
    failures: list[str] = []
    try:
        options, discovery = settings(scenario, fake.token)
        if mode == "sync":
            client = Client(fake.replicas, options, discovery)
            try:
                for step in scenario["steps"]:
                    failures += execute(step, lambda st: fake.control_step(st) if st["op"] == "control"
                                        else run_sync(client, st))
            finally:
                client.close()
        else:
            async def main() -> list[str]:
                out: list[str] = []
                aclient = AsyncClient(fake.replicas, options, discovery)
                try:
                    for step in scenario["steps"]:
                        if step["op"] == "sleep":
                            await asyncio.sleep(step["ms"] / 1000)
                            continue
                        started = time.monotonic()
                        error: BaseException | None = None
                        result: dict[str, Any] = {}
                        try:
                            if step["op"] == "control":
                                result = await asyncio.to_thread(fake.control_step, step)
                            else:
                                result = await run_async(aclient, step)
                        except Exception as e:  # noqa: BLE001
                            error = e
                        out += check(step, outcome_of(error), result, (time.monotonic() - started) * 1000, error)
                finally:
                    await aclient.aclose()
                return out

            failures += asyncio.run(main())
        verdict = fake.get("/verdict")
        failures += [f"server: {f}" for f in verdict["failures"]]
        if failures:
            report = fake.get("/report")
            if "received" in report:
                summary = [(r["replica"], r["method"], r["target"], r["redirect"]) for r in report["received"]]
                failures.append(f"received: {summary}")
            else:
                failures.append(f"cluster: {json.dumps(report, indent=1)}")
    finally:
        fake.stop()
    assert not failures, "\n".join(failures)


def execute(step: dict[str, Any], run: Any) -> list[str]:
    if step["op"] == "sleep":
        time.sleep(step["ms"] / 1000)
        return []
    started = time.monotonic()
    error: BaseException | None = None
    result: dict[str, Any] = {}
    try:
        result = run(step)
    except Exception as e:  # noqa: BLE001
        error = e
    return check(step, outcome_of(error), result, (time.monotonic() - started) * 1000, error)
