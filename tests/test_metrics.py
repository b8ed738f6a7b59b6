"""A long-lived runner's metrics and health, read over real HTTP on 127.0.0.1 as a scraper and a probe read them:
ticks, calls, latency and tokens counted by label; `/health` ok, stopping, and stalled when the loop stops beating;
a busy port is one line; the port is free again once the block ends."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import anyio
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from persona_runner.domain import CallOutcome, PersonaProfile
from persona_runner.run.metrics import RunnerMetrics, keep_beating, serving_metrics
from persona_runner.run.recorder import RecordedCall, TickRecord
from persona_runner.util.errors import UserError

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def a_record(status: str, calls: list[tuple[str, str, float]], tokens: tuple[int, int] = (0, 0)) -> TickRecord:
    """A finished tick with `calls` as (tool, result, latency in ms)."""
    profile = PersonaProfile("Maya", "maya@personas.test", "planner", "You plan.", {"todo": 1.0})
    record = TickRecord("run-x:maya", "run-x", profile, "u-maya", "2026-11-22", 0, "scripted", None, status=status)
    for seq, (tool, result, latency_ms) in enumerate(calls):
        outcome = CallOutcome(tool, {}, "ok" if result == "ok" else "error", latency_ms)
        record.calls.append(RecordedCall(seq, tool.split(".")[0], outcome, datetime.now(UTC)))
    record.tokens_in, record.tokens_out = tokens
    return record


def get(port: int, path: str) -> tuple[int, bytes, str]:
    """Status, body and content type of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), error.headers["Content-Type"]


def scrape(port: int) -> Samples:
    status, body, content_type = get(port, "/metrics")
    assert (status, content_type) == (200, CONTENT_TYPE_LATEST)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def health(port: int) -> tuple[int, dict[str, object]]:
    status, body, content_type = get(port, "/health")
    assert content_type == "application/json"
    return status, json.loads(body)


def test_ticks_calls_latency_and_tokens_are_counted_by_label() -> None:
    metrics = RunnerMetrics()
    with serving_metrics(metrics, 0) as port:
        assert port
        metrics.tick_started()
        metrics.tick_started()
        metrics.tick_started()
        metrics.set_due(7)
        samples = scrape(port)
        assert value(samples, "persona_runner_ticks_in_flight") == 3
        assert value(samples, "persona_runner_due_personas") == 7
        assert value(samples, "persona_runner_tokens_total", direction="in") == 0  # there before any tick ends

        calls = [("todo.create", "ok", 12.0), ("todo.create", "error", 250.0), ("notes.list", "ok", 40.0)]
        metrics.tick_ended(a_record("ok", calls, tokens=(100, 20)))
        metrics.tick_ended(a_record("failed", [], tokens=(5, 0)))
        metrics.tick_started()
        metrics.tick_cut_off()  # a stop cut it off before it handed its record over: the tick alone counts
        metrics.tick_ended(a_record("ok", [("todo.create", "ok", 3.0)]))
        metrics.set_due(0)
        samples = scrape(port)

    assert value(samples, "persona_runner_ticks_in_flight") == 0
    assert value(samples, "persona_runner_due_personas") == 0
    assert value(samples, "persona_runner_ticks_total", status="ok") == 2
    assert value(samples, "persona_runner_ticks_total", status="failed") == 1
    assert value(samples, "persona_runner_ticks_total", status="aborted") == 1
    assert value(samples, "persona_runner_tool_calls_total", tool="todo.create", result="ok") == 2
    assert value(samples, "persona_runner_tool_calls_total", tool="todo.create", result="error") == 1
    assert value(samples, "persona_runner_tool_calls_total", tool="notes.list", result="ok") == 1
    assert ("persona_runner_tool_calls_total", frozenset({("tool", "notes.list"), ("result", "error")})) not in samples
    assert value(samples, "persona_runner_tool_call_seconds_count", tool="todo.create") == 3
    assert value(samples, "persona_runner_tool_call_seconds_sum", tool="todo.create") == pytest.approx(0.265)
    assert value(samples, "persona_runner_tool_call_seconds_bucket", tool="todo.create", le="0.005") == 1
    assert value(samples, "persona_runner_tool_call_seconds_bucket", tool="todo.create", le="0.25") == 3
    assert value(samples, "persona_runner_tool_call_seconds_bucket", tool="notes.list", le="0.025") == 0
    assert value(samples, "persona_runner_tool_call_seconds_bucket", tool="notes.list", le="60.0") == 1
    assert value(samples, "persona_runner_tokens_total", direction="in") == 105
    assert value(samples, "persona_runner_tokens_total", direction="out") == 20


def test_a_tick_cut_off_counts_the_calls_it_made_and_its_tokens() -> None:
    """A stop cuts a tick off: it is recorded aborted with its calls, the one it was waiting on as an error. Each
    reached the product, so a scraper counts them as the store does; a tick cut off before it handed its record
    over counts as a tick alone."""
    metrics = RunnerMetrics()
    with serving_metrics(metrics, 0) as port:
        assert port
        metrics.tick_started()
        metrics.tick_started()
        cut = a_record("aborted", [("todo.create", "ok", 12.0), ("todo.list", "error", 900.0)], tokens=(40, 8))
        metrics.tick_cut_off(cut)
        metrics.tick_cut_off()
        samples = scrape(port)

    assert value(samples, "persona_runner_ticks_in_flight") == 0
    assert value(samples, "persona_runner_ticks_total", status="aborted") == 2
    assert value(samples, "persona_runner_tool_calls_total", tool="todo.create", result="ok") == 1
    assert value(samples, "persona_runner_tool_calls_total", tool="todo.list", result="error") == 1
    assert value(samples, "persona_runner_tool_call_seconds_sum", tool="todo.list") == pytest.approx(0.9)
    assert value(samples, "persona_runner_tokens_total", direction="in") == 40
    assert value(samples, "persona_runner_tokens_total", direction="out") == 8


