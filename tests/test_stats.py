"""One percentile rule: what the scripted personas compute in Python is what the report computes in SQL."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from random import Random

import pytest
from sqlmodel import Session

from persona_runner.reporting.actions import PERCENTILES
from persona_runner.reporting.aggregate import build_report, runs_scope
from persona_runner.store.db import open_store
from persona_runner.store.models import PersonaAction, Run, Tick
from persona_runner.util.stats import percentile

_RNG = Random(3)
#: Latencies per tool, chosen where ranking and interpolating part ways: one call, an outlier among few,
#: ties and fractions inside the same millisecond (SQLite ranks within whole milliseconds), a long tail.
LATENCIES = {
    "lab.one": [42.0],
    "lab.two": [20.0, 1100.0],
    "lab.outlier": [20.0, 25.0, 1100.0],
    "lab.ties": [5.2, 5.7, 5.1, 6.0, 6.9, 1000.5, 7.3, 7.3, 6.0],
    "lab.tail": [round(_RNG.lognormvariate(4, 1), 3) for _ in range(250)],
}


def test_the_report_shows_the_percentiles_the_python_rule_gives(store_url: str) -> None:
    engine = open_store(store_url)
    now = datetime.now(UTC)
    rows: list[Run | Tick | PersonaAction] = [
        Run(run_id="r1", started_at=now, target="http://127.0.0.1/mcp", driver="scripted"),
        Tick(
            tick_id="t1",
            run_id="r1",
            persona_id="p1",
            persona_name="p1",
            tick_date=now.date().isoformat(),
            status="ok",
            driver="scripted",
        ),
    ]
    calls = [(tool, latency) for tool, latencies in LATENCIES.items() for latency in latencies]
    rows += [
        PersonaAction(
            id=f"t1:{seq}",
            persona_id="p1",
            tick_id="t1",
            run_id="r1",
            seq=seq,
            tool_name=tool,
            module="lab",
            input_hash="0" * 64,
            result="ok",
            latency_ms=latency,
            created_at=now,
        )
        for seq, (tool, latency) in enumerate(calls)
    ]
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()
    with engine.connect() as conn:
        report = build_report(engine, runs_scope(conn, ["r1"]), compare=False)

    shown = {tool.tool: tool for module in report.modules for tool in module.tools}
    assert shown.keys() == LATENCIES.keys()
    for tool, latencies in LATENCIES.items():
        for name, fraction in PERCENTILES.items():
            assert getattr(shown[tool], name) == pytest.approx(percentile(latencies, fraction), rel=1e-12), (tool, name)


def test_percentile_interpolates_between_ranked_values() -> None:
    assert percentile([1500.0, 2500.0, 900.0], 0.95) == pytest.approx(2400.0)  # 1,500 + 0.9 * (2,500 - 1,500)
    assert percentile([20.0, 20.0, 1100.0], 0.95) == pytest.approx(992.0)  # one slow call among three: not a slow p95
    assert percentile([7.0], 0.95) == 7.0
    assert (percentile([3.0, 1.0, 2.0], 0.0), percentile([3.0, 1.0, 2.0], 1.0)) == (1.0, 3.0)


def test_percentile_is_the_inclusive_quantile_of_the_standard_library() -> None:
    latencies = LATENCIES["lab.tail"]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    for centile in (50, 95, 99):
        assert percentile(latencies, centile / 100) == pytest.approx(cuts[centile - 1])


def test_percentile_refuses_what_has_no_percentile() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.95)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        percentile([1.0], 95)
