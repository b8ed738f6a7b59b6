"""`run` stopped by SIGTERM or SIGINT, as systemd, Kubernetes, CI or a person stop it: no tick
starts after the signal, ticks in flight get --grace to finish and are then recorded `aborted`
with their calls, the run says it was stopped, and the process exits 0 within grace + 5 s,
leaving no temporary data behind. A second signal stops at once, still recording.

The process and its signals are the point, so each run is the real console script in a
subprocess, against a product served in a process of its own whose every tool answers after
a second: long enough that ticks are in flight when the signal comes.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_runner.util.durations import parse_duration
from persona_runner.util.errors import UserError
from tests.cli_helpers import ADMIN, ALL_TOOLS, SCRIPT, cli, one_line_error, rows, served_calls, served_product

#: Personas that share no space, so they tick side by side, two at a time.
PERSONAS = ("ravi", "yuki", "lena", "margaret")
SLOW_TOOLS = [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}=1s")]
#: What a stop may take beyond the grace: recording what was cut off, closing sessions, exiting.
STOP_MARGIN = 5.0
FINISHED = ("ok", "rating_unparsed")


@pytest.fixture(scope="module")
def slow_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One served product for the module, seeded once; every tool answers after a second."""
    tmp_path = tmp_path_factory.mktemp("product")
    with served_product(tmp_path, *SLOW_TOOLS) as (url, _):
        seeded = cli("seed", "--target", url, "--admin-token", ADMIN, "--db", str(tmp_path / "seed.db"))
        assert seeded.returncode == 0, seeded.stderr
        yield url


