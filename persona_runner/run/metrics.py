"""What a long-lived runner (`soak`, `worker`) tells the machines that watch it: Prometheus metrics and its health.

A scraper reads `/metrics`: ticks by status, calls by tool and result with their
latency, tokens spent, ticks in flight and personas waiting their turn. A
supervisor (a Kubernetes probe, a load balancer) reads `/health`, which tells a
process at work from one whose event loop is wedged: the loop beats every
second from inside (`keep_beating`), and the server answers from its own
thread, so a loop that stopped beating is seen stopped however busy it looked.

Each RunnerMetrics has its own registry, never prometheus_client's global one,
so two runners in one process (tests, an embedded soak) count apart.
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from persona_runner.run.recorder import TickRecord
from persona_runner.util.errors import UserError

# `*_created` series only double the output; scrapers derive resets themselves (the product says the same).
disable_created_metrics()

#: A loop that has not beaten for this long is wedged, not busy: no tick holds it that long between awaits.
STALL_SECONDS = 30.0
#: How often a live loop beats (more often when the stall limit is short, so a live loop never looks stalled).
BEAT_SECONDS = 1.0
#: From a 5 ms call on the local product to a minute on a slow remote one (a call's own timeout ends it there).
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: How often the server's thread looks for the end of its block: the upper bound of the wait to shut it down.
SHUTDOWN_POLL_SECONDS = 0.1


class RunnerMetrics:
    """The counters of one runner process and what its health answers."""

    def __init__(self, stall_after: float = STALL_SECONDS) -> None:
        self.stall_after = stall_after
        self.beat_every = min(BEAT_SECONDS, stall_after / 5)
        self._started = time.monotonic()
        self._last_beat = self._started  # before the first beat, the stall counts from the start
        self._stopping = False
        self._lock = threading.Lock()  # the loop changes the count in flight while the server's threads read it
        self._in_flight = 0

        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory and CPU over hours: what a soak is watched for
        self._ticks_in_flight = Gauge(
            "persona_runner_ticks_in_flight", "Ticks started and not yet ended.", registry=self.registry
        )
        self._due = Gauge(
            "persona_runner_due_personas",
            "Personas due for a tick and not yet started (the backlog).",
            registry=self.registry,
        )
        self._ticks = Counter(
            "persona_runner_ticks_total", "Ticks ended, by status.", ["status"], registry=self.registry
        )
        self._calls = Counter(
            "persona_runner_tool_calls_total",
            "Tool calls made by personas, by tool and result (ok, error).",
            ["tool", "result"],
            registry=self.registry,
        )
        self._call_seconds = Histogram(
            "persona_runner_tool_call_seconds",
            "Round trip of a tool call as the runner timed it.",
            ["tool"],
            buckets=CALL_BUCKETS,
            registry=self.registry,
        )
        self._tokens = Counter(
            "persona_runner_tokens_total",
            "Model tokens spent by the personas' drivers, by direction (in, out).",
            ["direction"],
            registry=self.registry,
        )
        for direction in ("in", "out"):  # both series from the start: a rate over a scripted run is 0, not absent
            self._tokens.labels(direction=direction)

    def tick_started(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._ticks_in_flight.set(self._in_flight)

    def tick_ended(self, record: TickRecord) -> None:
        """Count a tick once it is over, with its calls and tokens (a tick in flight counts only as in flight)."""
        self._ended(record.status)
        self._count_work(record)

    def tick_cut_off(self, record: TickRecord | None = None) -> None:
        """A tick cut off by a stop: it recorded itself `aborted` in the store, with the calls it made. Those were
        real calls to the product (the one it was waiting on included, as an error), so they count with the tokens
        of the day so far, as the store counts them. Without its record (cut off before it could hand one over),
        only the tick counts."""
        self._ended("aborted")
        if record is not None:
            self._count_work(record)

    def _count_work(self, record: TickRecord) -> None:
        """The calls of a tick, by tool and result with their latency, and the tokens its driver spent."""
        for call in record.calls:
            outcome = call.outcome
            self._calls.labels(tool=outcome.tool, result=outcome.outcome).inc()
            self._call_seconds.labels(tool=outcome.tool).observe(outcome.latency_ms / 1000)
        self._tokens.labels(direction="in").inc(record.tokens_in)
        self._tokens.labels(direction="out").inc(record.tokens_out)

    def _ended(self, status: str) -> None:
        with self._lock:
            self._in_flight -= 1
            self._ticks_in_flight.set(self._in_flight)
        self._ticks.labels(status=status).inc()

    def set_due(self, count: int) -> None:
        self._due.set(count)

    def stopping(self) -> None:
        """The process was asked to stop: a supervisor should wait for it, not count it as failed."""
        self._stopping = True

    def beat(self) -> None:
        """The event loop is alive (see `keep_beating`)."""
        self._last_beat = time.monotonic()

    def health(self) -> tuple[int, dict[str, Any]]:
        """The HTTP status and body of `/health`. A wedged loop is `stalled` even while stopping: only a kill
        ends it then."""
        now = time.monotonic()
        silent = now - self._last_beat
        if silent >= self.stall_after:
            code, status = 503, "stalled"
        else:
            code, status = 200, "stopping" if self._stopping else "ok"
        with self._lock:
            in_flight = self._in_flight
        return code, {
            "status": status,
            "in_flight": in_flight,
            "uptime_seconds": round(now - self._started, 3),
            "last_beat_seconds_ago": round(silent, 3),
        }

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, as a scraper asks for them."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


async def keep_beating(metrics: RunnerMetrics) -> None:
    """Beat for as long as the loop runs this task; a loop held by blocking code stops beating, and `/health`
    says `stalled` once it has been silent for the metrics' stall limit."""
    while True:
        metrics.beat()
        await anyio.sleep(metrics.beat_every)


@contextmanager
def serving_metrics(metrics: RunnerMetrics, port: int | None, host: str = "127.0.0.1") -> Iterator[int | None]:
    """Serve `/metrics` and `/health` on host:port from a daemon thread until the block ends; yields the port bound
    (`port=0` takes any free one), or None with nothing served when `port` is None.

    The server is shut down and its socket closed before the block is left, so the port is free again at once.
    Requests in progress run on daemon threads and are not waited for: a slow scraper cannot hold a stop.
    """
    if port is None:
        yield None
        return
    try:
        server = _Server((host, port), partial(_Handler, metrics=metrics))
    except OSError as exc:
        raise UserError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
            "pick another --metrics-port, or stop what uses it",
            exit_code=1,
        ) from None
    thread = threading.Thread(
        target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name=f"metrics:{port}", daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Server(ThreadingHTTPServer):
    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host: where DNS does not answer, it stalls the start."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, *args: Any, metrics: RunnerMetrics, **kwargs: Any) -> None:
        self.metrics = metrics  # before the base class, which handles the request inside its __init__
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            body, content_type = self.metrics.render()
            self._send(200, body, content_type)
        elif path == "/health":
            code, health = self.metrics.health()
            self._send(code, json.dumps(health).encode(), "application/json")
        else:
            self._send(404, b"not found: try /metrics or /health\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """A scrape every few seconds is no news: the runner's stderr is for what a person must read."""
