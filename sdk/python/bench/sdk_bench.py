"""The Python SDK under ``plum-bench``'s measures (chaos/src/sdk_bench.rs), driven by it:

``sdk_bench.py discovery``: with the bench service registered by plum-bench (``PLUM_BENCH_SERVICE``,
``PLUM_BENCH_INSTANCES``, ``PLUM_BENCH_SECONDS``), cached lookups on this thread for the given
seconds, then uncached lookups one at a time; prints ``cached <calls> <elapsed_ns>`` and one
``uncached <ns>`` a call.

``sdk_bench.py writer``: reads ``write <ns> <key>`` / ``stop`` lines on stdin; writes the counter
key one write at a time between them, printing ``call <start_unix_ns> <took_ns> <version>`` per
write and ``stopped`` after ``stop``. Exits at the end of stdin.

Any failure prints ``error <message>``. The cluster comes from ``PLUM_CONTROLLERS``/``PLUM_TOKEN``.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from plum_sdk import Client, Options
from plum_sdk.discovery import read_endpoints


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def discovery() -> None:
    service = os.environ["PLUM_BENCH_SERVICE"]
    instances = int(os.environ["PLUM_BENCH_INSTANCES"])
    seconds = float(os.environ["PLUM_BENCH_SECONDS"])
    with Client.from_env() as plum:
        # The replica asked may not have applied the registrations yet: wait for the watch.
        ready = time.monotonic()
        while len(plum.discover(service).endpoints) != instances:
            if time.monotonic() - ready > 10:
                raise RuntimeError(f"the cache never held the {instances} registered endpoints")
            time.sleep(0.01)
        calls = 0
        started = time.perf_counter_ns()
        limit = int(seconds * 1e9)
        while time.perf_counter_ns() - started < limit:
            # Batches of lookups between clock reads; each is a full SDK call.
            for _ in range(1000):
                calls += 1 if plum.discover(service).endpoints else 0
        out(f"cached {calls} {time.perf_counter_ns() - started}")
        path = f"/v1/discovery?service={service}"
        began = time.perf_counter_ns()
        lines = []
        while time.perf_counter_ns() - began < limit:
            t = time.perf_counter_ns()
            endpoints, _ = read_endpoints(plum.request("GET", path))
            lines.append(f"uncached {time.perf_counter_ns() - t}")
            if len(endpoints) != instances:
                raise RuntimeError(f"uncached lookup returned {len(endpoints)} endpoints")
        out("\n".join(lines))


def write_counter(plum: Client, ns: str, key: str, stop: threading.Event, failed: list[str]) -> None:
    expected = 1
    try:
        while not stop.is_set():
            start_unix_ns = time.time_ns()
            t = time.perf_counter_ns()
            written = plum.kv.put(ns, key, str(expected))
            out(f"call {start_unix_ns} {time.perf_counter_ns() - t} {written.version}")
            expected = written.version + 1
    except Exception as e:  # noqa: BLE001 - reported to plum-bench, which fails the run
        failed.append(f"a write failed outright: {type(e).__name__}: {e}")
        out(f"error {failed[-1]}")


def writer() -> None:
    # The Rust bench's transport settings for this measure: 1 s per attempt, 20 s per call.
    with Client.from_env(Options(attempt_timeout=1.0, deadline=20.0)) as plum:
        running: tuple[threading.Event, threading.Thread] | None = None
        failed: list[str] = []
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["write"] and len(words) == 3 and running is None:
                stop = threading.Event()
                th = threading.Thread(target=write_counter, args=(plum, words[1], words[2], stop, failed))
                th.start()
                running = (stop, th)
            elif words == ["stop"] and running is not None:
                running[0].set()
                running[1].join()
                running = None
                if not failed:
                    out("stopped")
            else:
                out(f"error unexpected command {line.strip()!r}")


def main() -> None:
    modes = {"discovery": discovery, "writer": writer}
    if len(sys.argv) != 2 or sys.argv[1] not in modes:
        out("error usage: sdk_bench.py discovery|writer")
        sys.exit(2)
    try:
        modes[sys.argv[1]]()
    except Exception as e:  # noqa: BLE001
        out(f"error {type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