def start_run(db: Path, *flags: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`persona-runner run` on the chosen personas, two at a time, as a process of its own."""
    personas = [flag for name in PERSONAS for flag in ("--persona", name)]
    return subprocess.Popen(
        [SCRIPT, "run", *personas, "--concurrency", "2", "--db", str(db), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def settled_calls(url: str) -> float:
    """The product's count of answered calls once the calls an earlier test left in flight have
    ended (its tools take a second), so that what the count gains from here is this test's run."""
    last = served_calls(url)
    while True:
        time.sleep(1.5)
        now = served_calls(url)
        if now == last:
            return now
        last = now


def await_calls(url: str, before: float, count: int) -> None:
    """Wait until the product has answered `count` more calls than `before`: ticks are in flight."""
    deadline = time.monotonic() + 90
    while served_calls(url) < before + count:
        assert time.monotonic() < deadline, "the run made no calls"
        time.sleep(0.1)


def stop_run(run: subprocess.Popen[str], *signals: signal.Signals, between: float = 0.5) -> tuple[float, str]:
    """Send the signals, `between` seconds apart; the seconds from the first to the exit, and stderr."""
    started = time.monotonic()
    for number, signum in enumerate(signals):
        if number:
            time.sleep(between)
        run.send_signal(signum)
    _, stderr = run.communicate(timeout=120)
    return time.monotonic() - started, stderr


def stop_line(stderr: str, name: str) -> tuple[int, set[str], int]:
    """The one line saying the run stopped on signal `name`, nothing going wrong beside it, read
    as (ticks finished, personas aborted, ticks never started)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1, stderr
    said = re.fullmatch(
        rf"stopped by {name}: ticks (\d+) finished, (\d+) aborted(?: \((.*)\))?, (\d+) never started", lines[0]
    )
    assert said, lines[0]
    aborted = set(said[3].split(", ")) if said[3] else set()
    assert len(aborted) == int(said[2])
    return int(said[1]), aborted, int(said[4])


def assert_recorded_whole(db: Path, name: str) -> list[tuple[str, str]]:
    """The run is `stopped` by `name` and every tick it started is on record with all its calls;
    the ticks as (persona, status)."""
    [(status, ended, stopped_by)] = rows(db, "SELECT status, ended_at, json_extract(config, '$.stopped_by') FROM runs")
    assert (status, stopped_by) == ("stopped", name) and ended
    ticks = rows(db, "SELECT tick_id, persona_name, status, tool_calls FROM ticks ORDER BY persona_name")
    actions = dict(rows(db, "SELECT tick_id, COUNT(*) FROM persona_actions GROUP BY tick_id"))
    assert {tick_id: calls for tick_id, _, _, calls in ticks} == {
        tick_id: actions.get(tick_id, 0) for tick_id, *_ in ticks
    }
    assert rows(db, "SELECT COUNT(*) FROM transcripts") == [(len(ticks),)]
    return [(persona, status) for _, persona, status, _ in ticks]


def test_ticks_in_flight_finish_within_the_grace_and_none_starts_after(tmp_path: Path, slow_product: str) -> None:
    db = tmp_path / "r.db"
    before = settled_calls(slow_product)
    run = start_run(db, "--target", slow_product, "--max-turns", "3", "--grace", "30s")
    await_calls(slow_product, before, 2)
    elapsed, stderr = stop_run(run, signal.SIGTERM)
    assert run.returncode == 0, stderr
    assert elapsed < 30 + STOP_MARGIN
    ticks = assert_recorded_whole(db, "SIGTERM")
    assert len(ticks) == 2 and all(status in FINISHED for _, status in ticks)
    assert stop_line(stderr, "SIGTERM") == (2, set(), 2)
    # Every call the product answered for the run is on record.
    assert rows(db, "SELECT COUNT(*) FROM persona_actions") == [(served_calls(slow_product) - before,)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ticks_still_in_flight_when_the_grace_ends_are_aborted_with_their_calls(
    tmp_path: Path, slow_product: str, signum: signal.Signals
) -> None:
    db = tmp_path / "r.db"
    before = settled_calls(slow_product)
    run = start_run(db, "--target", slow_product, "--grace", "1s")
    await_calls(slow_product, before, 2)
    elapsed, stderr = stop_run(run, signum)
    assert run.returncode == 0, stderr
    assert elapsed < 1 + STOP_MARGIN
    ticks = assert_recorded_whole(db, signum.name)
    assert len(ticks) == 2 and all(status == "aborted" for _, status in ticks)
    assert all("stopped" in error for (error,) in rows(db, "SELECT error FROM ticks"))
    # Each was waiting on the product when cut off: that call is on record too, as an error.
    last_calls = rows(
        db,
        "SELECT a.result FROM persona_actions a JOIN ticks t USING (tick_id)"
        " WHERE a.seq = t.tool_calls - 1 ORDER BY t.persona_name",
    )
    assert last_calls == [("error",), ("error",)]
    assert stop_line(stderr, signum.name) == (0, {persona for persona, _ in ticks}, 2)


def test_a_second_signal_stops_at_once_and_still_records(tmp_path: Path, slow_product: str) -> None:
    db = tmp_path / "r.db"
    before = settled_calls(slow_product)
    run = start_run(db, "--target", slow_product, "--grace", "10m")
    await_calls(slow_product, before, 2)
    elapsed, stderr = stop_run(run, signal.SIGTERM, signal.SIGTERM)
    assert run.returncode == 0, stderr
    assert elapsed < STOP_MARGIN
    ticks = assert_recorded_whole(db, "SIGTERM")
    assert len(ticks) == 2 and all(status == "aborted" for _, status in ticks)
    assert stop_line(stderr, "SIGTERM") == (0, {persona for persona, _ in ticks}, 2)


@pytest.mark.parametrize("delay", ["1s", "60s"], ids=["slow-tools", "hanging-tools"])
def test_the_embedded_product_leaves_no_temporary_data_when_stopped(tmp_path: Path, delay: str) -> None:
    """Calls still hanging in the embedded product when the grace ends do not hold the exit either."""
    db, scratch = tmp_path / "r.db", tmp_path / "tmp"
    scratch.mkdir()
    delays = [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}={delay}")]
    run = start_run(db, *delays, "--grace", "1s", env={"TMPDIR": str(scratch)})
    deadline = time.monotonic() + 90
    while not _run_begun(db):  # the embedded product is up and seeded: ticks are starting
        assert time.monotonic() < deadline and run.poll() is None, "the run did not begin"
        time.sleep(0.1)
    assert [path.name.startswith("persona-product-") for path in scratch.iterdir()] == [True]
    time.sleep(1.5)  # a call or two into the ticks
    elapsed, stderr = stop_run(run, signal.SIGTERM)
    assert run.returncode == 0, stderr
    assert elapsed < 1 + STOP_MARGIN
    assert "Traceback" not in stderr
    ticks = assert_recorded_whole(db, "SIGTERM")
    finished, aborted, never_started = stop_line(stderr, "SIGTERM")
    assert len(ticks) == finished + len(aborted) and finished + len(aborted) + never_started == len(PERSONAS)
    assert list(scratch.iterdir()) == []


def test_a_store_that_does_not_answer_cannot_hold_the_stop_and_loses_nothing(tmp_path: Path, slow_product: str) -> None:
    """The results store locked from the moment of the stop: the writes of the end wait for it within one
    shared limit, the process exits within grace + 5 s saying the run's end is not on record, and the
    ticks cut off stay on record with the calls they streamed until the next process marks them."""
    db = tmp_path / "r.db"
    before = settled_calls(slow_product)
    run = start_run(db, "--target", slow_product, "--grace", "1s")
    await_calls(slow_product, before, 4)
    time.sleep(1.5)  # the calls streamed (about a second behind)
    locker = sqlite3.connect(db, timeout=30)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        elapsed, stderr = stop_run(run, signal.SIGTERM)
    finally:
        locker.rollback()
        locker.close()
    assert elapsed < 1 + STOP_MARGIN
    assert run.returncode == 1 and "could not record the end of run" in stderr and "Traceback" not in stderr
    ticks = rows(db, "SELECT tick_id, status FROM ticks")
    assert len(ticks) == 2 and {status for _, status in ticks} <= {"running", "aborted"}
    streamed = dict(rows(db, "SELECT tick_id, COUNT(*) FROM persona_actions GROUP BY tick_id"))
    assert sum(streamed.values()) >= 2
    # The next process to tick on the store finds what the stopped one left running.
    again = cli("run", "--target", slow_product, "--persona", "ravi", "--max-turns", "1", "--db", str(db))
    assert again.returncode == 0, again.stderr
    kept = dict(rows(db, "SELECT tick_id, status FROM ticks"))
    assert {kept[tick_id] for tick_id, _ in ticks} <= {"interrupted", "aborted"}


def _run_begun(db: Path) -> bool:
    try:
        return rows(db, "SELECT COUNT(*) FROM runs") == [(1,)]
    except sqlite3.Error:  # no store yet, or its tables are being made
        return False


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("2m", 120.0), ("30", 30.0), ("1.5h", 5400.0), ("500ms", 0.5), (" 0 ", 0.0), ("8h", 28800.0)],
)
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, "--grace") == seconds


@pytest.mark.parametrize("text", ["", "s", "-5s", "2x", "1e3", "1 minute", "9" * 400])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(UserError, match=r"--grace .* is not a duration: write it like 30s, 2m, 1h"):
        parse_duration(text, "--grace")


def test_a_bad_grace_is_one_usage_line(tmp_path: Path) -> None:
    done = cli("run", "--grace", "soon", "--db", str(tmp_path / "r.db"))
    assert done.returncode == 2
    assert one_line_error(done.stderr) == (
        "error: --grace 'soon' is not a duration: write it like 30s, 2m, 1h or a number of seconds"
    )
    assert not (tmp_path / "r.db").exists()
