"""`soak`: each persona ticks whenever it is due, as one run, for as long as asked.

The schedule's rules are read at stated moments (the clock is a parameter). The soak itself
runs for real: the command line against a served product or the embedded one and a SQLite
store, then as a process of its own stopped by SIGTERM against a served product whose every
tool is slow.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.commands.catalog_file import catalog_from
from persona_runner.credentials import seed_secret
from persona_runner.drivers.scripted import ScriptedDriver
from persona_runner.run.metrics import RunnerMetrics
from persona_runner.run.runner import RunSettings
from persona_runner.run.soak import Schedule, SoakSettings, execute_soak, tick_seed
from persona_runner.run.stopping import Stop
from persona_runner.run.tick import TickPlan
from persona_runner.store.db import open_store
from persona_runner.targets.spec import TargetSpec
from tests.cli_helpers import ADMIN, ALL_TOOLS, SCRIPT, cli, one_line_error, rows, served_calls, served_product
from tool_registry.server import free_port

CATALOG: Catalog = catalog_from(None)
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
EVERY = timedelta(seconds=2)
#: Six personas: maya and sam share a flat, helena and kofi a band; the others share nothing.
SOAKERS = ("maya", "sam", "helena", "kofi", "ravi", "yuki")


def persona(name: str) -> PersonaSpec:
    return next(p for p in CATALOG.personas if p.name == name)


def schedule(*names: str, every: timedelta | None = EVERY, history: dict | None = None) -> Schedule:
    return Schedule([persona(n) for n in names], CATALOG.spaces, every=every, history=history or {})


def names(personas: list[PersonaSpec]) -> list[str]:
    return [p.name for p in personas]


def test_personas_that_never_ticked_are_all_due_at_once_but_one_per_shared_space() -> None:
    plan = schedule(*SOAKERS)
    assert names(plan.ready(NOON)) == ["maya", "helena", "ravi", "yuki"]


def test_a_persona_in_flight_holds_back_itself_and_its_space_mates_only() -> None:
    plan = schedule(*SOAKERS)
    plan.started(persona("maya"), NOON)
    assert names(plan.ready(NOON)) == ["helena", "ravi", "yuki"]
    plan.ended(persona("maya"), "ok")
    # maya ticked just now: sam, waiting as long as she did, goes first.
    assert names(plan.ready(NOON)) == ["sam", "helena", "ravi", "yuki"]


def test_the_next_tick_falls_due_one_interval_after_the_last_start() -> None:
    plan = schedule("ravi")
    plan.started(persona("ravi"), NOON)
    assert plan.ready(NOON) == [] and plan.wake_at(NOON) is None  # in flight: the end of its tick wakes us
    plan.ended(persona("ravi"), "ok")
    wake = plan.wake_at(NOON + timedelta(seconds=1))
    assert wake is not None and NOON + EVERY < wake < NOON + EVERY + timedelta(milliseconds=1)
    assert plan.ready(NOON + EVERY) == []
    assert names(plan.ready(wake)) == ["ravi"]
    assert plan.next_up(NOON) == (persona("ravi"), wake)


def test_without_every_the_catalog_cadence_and_the_stores_history_decide() -> None:
    ravi = persona("ravi")
    earlier = {"ravi": [(NOON - timedelta(hours=2), "ok")]}
    plan = schedule("ravi", every=None, history=earlier)
    expected = {"hourly": NOON, "daily": NOON + timedelta(hours=22), "weekdays": NOON + timedelta(hours=22)}
    assert abs(plan.when(ravi, NOON).at - expected[ravi.tick_cadence]) < timedelta(milliseconds=1)


def test_a_failed_tick_backs_off_instead_of_coming_round_at_once() -> None:
    plan = schedule("ravi", every=timedelta(hours=1))
    plan.started(persona("ravi"), NOON)
    plan.ended(persona("ravi"), "failed")
    due = plan.when(persona("ravi"), NOON)
    assert due.reason == "backoff" and due.failures == 1 and due.at < NOON + timedelta(hours=1)


def test_each_tick_has_its_own_id_and_a_seed_fixed_by_the_runs() -> None:
    base = dict(
        run_id="r1",
        persona=persona("ravi").to_profile(),
        cadence="daily",
        password="-",
        tick_date=date(2026, 11, 25),
        seed=1,
        max_turns=3,
        timeout=10.0,
    )
    ids = {TickPlan(**base, number=n).tick_id for n in (1, 2)}  # type: ignore[arg-type]
    assert ids == {"r1:ravi:2026-11-25:1", "r1:ravi:2026-11-25:2"}
    assert tick_seed(7, "ravi", 1) == tick_seed(7, "ravi", 1)
    seeds = {tick_seed(7, "ravi", 1), tick_seed(7, "ravi", 2), tick_seed(8, "ravi", 1), tick_seed(7, "yuki", 1)}
    assert len(seeds) == 4


def intervals(db: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for name, started, ended in rows(db, "SELECT persona_name, started_at, ended_at FROM ticks ORDER BY started_at"):
        spans.setdefault(name, []).append((datetime.fromisoformat(started), datetime.fromisoformat(ended)))
    return spans


def overlap(spans: list[tuple[datetime, datetime]]) -> bool:
    ordered = sorted(spans)
    return any(later[0] < earlier[1] for earlier, later in pairwise(ordered))


#: The soak of the issue: twenty personas every 2 s for 12 s. They share no space (the catalog written for it
#: has no spaces), so each keeps its own cadence.
CROWD = 20
DURATION = timedelta(seconds=12)
#: How far a tick's recorded start may be from when it fell due. The scheduler shares one event loop with twenty
#: ticks in flight: it starts a due persona once it gets round to it (after the previous tick's end is written),
#: the start is stamped when the tick's task first runs, and the next due time counts from the scheduler's moment,
#: not from that stamp. So a start may look late, or early by as much as the previous one was stamped late. A few
#: milliseconds on an idle machine; measured up to 0.9 s at a load of 4 to 5 on two cores, in the first round above
#: all, when all twenty start together on a cold product. Below EVERY, so a persona that skipped a due tick (a gap
#: of two intervals after a tick that ended in time) is caught.
SLACK = timedelta(seconds=1.5)
#: Each persona's ticks. At most one per interval, the first no earlier than the moment --duration counts from:
#: 0, 2, ..., 10 s, and a seventh would be due at 12 s, when the soak has ended. One fewer when lateness (each
#: start up to SLACK after it was due, and ticks longer than EVERY on a starved machine) adds up over the five
#: intervals to more than the ~2 s between the sixth tick's due time and the end. The tick in flight at the end
#: is counted: it has the default grace (30 s) to finish and is recorded like the others. (Past a load of about 6
#: on two cores, a round of twenty ticks takes the runner longer than EVERY: no scheduler keeps this cadence there.)
MOST_TICKS = DURATION // EVERY
FEWEST_TICKS = MOST_TICKS - 1


def assert_on_cadence(name: str, ticked: list[tuple[datetime, datetime]], ends_at: datetime) -> None:
    """`name`'s ticks, never two at once, each started when the persona was next due (EVERY after the previous
    start, or when the previous tick ended if it took longer), SLACK either side as stamped; and none
    missing at the end: the persona was not due again SLACK before the soak ended."""
    assert not overlap(ticked), name
    ordered = sorted(ticked)
    for (start, end), (next_start, _) in pairwise(ordered):
        due = max(start + EVERY, end)
        assert start + EVERY - SLACK <= next_start <= due + SLACK, (name, start, end, next_start)
    last_start, last_end = ordered[-1]
    assert max(last_start + EVERY, last_end) + SLACK >= ends_at, (name, "a tick is missing at the end")


def test_a_soak_ticks_each_persona_as_often_as_it_is_due_as_one_run(tmp_path: Path) -> None:
    """Twenty personas every 2 s for 12 s: each ticks at 0, 2, 4, 6, 8 and 10 s, never two at once, as one run."""
    db = tmp_path / "soak.db"
    crowd = CATALOG.scaled(CROWD, "soak.test")
    catalog = tmp_path / "catalog.json"
    catalog.write_text(Catalog(version=1, personas=crowd.personas).model_dump_json(by_alias=True, exclude_none=True))
    # A product of its own, as a nightly soak's staging build: the runner's process then spends its CPU on the
    # runner alone, about a third of a core for twenty personas every 2 s (the embedded product would add half as
    # much again under the same lock), which leaves a loaded machine some room to keep the cadence.
    with served_product(tmp_path) as (url, _):
        done = cli(
            "soak", "--catalog", str(catalog), "--target", url, "--admin-token", ADMIN,
            "--duration", f"{DURATION.seconds}s", "--every", f"{EVERY.seconds}s", "--concurrency", str(CROWD),
            "--max-turns", "2", "--db", str(db), "--label", "nightly",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [(run_id, status, label, config)] = rows(db, "SELECT run_id, status, label, config FROM runs")
    soaked = json.loads(config)["soak"]
    assert (status, label, soaked["every"]) == ("ok", "nightly", EVERY.total_seconds())
    assert f"next: persona-runner report --run {run_id}" in done.stdout
    ends_at = datetime.fromisoformat(soaked["ends_at"]).replace(tzinfo=None)  # the store's times are naive UTC
    spans = intervals(db)
    assert set(spans) == {p.name for p in crowd.personas}
    for name, ticked in spans.items():
        assert FEWEST_TICKS <= len(ticked) <= MOST_TICKS, (name, len(ticked))
        assert_on_cadence(name, ticked, ends_at)
    assert rows(db, "SELECT COUNT(DISTINCT tick_id), COUNT(*) FROM ticks") == [(sum(map(len, spans.values())),) * 2]
    assert rows(db, "SELECT COUNT(*) FROM ticks WHERE status NOT IN ('ok', 'rating_unparsed')") == [(0,)]
    assert cli("report", "--run", run_id, "--db", str(db)).returncode == 0


def test_space_mates_never_tick_side_by_side(tmp_path: Path) -> None:
    db = tmp_path / "soak.db"
    chosen = [flag for name in SOAKERS for flag in ("--persona", name)]
    done = cli(
        "soak", *chosen, "--duration", "5s", "--every", "1s", "--concurrency", "6", "--max-turns", "2",
        "--db", str(db),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = intervals(db)
    for mates in (("maya", "sam"), ("helena", "kofi")):
        together = [span for name in mates for span in spans.get(name, [])]
        assert len(together) >= 2 and not overlap(together), mates


@pytest.mark.parametrize("command", [("run",), ("soak", "--duration", "1s", "--every", "1s")], ids=["run", "soak"])
def test_target_embedded_names_the_default_a_fresh_reference_product(tmp_path: Path, command: tuple[str, ...]) -> None:
    db = tmp_path / "embedded.db"
    done = cli(*command, "--target", "embedded", "--persona", "ravi", "--max-turns", "2", "--db", str(db))
    assert done.returncode == 0, done.stderr
    [(target,)] = rows(db, "SELECT target FROM runs")
    assert target.startswith("http://127.0.0.1:")  # started on a free loopback port, seeded, gone now
    ticked = [status for (status,) in rows(db, "SELECT status FROM ticks")]
    assert ticked and set(ticked) <= {"ok", "rating_unparsed"}
    assert "URL|embedded" in cli(command[0], "--help").stdout


@pytest.mark.parametrize("command", ["run", "soak"])
def test_a_target_that_is_neither_a_url_nor_embedded_is_one_usage_line(tmp_path: Path, command: str) -> None:
    done = cli(command, "--target", "embeded", "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2
    assert "--target 'embeded'" in one_line_error(done.stderr) and "or give embedded" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_duration_and_until_exclude_each_other(tmp_path: Path) -> None:
    done = cli("soak", "--duration", "1h", "--until", "06:00", "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2
    assert "--duration and --until" in one_line_error(done.stderr)


def test_sigterm_records_the_soak_and_every_tick_in_flight_and_exits_within_the_grace(tmp_path: Path) -> None:
    grace = 2.0
    slow = [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}=1s")]
    with served_product(tmp_path, *slow) as (url, _):
        db = tmp_path / "soak.db"
        port = free_port()
        soaking = subprocess.Popen(
            [SCRIPT, "soak", "--target", url, "--admin-token", ADMIN, "--every", "1s", "--concurrency", "3",
             "--max-turns", "8", "--grace", f"{grace:g}s", "--db", str(db), "--metrics-port", str(port),
             "--persona", "ravi", "--persona", "yuki", "--persona", "lena", "--persona", "margaret"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while served_calls(url) < 3:
            assert time.monotonic() < deadline and soaking.poll() is None, "the soak made no calls"
            time.sleep(0.1)
        # While it runs, the soak says so to a probe and counts its ticks in flight for a scraper.
        health = httpx2.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert "persona_runner_ticks_in_flight 3.0" in httpx2.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        asked = time.monotonic()
        soaking.send_signal(signal.SIGTERM)
        _, stderr = soaking.communicate(timeout=60)
        took = time.monotonic() - asked
        answered = served_calls(url)
    assert soaking.returncode == 0, stderr
    assert took < grace + 5
    assert "Traceback" not in stderr
    [(status, stopped_by, ended)] = rows(db, "SELECT status, json_extract(config, '$.stopped_by'), ended_at FROM runs")
    assert (status, stopped_by) == ("stopped", "SIGTERM") and ended
    ticks = rows(db, "SELECT tick_id, status, tool_calls FROM ticks")
    assert ticks and {s for _, s, _ in ticks} == {"aborted"}  # 8 calls of 1 s each: none ends within 2 s
    actions = dict(rows(db, "SELECT tick_id, COUNT(*) FROM persona_actions GROUP BY tick_id"))
    assert all(calls == actions.get(tick_id, 0) for tick_id, _, calls in ticks)
    # Every call the product answered is on record; beyond them, at most the one call each tick
    # was waiting on when it was cut off (recorded as an error; the product may not count it).
    recorded = sum(calls for *_, calls in ticks)
    assert answered <= recorded <= answered + len(ticks)
    assert "stopped by SIGTERM" in stderr


def test_the_calls_of_ticks_a_stop_cut_off_are_in_the_soaks_metrics_as_in_its_store(tmp_path: Path) -> None:
    """Every tool answers after a second and a tick makes eight calls: the stop after 3 s cuts both ticks off."""
    slow = [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}=1s")]
    db = tmp_path / "soak.db"
    metrics, stop = RunnerMetrics(), Stop(grace=0.5)
    with served_product(tmp_path, *slow) as (url, _):
        assert cli("seed", "--target", url, "--admin-token", ADMIN, "--db", str(db)).returncode == 0
        store = open_store(str(db))
        settings = SoakSettings(RunSettings(target=TargetSpec.product(url), driver="scripted", max_turns=8))
        personas = [persona("ravi"), persona("yuki")]

        async def soak_until_stopped() -> None:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    partial(
                        execute_soak,
                        settings,
                        personas,
                        secret=seed_secret(),
                        store=store,
                        make_driver=lambda _p: ScriptedDriver(),
                        stop=stop,
                        metrics=metrics,
                    )
                )
                await anyio.sleep(3)
                stop.take(signal.SIGTERM)

        try:
            anyio.run(soak_until_stopped)
        finally:
            store.dispose()
    samples = [s for family in text_string_to_metric_families(metrics.render()[0].decode()) for s in family.samples]
    counted = sum(s.value for s in samples if s.name == "persona_runner_tool_calls_total")
    [(aborted, recorded)] = rows(db, "SELECT COUNT(*), SUM(tool_calls) FROM ticks WHERE status = 'aborted'")
    assert aborted == 2 and recorded > 0
    assert counted == recorded == rows(db, "SELECT COUNT(*) FROM persona_actions")[0][0]
    assert {s.labels["status"]: s.value for s in samples if s.name == "persona_runner_ticks_total"} == {"aborted": 2}
