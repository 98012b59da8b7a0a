#!/usr/bin/env python3
"""A real local 3-replica Plum cluster for the SDK conformance suite's cluster scenarios.

Python 3.10+ standard library only; started by every language's runner exactly like the fake:

    python3 sdk/conformance/real_cluster.py --scenario NAME --ports-file F [--scenarios FILE]
                                            [--controller BIN]

It starts ``plum-controller`` replicas on free loopback ports (fresh data directories, client
authentication on), waits until all of them agree on a leader, then writes F (atomically) in the
fake's format: ``{"replicas": [...], "control": "http://127.0.0.1:PC", "token": "plum_..."}``
(replicas in id order; the token is the bootstrap admin token).

The control port:

- ``POST /action`` with a JSON body ``{"action": A, "afterMs": N, "wait": bool, ...}``: runs A now
  (``wait: true``: answers when done, ``200`` or ``500`` with the error) or schedules it after N ms
  (``202``). Actions: ``kill_leader`` (SIGKILL whichever replica all running ones call leader),
  ``kill`` / ``stop`` / ``start`` ``{"replica": index}`` (SIGKILL / SIGTERM / start again on the
  same port and data), ``stop_all``, ``start_all`` (and wait for an agreed leader), ``put``
  ``{"ns","key","value"}`` (a KV write retried with one ``requestId`` until acknowledged).
- ``GET /verdict``: waits for scheduled actions (at most 30 s), then runs the scenario's
  ``server`` checks against the cluster: ``actions`` (every action succeeded; always checked),
  ``kv {ns,key,value?,version?}``, ``kvPrefix {ns,prefix,count,version}`` (keys
  ``prefix0..prefix{count-1}`` all exist at exactly that version: acknowledged writes were
  neither lost nor applied twice), ``service {name,count}``. Reads are linearizable.
- ``GET /report``: the actions with their times and outcomes, each replica's state and log tail.
- ``POST /shutdown``: stops every replica, deletes the data, exits 0 (also on SIGTERM/SIGINT).

The controller binary: ``--controller``, else ``$PLUM_CONTROLLER_BIN``, else
``$CARGO_TARGET_DIR/debug/plum-controller``, else ``target/debug/plum-controller`` of this
repository. Exit codes: 0 after shutdown, 2 bad arguments or unknown scenario, 4 no controller
binary, 5 the cluster did not come up (its logs are printed).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_SCENARIOS = os.path.join(HERE, "scenarios.json")
UP_TIMEOUT_S = 60.0
SECRET = "conformance-cluster-secret-0123456789\n"


def controller_binary(explicit: str | None) -> str | None:
    candidates = [explicit, os.environ.get("PLUM_CONTROLLER_BIN")]
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "debug", "plum-controller"))
    candidates.append(os.path.join(REPO, "target", "debug", "plum-controller"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills the replica if this launcher dies, so a
    killed runner never leaves replicas behind (Linux; elsewhere shutdown does it). The signal
    comes when the *thread* that started the child ends, so only the main thread starts
    replicas (`Cluster.start` hands the work to it)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Replica:
    def __init__(self, rid: int, port: int, data: str, log: str) -> None:
        self.id, self.port, self.data, self.log = rid, port, data, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, binary: str, size: int) -> None:
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="plum-conf-cluster-")
        self.secret = os.path.join(self.dir, "cluster.secret")
        with open(self.secret, "w") as f:
            f.write(SECRET)
        self.replicas = [Replica(i, free_port(), os.path.join(self.dir, f"data-{i}"),
                                 os.path.join(self.dir, f"replica-{i}.log")) for i in range(1, size + 1)]
        self.peers = ",".join(f"{r.id}=127.0.0.1:{r.port}" for r in self.replicas)
        self.token = ""
        self.lock = threading.Lock()
        self.starts: queue.Queue[tuple[Replica, threading.Event]] = queue.Queue()

    # ---- processes ---------------------------------------------------------------------------

    def start(self, r: Replica) -> None:
        if threading.current_thread() is not threading.main_thread():
            started = threading.Event()
            self.starts.put((r, started))
            started.wait()
            return
        self.spawn(r)

    def run_starts(self, done: threading.Event) -> None:
        """The main thread's loop until shutdown: starts the replicas other threads asked for."""
        while not done.is_set():
            try:
                r, started = self.starts.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.spawn(r)
            finally:
                started.set()

    def spawn(self, r: Replica) -> None:
        if r.running():
            return
        with open(r.log, "ab") as log:
            r.proc = subprocess.Popen(
                [self.binary, "--id", str(r.id), "--listen", f"127.0.0.1:{r.port}", "--peers", self.peers,
                 "--data-dir", r.data, "--cluster-secret-file", self.secret],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PLUM_LOG": "info,openraft=warn"},
                preexec_fn=die_with_parent)

    def stop(self, r: Replica, sig: int = signal.SIGTERM) -> None:
        if not r.running():
            return
        assert r.proc is not None
        r.proc.send_signal(sig)
        try:
            r.proc.wait(5)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait(5)

    def shutdown(self) -> None:
        for r in self.replicas:
            self.stop(r)
        if not os.environ.get("PLUM_CONFORMANCE_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- talking to it -------------------------------------------------------------------------

    def call(self, r: Replica, method: str, path: str, body: Any = None, timeout: float = 2.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(r.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        if self.token:
            req.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text) if text else None
            except ValueError:
                return e.code, text.decode(errors="replace")

    def leader(self) -> Replica | None:
        """The replica every running replica names as leader (None while they disagree)."""
        seen: set[int] = set()
        running = [r for r in self.replicas if r.running()]
        for r in running:
            try:
                status, body = self.call(r, "GET", "/v1/cluster", timeout=1.0)
            except OSError:
                return None
            if status != 200 or not isinstance(body, dict) or body.get("leaderId") is None:
                return None
            seen.add(int(body["leaderId"]))
        if len(seen) != 1:
            return None
        lid = seen.pop()
        return next((r for r in running if r.id == lid), None)

    def wait_leader(self, timeout: float = UP_TIMEOUT_S) -> Replica:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.replicas:
                if r.proc is not None and r.proc.poll() is not None and r.proc.returncode not in (0, -9, -15):
                    raise RuntimeError(f"replica {r.id} exited with {r.proc.returncode}")
            if not self.token:
                self.token = read_token(os.path.join(self.dir, "admin.token"))
            if self.token:
                leader = self.leader()
                if leader is not None:
                    return leader
            time.sleep(0.1)
        raise RuntimeError(f"no agreed leader within {timeout:.0f} s")

    def any_call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """One request, tried on each running replica in turn until one answers 2xx or 4xx (a
        follower forwards writes), for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last: tuple[int, Any] = (0, "no replica running")
        while time.monotonic() < deadline:
            for r in [r for r in self.replicas if r.running()]:
                try:
                    last = self.call(r, method, path, body)
                except OSError as e:
                    last = (0, str(e))
                    continue
                if last[0] < 500 and last[0] != 0:
                    return last
            time.sleep(0.1)
        return last

    def replica(self, step: dict[str, Any]) -> Replica:
        i = step.get("replica")
        if not isinstance(i, int) or not 0 <= i < len(self.replicas):
            raise ValueError(f"replica index {i!r} out of range")
        return self.replicas[i]

    # ---- actions -------------------------------------------------------------------------------

    def act(self, step: dict[str, Any]) -> str:
        action = step.get("action")
        if action == "kill_leader":
            leader = self.wait_leader(10.0)
            self.stop(leader, signal.SIGKILL)
            return f"killed replica {leader.id} (index {leader.id - 1}), the leader"
        if action == "kill":
            self.stop(self.replica(step), signal.SIGKILL)
            return "killed"
        if action == "stop":
            self.stop(self.replica(step))
            return "stopped"
        if action == "start":
            self.start(self.replica(step))
            return "started"
        if action == "stop_all":
            for r in self.replicas:
                self.stop(r)
            return "all stopped"
        if action == "start_all":
            for r in self.replicas:
                self.start(r)
            return f"all started, leader replica {self.wait_leader().id}"
        if action == "put":
            path = f"/v1/kv/{q(step['ns'])}/key/{q(step['key'])}?requestId={uuid.uuid4().hex}"
            status, body = self.any_call("PUT", path, {"value": step["value"]}, timeout=15.0)
            if status not in (200, 201):
                raise RuntimeError(f"put answered {status}: {body}")
            return f"put at version {body.get('version')}"
        raise ValueError(f"unknown action {action!r}")


def q(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def read_token(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


class Control:
    """The actions run and scheduled, and the scenario's checks."""

    def __init__(self, cluster: Cluster, scenario: dict[str, Any]) -> None:
        self.cluster, self.scenario = cluster, scenario
        self.started = time.monotonic()
        self.log: list[dict[str, Any]] = []
        self.pending: list[threading.Thread] = []
        self.requested = 0
        self.stopping = threading.Event()

    def now_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def run(self, step: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"action": step.get("action"), "step": step, "startedMs": self.now_ms()}
        with self.cluster.lock:  # one action at a time: a kill never races a restart
            try:
                entry["detail"] = self.cluster.act(step)
                entry["ok"] = True
            except Exception as e:  # noqa: BLE001 - reported to the runner, not raised
                entry["ok"], entry["error"] = False, f"{type(e).__name__}: {e}"
        entry["doneMs"] = self.now_ms()
        self.log.append(entry)
        return entry

    def schedule(self, step: dict[str, Any]) -> None:
        self.requested += 1

        def later() -> None:
            if not self.stopping.wait(step.get("afterMs", 0) / 1000):
                self.run(step)

        t = threading.Thread(target=later, daemon=True)
        t.start()
        self.pending.append(t)

    def verdict(self) -> dict[str, Any]:
        for t in self.pending:
            t.join(30)
        failures = [f"action {e['action']} failed: {e['error']}" for e in self.log if not e["ok"]]
        failures += [f"action still running after 30 s: {t.name}" for t in self.pending if t.is_alive()]
        if len(self.log) != self.requested:
            failures.append(f"{self.requested} actions requested, {len(self.log)} ran")
        for check in self.scenario.get("server", []):
            failures += self.check(check)
        return {"ok": not failures, "failures": failures}

    def check(self, c: dict[str, Any]) -> list[str]:
        cl = self.cluster
        kind = c.get("check")
        if kind == "kv":
            what = f"kv {c['ns']}/{c['key']}"
            item, bad = self.read(what, f"/v1/kv/{q(c['ns'])}/key/{q(c['key'])}")
            for field in ("value", "version"):
                if not bad and field in c and item.get(field) != c[field]:
                    bad.append(f"{what}: {field} {item.get(field)!r}, expected {c[field]!r}")
            return bad
        if kind == "kvPrefix":
            items, bad = self.read(f"kv list {c['ns']}/{c['prefix']}", f"/v1/kv/{q(c['ns'])}?prefix={q(c['prefix'])}")
            if bad:
                return bad
            versions = {i["key"]: i.get("version") for i in items}
            want = [f"{c['prefix']}{n}" for n in range(c["count"])]
            missing = [k for k in want if k not in versions]
            wrong = {k: versions[k] for k in want if k in versions and versions[k] != c["version"]}
            if missing:
                bad.append(f"kv {c['ns']}: {len(missing)} acknowledged keys missing, e.g. {missing[:5]}")
            if wrong:
                bad.append(f"kv {c['ns']}: keys not at version {c['version']}: {dict(list(wrong.items())[:5])}")
            return bad
        if kind == "service":
            eps, bad = self.read(f"service {c['name']}", f"/v1/discovery?service={q(c['name'])}")
            if not bad and len(eps) != c["count"]:
                bad.append(f"service {c['name']}: {len(eps)} endpoints, expected {c['count']}")
            return bad
        return [f"unknown server check {kind!r}"]

    def read(self, what: str, path: str) -> tuple[Any, list[str]]:
        """A linearizable read for a check: the body, and the failure when it did not answer 200."""
        sep = "&" if "?" in path else "?"
        status, body = self.cluster.any_call("GET", f"{path}{sep}consistent=true")
        return body, ([] if status == 200 else [f"{what}: answered {status} {body}"])

    def report(self) -> dict[str, Any]:
        replicas = []
        for r in self.cluster.replicas:
            try:
                with open(r.log, errors="replace") as f:
                    tail = f.readlines()[-15:]
            except OSError:
                tail = []
            replicas.append({"id": r.id, "url": r.url, "running": r.running(), "logTail": tail})
        return {"actions": self.log, "replicas": replicas}


def serve(control: Control, done: threading.Event) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            # Said outright: a client that pooled the connection (Java's HttpClient did) would
            # send its next request into a socket this HTTP/1.0 server already closed.
            self.send_header("connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path == "/verdict":
                self.answer(200, control.verdict())
            elif self.path == "/report":
                self.answer(200, control.report())
            else:
                self.answer(404, {"error": "no such control path"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path == "/shutdown":
                self.answer(200, {"ok": True})
                done.set()
                return
            if self.path != "/action":
                self.answer(404, {"error": "no such control path"})
                return
            try:
                step = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                if not isinstance(step, dict):
                    raise ValueError("the body must be a JSON object")
            except ValueError as e:
                self.answer(400, {"error": f"bad action: {e}"})
                return
            if step.get("wait"):
                control.requested += 1
                entry = control.run(step)
                self.answer(200 if entry["ok"] else 500, entry)
            else:
                control.schedule(step)
                self.answer(202, {"scheduled": step.get("action"), "afterMs": step.get("afterMs", 0)})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", required=True)
    p.add_argument("--ports-file", required=True)
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS)
    p.add_argument("--controller")
    args = p.parse_args()
    with open(args.scenarios) as f:
        scenario = next((s for s in json.load(f)["scenarios"] if s["name"] == args.scenario), None)
    if scenario is None or "cluster" not in scenario:
        print(f"no cluster scenario {args.scenario!r}", file=sys.stderr)
        return 2
    binary = controller_binary(args.controller)
    if binary is None:
        print("no plum-controller binary: build it (cargo build -p plum-registry) or set PLUM_CONTROLLER_BIN",
              file=sys.stderr)
        return 4
    cluster = Cluster(binary, scenario["cluster"].get("replicas", 3))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        for r in cluster.replicas:
            cluster.start(r)
        try:
            cluster.wait_leader()
        except RuntimeError as e:
            print(f"the cluster did not come up: {e}", file=sys.stderr)
            for r in cluster.replicas:
                print(f"--- replica {r.id} log ---", file=sys.stderr)
                print(open(r.log, errors="replace").read()[-3000:], file=sys.stderr)
            return 5
        control = Control(cluster, scenario)
        server = serve(control, done)
        info = {"replicas": [r.url for r in cluster.replicas],
                "control": f"http://127.0.0.1:{server.server_address[1]}", "token": cluster.token}
        tmp = args.ports_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, args.ports_file)
        cluster.run_starts(done)
        control.stopping.set()
        server.shutdown()
        return 0
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
