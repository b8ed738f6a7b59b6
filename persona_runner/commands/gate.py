"""`persona-runner gate`: block a release when the personas' experience got worse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from persona_runner.commands.atomic_files import write_all_atomic
from persona_runner.commands.options import DbOption, store_from
from persona_runner.reporting.aggregate import build_report, runs_scope
from persona_runner.reporting.gate import (
    GateResult,
    Thresholds,
    compare,
    evidence_lines,
    load_baseline_file,
    render_junit,
    render_markdown,
    weakest_passes,
)
from persona_runner.reporting.model import Report
from persona_runner.util.errors import UserError


def _is_file(baseline: str) -> bool:
    return baseline.endswith(".json") or Path(baseline).is_file()


def _explain(result: GateResult) -> list[str]:
    """What a CI log should show: the verdict, every failure, the tools behind them, the passes too weak to trust
    much, and what the gate could not judge, one line per kind of check, with what it would take to judge it."""
    lines = [f"gate: {result.verdict}: candidate {result.candidate} against baseline {result.baseline}"]
    lines += [f"  FAIL {check.name}: {check.message}" for check in result.with_status("fail")]
    lines += [f"  {words}: {', '.join(tools)}" for words, tools in result.named_tools()]
    weak = weakest_passes(result)
    lines += [f"  {weak}"] if weak else []
    lines += [f"  {line}" for line in evidence_lines(result)]
    return lines


def _require_baseline(report: Report) -> None:
    """A baseline without calls or ratings gives nothing to compare with: the wrong run was picked."""
    if report.is_empty:
        raise UserError(
            f"baseline {report.scope.label} recorded no tool calls and no ratings; "
            "pick another run (`persona-runner runs list`)"
        )


def _require_candidate(report: Report) -> None:
    """A candidate without a single tick never ran; one whose ticks all failed did, and fails the gate."""
    if report.totals.ticks == 0:
        raise UserError(
            f"candidate {report.scope.label} recorded no ticks; pick another run (`persona-runner runs list`)"
        )


def gate(
    baseline: Annotated[
        str,
        typer.Option(
            "--baseline",
            metavar="RUN_ID|FILE",
            help="Baseline: a run id, or a JSON file written by `runs export`.",
            show_default=False,
        ),
    ],
    candidate: Annotated[
        str, typer.Option("--candidate", metavar="RUN_ID", help="The run to judge.", show_default=False)
    ],
    max_error_rate_increase: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="FRACTION",
            help="Largest allowed rise in error rate, and in the share of failed ticks, as a fraction "
            "(0.05 = 5 points); a larger rise fails only if also beyond noise.",
        ),
    ] = 0.05,
    max_rating_drop: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="POINTS",
            help="Largest allowed drop in mean rating; a larger drop fails only if it is also beyond noise.",
        ),
    ] = 0.5,
    max_p95_latency_ratio: Annotated[
        float, typer.Option(min=0.0, metavar="RATIO", help="Largest allowed candidate/baseline p95 latency per tool.")
    ] = 1.5,
    min_coverage: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="FRACTION",
            help="Smallest share of a module's offered tools the candidate must use.",
        ),
    ] = 0.8,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit", metavar="PATH", help="Also write JUnit XML: one test case per check.", show_default=False
        ),
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option("--markdown", metavar="PATH", help="Also write a Markdown summary table.", show_default=False),
    ] = None,
    require_evidence: Annotated[
        bool,
        typer.Option(
            "--require-evidence",
            metavar="",
            help="Fail when a module of the baseline could not be judged at all (too little data on every check):"
            " a failing check of its own, in the verdict, the JUnit and the Markdown.",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Compare a candidate run with a baseline: its ticks, then per module and per tool.
    Exit 0 pass, 1 fail, 2 usage error.

    Each check passes, fails, or says it had too little data; a pass says the smallest
    worsening it could have caught, and the last line how many repeats (`run --repeat`)
    the checks without enough data need.

    Example: persona-runner gate --baseline baseline.json --candidate 20261122-041249-b306a8 --junit gate.xml
    """
    engine = store_from(db, create=False)
    with engine.connect() as conn:
        candidate_scope = runs_scope(conn, [candidate])
        baseline_scope = None if _is_file(baseline) else runs_scope(conn, [baseline])
    if baseline_scope is None:
        before = load_baseline_file(Path(baseline))
        label = f"{Path(baseline).name} ({before.scope.label})"
    else:
        before = build_report(engine, baseline_scope, compare=False)
        label = before.scope.label
    _require_baseline(before)
    after = build_report(engine, candidate_scope, compare=False)
    _require_candidate(after)
    limits = Thresholds(
        max_error_rate_increase=max_error_rate_increase,
        max_rating_drop=max_rating_drop,
        max_p95_latency_ratio=max_p95_latency_ratio,
        min_coverage=min_coverage,
    )
    result = compare(before, after, limits, baseline_label=label, require_evidence=require_evidence)
    # Both files or neither: CI never finds one file of the verdict and not the other.
    write_all_atomic(
        [(path, render(result)) for path, render in ((junit, render_junit), (markdown, render_markdown)) if path]
    )
    typer.echo("\n".join(_explain(result)))
    if not result.passed:
        raise typer.Exit(1)  # the verdict is the exit code CI reads
