#!/usr/bin/env python3
"""A scripted fake Plum controller cluster for the SDK conformance suite.

Python 3.10+ standard library only, so every language's runner can start it as a subprocess:

    python3 sdk/conformance/fake_controller.py --scenario NAME --ports-file F [--scenarios FILE]

It listens on one loopback port per replica plus a control port, then writes F (atomically):
``{"replicas": ["http://127.0.0.1:P1", ...], "control": "http://127.0.0.1:PC", "token": "..."}``.

Every replica shares one in-memory state (KV with versions, modIndex and ``requestId``
deduplication; discovery answers with change indexes; registrations) and, unless a scripted rule
says otherwise, answers like a real replica (README.md, ../../../shared/API.md, docs/API.md):
``x-plum-replica`` / ``x-plum-leader`` / ``x-plum-leader-addr`` on every answer; a write sent to
a follower with ``x-plum-redirect: 1`` is a ``307`` to the leader (``Location`` and the JSON body
``{"error","retryable":true,"leaderId","leaderAddr"}``), without it the follower "forwards"
(applies); with no leader a write is ``503 {"retryable": true}`` + ``Retry-After: 1``; long polls
(``watch=true&index=N&timeoutMs=T``) wait for a change after N.

Rules (per replica, from the scenario) replace the normal answer for matching requests: see
README.md for the vocabulary. The control port serves ``GET /report`` (what every replica
received and what was applied), ``GET /verdict`` (the scenario's server-side checks) and
``POST /shutdown``.

Exit codes: 0 after /shutdown or SIGTERM/SIGINT, 2 bad arguments or unknown scenario, 3 a port
could not be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time
import urllib.parse
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCENARIOS = os.path.join(HERE, "scenarios.json")
TOKEN = "plum_0123456789ab_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
MAX_WATCH_MS = 120_000

REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 307: "Temporary Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}


class Abort(Exception):
    """The connection is to be dropped (reset) without an answer."""


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        parsed = urllib.parse.urlsplit(target)
        self.target = target
        self.path = urllib.parse.unquote(parsed.path)
        self.raw_path = parsed.path
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def watch(self) -> bool:
        return self.query.get("watch") == "true"

    @property
    def is_write(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")


class Answer:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                 raw: bytes | None = None) -> None:
        self.status = status
        self.headers = dict(headers or {})
        if raw is not None:
            self.payload = raw
        elif body is None:
            self.payload = b""
        else:
            self.payload = json.dumps(body).encode()
            self.headers.setdefault("content-type", "application/json")


def error(status: int, message: str, **extra: Any) -> Answer:
    return Answer(status, {"error": message, **extra})


class Cluster:
    """The shared state of every replica, and the scenario's script."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        fake = scenario.get("fake", {})
        self.n = int(fake.get("replicas", 3))
        self.leader: int | None = fake.get("leader", 0)
        self.down: set[int] = set(fake.get("down", []))
        self.token: str | None = fake.get("token", TOKEN)
        self.rules: list[list[dict[str, Any]]] = [
            [dict(r) for r in fake.get("rules", {}).get(str(i), [])] for i in range(self.n)
        ]
        for rules in self.rules:
            for r in rules:
                r["left"] = r.get("times", 1)
        self.timeline: list[dict[str, Any]] = list(fake.get("timeline", []))
        self.urls: list[str] = []
        self.index = int(fake.get("index", 1))
        self.kv: dict[tuple[str, str], dict[str, Any]] = {}
        self.kv_changes: list[tuple[int, str, str]] = []
        self.request_ids: dict[str, Answer] = {}
        self.services: dict[str, dict[str, Any]] = {}
        for name, svc in fake.get("services", {}).items():
            self.services[name] = {"index": int(svc.get("index", 1)), "endpoints": list(svc.get("endpoints", []))}
            self.index = max(self.index, self.services[name]["index"])
        for item in fake.get("kv", []):
            self.index += 1
            self.put_kv(item["namespace"], item["key"], item["value"], item.get("type", "string"))
        self.instances: dict[str, dict[str, Any]] = {}
        self.received: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []
        self.changed = asyncio.Condition()
        self.started: float | None = None
        self.servers: dict[int, asyncio.AbstractServer] = {}
        self.ports: list[int] = []
        self.conns: dict[int, set[asyncio.StreamWriter]] = {i: set() for i in range(self.n)}
        self.stopping = asyncio.Event()

    # ---- state -------------------------------------------------------------------------------

    def put_kv(self, ns: str, key: str, value: str, kind: str) -> dict[str, Any]:
        old = self.kv.get((ns, key))
        rec = {"namespace": ns, "key": key, "value": value, "type": kind, "updatedAt": int(time.time()),
               "version": (old["version"] + 1) if old else 1, "modIndex": self.index}
        self.kv[(ns, key)] = rec
        self.kv_changes.append((self.index, ns, key))
        return rec

    def kv_change_index(self, ns: str, prefix: str) -> int:
        return max((i for i, n, k in self.kv_changes if n == ns and k.startswith(prefix)), default=0)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def wait_change(self, current: Any, after: int, timeout_ms: int) -> None:
        deadline = time.monotonic() + min(timeout_ms, MAX_WATCH_MS) / 1000
        async with self.changed:
            while current() <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    await asyncio.wait_for(self.changed.wait(), left)
                except asyncio.TimeoutError:
                    return

    # ---- timeline ----------------------------------------------------------------------------

    async def run_timeline(self) -> None:
        while self.started is None:
            await asyncio.sleep(0.005)
        for event in sorted(self.timeline, key=lambda e: e.get("afterMs", 0)):
            at = self.started + event.get("afterMs", 0) / 1000
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            await self.apply_event(event)

    async def apply_event(self, event: dict[str, Any]) -> None:
        if "leader" in event:
            self.leader = event["leader"]
        for i in event.get("down", []):
            await self.take_down(i)
        for i in event.get("up", []):
            await self.bring_up(i)
        if "put" in event:
            p = event["put"]
            self.index += 1
            self.put_kv(p["namespace"], p["key"], p["value"], p.get("type", "string"))
        if "service" in event:
            s = event["service"]
            self.index += 1
            self.services[s["name"]] = {"index": self.index, "endpoints": list(s.get("endpoints", []))}
        await self.notify()

    async def take_down(self, i: int) -> None:
        self.down.add(i)
        server = self.servers.pop(i, None)
        if server is not None:
            server.close()
        for w in list(self.conns[i]):
            reset(w)
        self.conns[i].clear()

    async def bring_up(self, i: int) -> None:
        self.down.discard(i)
        if i not in self.servers:
            await self.listen(i, self.ports[i])

    async def listen(self, i: int, port: int) -> int:
        server = await asyncio.start_server(lambda r, w: self.serve_conn(i, r, w), "127.0.0.1", port,
                                            reuse_address=True)
        self.servers[i] = server
        return server.sockets[0].getsockname()[1]

    # ---- connections -------------------------------------------------------------------------

    async def serve_conn(self, i: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns[i].add(writer)
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    return
                if self.started is None:
                    self.started = time.monotonic()
                self.received.append({
                    "replica": i, "method": req.method, "path": req.path, "target": req.target,
                    "body": req.json(), "redirect": req.headers.get("x-plum-redirect") == "1",
                    "traceparent": req.headers.get("traceparent"), "at": time.monotonic() - self.started,
                })
                try:
                    answer = await self.handle(i, req)
                except Abort:
                    reset(writer)
                    return
                if answer is None:  # a stall: hold the connection until the client gives up
                    await hold(reader)
                    return
                if isinstance(answer, tuple):  # truncated: headers and part of the body, then reset
                    writer.write(encode(i, self, answer[0], truncate=True))
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    reset(writer)
                    return
                writer.write(encode(i, self, answer))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.conns[i].discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    def rule_for(self, i: int, req: Request) -> dict[str, Any] | None:
        for rule in self.rules[i]:
            if rule["left"] == 0:
                continue
            if "method" in rule and rule["method"] != req.method:
                continue
            if "path" in rule and not req.path.startswith(rule["path"]):
                continue
            if "watch" in rule and rule["watch"] != req.watch:
                continue
            if rule["left"] > 0:
                rule["left"] -= 1
            return rule
        return None

    async def handle(self, i: int, req: Request) -> Answer | tuple[Answer] | None:
        if req.path == "/healthz":
            return Answer(200, raw=b"ok")
        if self.token and req.headers.get("authorization") != f"Bearer {self.token}":
            return error(401, "missing or unknown token")
        rule = self.rule_for(i, req)
        do = rule["do"] if rule else "serve"
        if do == "serve":
            return await self.serve(i, req)
        if rule and rule.get("apply"):
            await self.apply_write(req)
        if do == "stall":
            return None
        if do == "reset":
            raise Abort()
        if do == "truncate":
            return (await self.serve(i, req),)
        if do == "no_leader":
            return Answer(503, {"error": "no leader elected within 3000 ms", "retryable": True},
                          {"retry-after": "1", "x-fake-no-leader": "1"})
        if do == "outcome_unknown":
            return error(503, "outcome unknown: leader lost while the write was in flight", outcomeUnknown=True)
        if do == "redirect":
            return self.redirect(i, req, rule.get("to", self.leader))
        if do == "answer":
            body = rule.get("body")
            headers = {k.lower(): str(v) for k, v in rule.get("headers", {}).items()}
            return Answer(int(rule.get("status", 200)), body, headers)
        if do == "empty":
            svc = self.services.get(req.query.get("service", ""), {"index": 0})
            return Answer(200, [], {"x-plum-index": str(rule.get("index", svc["index"]))})
        raise ValueError(f"unknown rule action {do!r}")

    def redirect(self, i: int, req: Request, to: int | None) -> Answer:
        if to is None:
            return Answer(503, {"error": "no leader elected within 3000 ms", "retryable": True}, {"retry-after": "1"})
        base = self.urls[to]
        return Answer(307, {"error": "not the leader", "retryable": True, "leaderId": to + 1, "leaderAddr": base},
                      {"location": base + req.target, "x-plum-leader": str(to + 1), "x-plum-leader-addr": base})

    async def serve(self, i: int, req: Request) -> Answer:
        if req.is_write:
            if self.leader is None:
                return Answer(503, {"error": "no leader elected within 3000 ms", "retryable": True},
                              {"retry-after": "1"})
            if self.leader != i and req.headers.get("x-plum-redirect") == "1":
                return self.redirect(i, req, self.leader)
            return await self.apply_write(req)
        return await self.read(req)

    # ---- writes ------------------------------------------------------------------------------

    async def apply_write(self, req: Request) -> Answer:
        """Applies a write (the leader's part), deduplicating KV writes by requestId."""
        body = req.json() or {}
        parts = req.path.strip("/").split("/")
        answer: Answer
        if parts[:2] == ["v1", "kv"] and len(parts) >= 4 and parts[-1] != "batch":
            ns = parts[2]
            key = "/".join(parts[4:]) if parts[3] == "key" and len(parts) > 4 else "/".join(parts[3:])
            rid = body.get("requestId") if isinstance(body, dict) else None
            if rid and rid in self.request_ids:
                return self.request_ids[rid]
            self.index += 1
            if req.method == "DELETE":
                expect = req.query.get("expectVersion")
                cur = self.kv.get((ns, key))
                if expect is not None and (cur["version"] if cur else 0) != int(expect):
                    return error(409, "version mismatch", detail={"currentVersion": cur["version"] if cur else 0})
                if cur:
                    del self.kv[(ns, key)]
                    self.kv_changes.append((self.index, ns, key))
                self.applied.append({"what": "kv.delete", "key": f"{ns}/{key}"})
                answer = Answer(204)
            else:
                cur = self.kv.get((ns, key))
                expect = body.get("expectVersion")
                if expect is not None and (cur["version"] if cur else 0) != int(expect):
                    answer = error(409, f"version mismatch: the key is at version {cur['version'] if cur else 0}",
                                   detail={"currentVersion": cur["version"] if cur else 0})
                else:
                    rec = self.put_kv(ns, key, str(body.get("value", "")), body.get("type") or "string")
                    self.applied.append({"what": "kv.put", "key": f"{ns}/{key}", "requestId": rid,
                                         "value": rec["value"]})
                    answer = Answer(200, {k: rec[k] for k in ("namespace", "key", "value", "type", "version")})
            if rid:
                self.request_ids[rid] = answer
        elif req.path == "/v1/services/register/batch":
            items = body.get("items") or []
            for it in items:
                self.instances[it.get("instanceId", "")] = it
            self.applied.append({"what": "register", "ids": [it.get("instanceId") for it in items]})
            self.touch_services(items)
            answer = Answer(200, {"count": len(items), **self.advice(items)})
        elif req.path == "/v1/services/register":
            self.instances[body.get("instanceId", "")] = body
            self.applied.append({"what": "register", "ids": [body.get("instanceId")]})
            self.touch_services([body])
            answer = Answer(204)
        elif req.path == "/v1/services/heartbeat/batch":
            items = body.get("items") or []
            unknown = [it.get("instanceId") for it in items if it.get("instanceId") not in self.instances]
            self.applied.append({"what": "heartbeat", "ids": [it.get("instanceId") for it in items],
                                 "unknown": unknown})
            known = [self.instances[it["instanceId"]] for it in items if it.get("instanceId") in self.instances]
            answer = Answer(200, {"count": len(items) - len(unknown), "unknown": unknown, **self.advice(known)})
        elif req.path == "/v1/services" and req.method == "DELETE":
            iid = req.query.get("instanceId", "")
            self.instances.pop(iid, None)
            self.applied.append({"what": "deregister", "ids": [iid]})
            answer = Answer(204)
        else:
            self.index += 1
            self.applied.append({"what": "write", "method": req.method, "path": req.path})
            answer = Answer(201 if req.method == "POST" else 200, {"id": f"w-{self.index}"})
        await self.notify()
        return answer

    def advice(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        ttls = [int(it.get("ttlMs") or 15000) for it in items]
        return {"heartbeatIntervalMs": max(50, min(ttls) // 4)} if ttls else {}

    def touch_services(self, items: list[dict[str, Any]]) -> None:
        for it in items:
            for ep in it.get("endpoints") or []:
                name = ep.get("serviceName", "")
                self.index += 1
                svc = self.services.setdefault(name, {"index": self.index, "endpoints": []})
                svc["index"] = self.index
                svc["endpoints"] = [e for e in svc["endpoints"] if e.get("instanceId") != it.get("instanceId")]
                svc["endpoints"].append({
                    "serviceName": name, "instanceId": it.get("instanceId"), "nodeId": it.get("nodeId", ""),
                    "ip": ep.get("ip") or it.get("ip", ""), "port": ep.get("port", 0),
                    "protocol": ep.get("protocol", "http"), "version": ep.get("version", ""),
                    "labels": ep.get("labels") or {}, "healthy": True, "lastSeen": int(time.time())})

    # ---- reads -------------------------------------------------------------------------------

    async def read(self, req: Request) -> Answer:
        parts = req.path.strip("/").split("/")
        applied = {"x-plum-applied-index": str(self.index)}
        if req.path == "/v1/discovery":
            name = req.query.get("service")
            if not name:
                return error(400, "query parameter `service` is required")
            current = lambda: self.services.get(name, {"index": 0})["index"]  # noqa: E731
            if req.watch:
                await self.wait_change(current, int(req.query.get("index", "0")),
                                       int(req.query.get("timeoutMs", "30000")))
            svc = self.services.get(name, {"index": 0, "endpoints": []})
            eps = [e for e in svc["endpoints"] if e.get("healthy", True)]
            return Answer(200, eps, {**applied, "x-plum-index": str(svc["index"])})
        if parts[:2] == ["v1", "kv"] and len(parts) == 3:
            ns, prefix = parts[2], req.query.get("prefix", "")
            if req.watch:
                await self.wait_change(lambda: self.kv_change_index(ns, prefix), int(req.query.get("index", "0")),
                                       int(req.query.get("timeoutMs", "30000")))
            items = sorted((v for (n, k), v in self.kv.items() if n == ns and k.startswith(prefix)),
                           key=lambda v: v["key"])
            return Answer(200, items, {**applied, "x-plum-index": str(self.kv_change_index(ns, prefix))})
        if parts[:2] == ["v1", "kv"] and len(parts) >= 4:
            ns = parts[2]
            key = "/".join(parts[4:]) if parts[3] == "key" and len(parts) > 4 else "/".join(parts[3:])
            rec = self.kv.get((ns, key))
            if rec is None:
                return error(404, f"key `{ns}/{key}` not found")
            return Answer(200, rec, applied)
        if req.path == "/v1/cluster":
            return Answer(200, {"leader": None if self.leader is None else self.leader + 1}, applied)
        return error(404, "no such route")

    # ---- verdict -----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return {"received": self.received, "applied": self.applied, "leader": self.leader}

    def verdict(self) -> dict[str, Any]:
        failures: list[str] = []
        for check in self.scenario.get("server", []):
            why = self.check(check)
            if why:
                failures.append(why)
        return {"ok": not failures, "failures": failures}

    def matching(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for r in self.received:
            if "replica" in c and r["replica"] != c["replica"]:
                continue
            if "method" in c and r["method"] != c["method"]:
                continue
            if "path" in c and not r["path"].startswith(c["path"]):
                continue
            if "watch" in c and ("watch=true" in r["target"]) != c["watch"]:
                continue
            out.append(r)
        return out

    def check(self, c: dict[str, Any]) -> str | None:
        kind = c["check"]
        if kind == "applied":
            n = sum(1 for a in self.applied if a["what"] == c.get("what", "kv.put")
                    and ("key" not in c or a.get("key") == c["key"])
                    and ("path" not in c or a.get("path", "").startswith(c["path"])))
        elif kind == "received":
            n = len(self.matching(c))
        elif kind == "sameRequestId":
            ids = {json.dumps((r["body"] or {}).get("requestId")) for r in self.matching(c)}
            if len(ids) != 1 or "null" in ids:
                return f"{c}: expected one non-empty requestId on every attempt, saw {sorted(ids)}"
            return None
        elif kind == "oneTrace":
            ids = {(r["traceparent"] or "").split("-")[1:2][0] if r["traceparent"] else None
                   for r in self.matching(c)}
            if len(ids) != 1 or None in ids:
                return f"{c}: expected every attempt in one W3C trace, saw {sorted(map(str, ids))}"
            return None
        else:
            return f"unknown check {kind!r}"
        lo, hi = c.get("min", c.get("count", 0)), c.get("max", c.get("count"))
        if n < lo or (hi is not None and n > hi):
            return f"{c}: counted {n}"
        return None


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes the connection with a TCP RST (SO_LINGER 0), as a crashed or cut-off peer would."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    except OSError:
        pass


async def hold(reader: asyncio.StreamReader) -> None:
    """A stall: never answer; return once the client closed the connection."""
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        pass


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    if headers.get("content-encoding") == "gzip":
        import gzip
        body = gzip.decompress(body)
    return Request(method, target, headers, body)


def encode(i: int, cluster: Cluster, a: Answer, truncate: bool = False) -> bytes:
    headers = {"x-plum-replica": str(i + 1)}
    if cluster.leader is not None and "x-fake-no-leader" not in a.headers:
        headers["x-plum-leader"] = str(cluster.leader + 1)
        headers["x-plum-leader-addr"] = cluster.urls[cluster.leader]
    headers.update(a.headers)
    headers.pop("x-fake-no-leader", None)
    headers["content-length"] = str(len(a.payload))
    out = [f"HTTP/1.1 {a.status} {REASONS.get(a.status, 'Status')}"]
    out += [f"{k}: {v}" for k, v in headers.items()]
    payload = a.payload[: max(1, len(a.payload) // 2)] if truncate else a.payload
    return ("\r\n".join(out) + "\r\n\r\n").encode() + payload


async def control(cluster: Cluster, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        req = await read_request(reader)
        if req is None:
            return
        if req.path == "/report":
            body: Any = cluster.report()
        elif req.path == "/verdict":
            body = cluster.verdict()
        elif req.path == "/shutdown":
            body = {"ok": True}
            cluster.stopping.set()
        else:
            body = {"error": "no such route"}
        payload = json.dumps(body).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                     + f"content-length: {len(payload)}\r\n\r\n".encode() + payload)
        await writer.drain()
    finally:
        writer.close()


async def main_async(scenario: dict[str, Any], ports_file: str) -> int:
    cluster = Cluster(scenario)
    try:
        for i in range(cluster.n):
            # Every replica gets a port, also one that starts down (then nothing listens there:
            # connections are refused, as to a killed process).
            port = await cluster.listen(i, 0)
            cluster.ports.append(port)
            cluster.urls.append(f"http://127.0.0.1:{port}")
        ctl = await asyncio.start_server(lambda r, w: control(cluster, r, w), "127.0.0.1", 0)
    except OSError as e:
        print(f"fake_controller: cannot bind: {e}", file=sys.stderr)
        return 3
    for i in sorted(cluster.down):
        await cluster.take_down(i)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, cluster.stopping.set)
    info = {"replicas": cluster.urls, "control": f"http://127.0.0.1:{ctl.sockets[0].getsockname()[1]}",
            "token": cluster.token}
    tmp = ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, ports_file)
    timeline = asyncio.create_task(cluster.run_timeline())
    await cluster.stopping.wait()
    timeline.cancel()
    ctl.close()
    for i in list(cluster.servers):
        await cluster.take_down(i)
    return 0


def load(path: str, name: str) -> dict[str, Any] | None:
    with open(path) as f:
        suite = json.load(f)
    return next((s for s in suite["scenarios"] if s["name"] == name), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", required=True)
    p.add_argument("--ports-file", required=True)
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    try:
        args = p.parse_args()
    except SystemExit:
        return 2
    scenario = load(args.scenarios, args.scenario)
    if scenario is None:
        print(f"fake_controller: no scenario named {args.scenario!r} in {args.scenarios}", file=sys.stderr)
        return 2
    return asyncio.run(main_async(scenario, args.ports_file))


if __name__ == "__main__":
    sys.exit(main())