def test_health_is_ok_then_stopping_and_other_paths_are_not_found() -> None:
    metrics = RunnerMetrics()
    with serving_metrics(metrics, 0) as port:
        assert port
        metrics.tick_started()
        status, body = health(port)
        assert status == 200
        assert body["status"] == "ok" and body["in_flight"] == 1
        assert isinstance(body["uptime_seconds"], float) and isinstance(body["last_beat_seconds_ago"], float)

        metrics.stopping()
        status, body = health(port)
        assert (status, body["status"]) == (200, "stopping")

        assert get(port, "/")[0] == 404
        assert get(port, "/metrics/extra")[0] == 404
        assert get(port, "/health?verbose=1")[0] == 200


def test_a_loop_that_never_beat_is_stalled_counting_from_the_start() -> None:
    metrics = RunnerMetrics(stall_after=0.2)
    with serving_metrics(metrics, 0) as port:
        assert port
        assert health(port)[0] == 200
        time.sleep(0.3)
        status, body = health(port)
        assert (status, body["status"]) == (503, "stalled")
        assert isinstance(body["last_beat_seconds_ago"], float) and body["last_beat_seconds_ago"] >= 0.2
        metrics.stopping()
        assert health(port)[1]["status"] == "stalled"  # asked to stop does not make a wedged loop any less wedged


@pytest.mark.anyio
async def test_a_beating_loop_is_ok_and_a_wedged_one_stalled_until_it_beats_again() -> None:
    metrics = RunnerMetrics(stall_after=1.0)
    with serving_metrics(metrics, 0) as port:
        assert port
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(keep_beating, metrics)
            await anyio.sleep(1.5)  # past the stall limit, beating all along
            status, body = await anyio.to_thread.run_sync(health, port)
            assert (status, body["status"]) == (200, "ok")
            assert isinstance(body["last_beat_seconds_ago"], float) and body["last_beat_seconds_ago"] < 1.0

            time.sleep(1.2)  # blocking code holds the loop: no beat, while the server still answers
            status, body = health(port)
            assert (status, body["status"]) == (503, "stalled")

            await anyio.sleep(0.1)  # the loop runs again, and beats
            assert (await anyio.to_thread.run_sync(health, port))[0] == 200
            tasks.cancel_scope.cancel()


def test_port_none_serves_nothing() -> None:
    with serving_metrics(RunnerMetrics(), None) as port:
        assert port is None
        assert not [thread for thread in threading.enumerate() if thread.name.startswith("metrics:")]


def test_a_busy_port_is_one_line_naming_it_and_the_fix() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UserError) as raised, serving_metrics(RunnerMetrics(), port):
            pytest.fail("served on a port in use")
    message = str(raised.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "--metrics-port" in message


def test_the_port_is_free_again_promptly_after_the_block_even_with_a_client_hanging() -> None:
    metrics = RunnerMetrics()
    with serving_metrics(metrics, 0) as port:
        assert port
        hanging = socket.create_connection(("127.0.0.1", port))  # connected, never sends a request
        assert get(port, "/health")[0] == 200
        left = time.monotonic()
    try:
        assert time.monotonic() - left < 1.0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        with serving_metrics(metrics, port) as again:
            assert again == port and get(port, "/health")[0] == 200
    finally:
        hanging.close()


def test_two_in_one_process_count_apart() -> None:
    first, second = RunnerMetrics(), RunnerMetrics()
    with serving_metrics(first, 0) as one, serving_metrics(second, 0) as other:
        assert one and other and one != other
        first.tick_started()
        first.tick_ended(a_record("ok", [("todo.create", "ok", 10.0)]))
        assert value(scrape(one), "persona_runner_ticks_total", status="ok") == 1
        samples = scrape(other)
        assert ("persona_runner_ticks_total", frozenset({("status", "ok")})) not in samples
        assert value(samples, "persona_runner_ticks_in_flight") == 0


def test_a_settled_record_keeps_what_a_run_summary_reads_and_drops_the_bulk() -> None:
    """A soak keeps every tick's record for its end-of-run summary: only the counts, never the payloads."""
    record = a_record("ok", [("todo.create", "ok", 12.0), ("todo.create", "error", 250.0)], tokens=(7, 3))
    record.calls[0].outcome.arguments["title"] = "x" * 10_000
    record.transcript = {"calls": ["y" * 10_000]}
    settled = record.settled()
    assert (settled.status, settled.errors, settled.modules_used(), settled.tokens_in) == ("ok", 1, ["todo"], 7)
    assert [call.outcome.outcome for call in settled.calls] == ["ok", "error"]
    assert settled.transcript == {} and all(call.outcome.arguments == {} for call in settled.calls)
    assert record.calls[0].outcome.arguments  # the record itself is left as it was
