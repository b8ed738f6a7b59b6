"""The HTML report's charts: a trend per module with its CI band and error rate, latency bars with an axis.

Reports are built by hand from the report model: the charts only read it, and
a hand-built report states exactly the shape each check needs (a gap, one
point, a hostile name). The SVG is cut out of the page and parsed as XML, so
structure is checked, not strings.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Literal

from persona_runner.reporting.html import _anchor, render_html
from persona_runner.reporting.model import (
    ModuleReport,
    RatingStats,
    Report,
    RunInfo,
    Scope,
    ToolStats,
    Totals,
    TrendPoint,
)
from persona_runner.reporting.svg import bucket_labels, nice_ticks, shorten
from tests.test_report import parse_html

HOSTILE = '<script>alert("x")</script>'


def point(bucket: str, mean: float | None, calls: int = 10, errors: int = 0, n: int = 4) -> TrendPoint:
    if mean is None:
        rating = RatingStats()
    else:
        rating = RatingStats(n=n, mean=mean, sd=0.5, ci_low=max(1.0, mean - 0.6), ci_high=min(5.0, mean + 0.6))
    return TrendPoint(
        bucket=bucket, rating=rating, calls=calls, errors=errors, error_rate=errors / calls if calls else None
    )


def tool(name: str, p50: float, p95: float, p99: float, calls: int = 10) -> ToolStats:
    return ToolStats(
        tool=name,
        module=name.split(".")[0],
        calls=calls,
        errors=0,
        error_rate=0.0,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
    )


def module(name: str, trend: Sequence[TrendPoint], tools: Sequence[ToolStats] = ()) -> ModuleReport:
    calls = sum(p.calls for p in trend)
    errors = sum(p.errors for p in trend)
    return ModuleReport(
        module=name,
        calls=calls,
        errors=errors,
        rating=RatingStats(n=8, mean=4.0, sd=0.5, ci_low=3.6, ci_high=4.4),
        error_rate=errors / calls if calls else None,
        tools=list(tools),
        tools_used=[t.tool for t in tools],
        tools_offered=[t.tool for t in tools],
        coverage=1.0 if tools else None,
        coverage_basis="offered",
        actual_share=None,
        intended_share=None,
        top_errors=[],
        notes=[],
        trend=list(trend),
    )


def report(*modules: ModuleReport, trend_by: Literal["day", "run"] = "day", runs: Sequence[RunInfo] = ()) -> Report:
    return Report(
        generated_at=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        store="sqlite:///results.db",
        scope=Scope(kind="window", label="last 7 days"),
        previous=None,
        trend_by=trend_by,
        totals=Totals(
            calls=sum(m.calls for m in modules),
            errors=sum(m.errors for m in modules),
            ticks=3,
            ratings=8,
            personas=2,
            tick_statuses={"ok": 3},
        ),
        changes=[],
        modules=list(modules),
        personas=[],
        runs=list(runs),
    )


def run_info(run_id: str, label: str | None) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        label=label,
        target="http://127.0.0.1/mcp",
        started_at=datetime(2026, 12, 1, tzinfo=UTC),
        status="ok",
    )


def charts(page: str, kind: Literal["trend", "latency"]) -> list[ET.Element]:
    """Every chart of one kind on the page, parsed as XML (an inline SVG must be well-formed on its own)."""
    return [ET.fromstring(svg) for svg in re.findall(rf'<svg class="chart {kind}".*?</svg>', page, flags=re.S)]


def article(page: str, anchor: str) -> str:
    match = re.search(rf'<article id="{re.escape(anchor)}">.*?</article>', page, flags=re.S)
    assert match, anchor
    return match[0]


def by_class(svg: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in svg.iter(tag) if css_class in (e.get("class") or "").split()]


def texts(element: ET.Element) -> list[str]:
    """The visible text of each <text>, without the <title> some carry for the full name."""
    return [(e.text or "") + "".join(child.tail or "" for child in e) for e in element.iter("text")]


def points(svg: ET.Element, group: str) -> list[ET.Element]:
    """The markers of one series: circles for ratings, squares for error rates."""
    (found,) = by_class(svg, "g", group)
    return list(found)


def moves(path: ET.Element) -> int:
    return (path.get("d") or "").count("M")


THREE_DAYS = [point("2026-11-20", 4.2, 20, 1), point("2026-11-21", 3.1, 25, 5), point("2026-11-22", 4.6, 18, 0)]
TOOLS = [tool("todo.create", 12, 88, 137), tool("todo.list", 5, 20, 31)]


def test_a_module_with_three_days_gets_a_chart_with_band_line_error_series_axes_and_legend() -> None:
    page = render_html(report(module("todo", THREE_DAYS, TOOLS)))
    (svg,) = charts(article(page, "module-todo"), "trend")
    assert svg.get("viewBox") and svg.get("width") == "100%" and svg.get("height") is None  # scales with the page
    assert svg.get("role") == "img"
    title, desc = svg.find("title"), svg.find("desc")
    assert title is not None and title.text == "todo: mean rating (95% CI) and error rate per day"
    assert desc is not None and "2026-11-21: rating 3.1 [2.5-3.7] from 4; error rate 20% of 25 calls" in (
        desc.text or ""
    )

    (band,) = by_class(svg, "path", "ci-band")
    assert moves(band) == 1 and (band.get("d") or "").endswith("Z") and band.get("fill-opacity")
    (line,) = by_class(svg, "path", "rating-line")
    assert moves(line) == 1 and (line.get("d") or "").count("L") == 2
    (errors,) = by_class(svg, "path", "error-line")
    assert errors.get("stroke-dasharray") and errors.get("stroke") != line.get("stroke")  # apart in grayscale too
    assert len(points(svg, "rating-points")) == 3 and len(points(svg, "error-points")) == 3

    y_labels = [t for axis in by_class(svg, "g", "y-axis") for t in texts(axis)]
    assert y_labels[:6] == ["1", "2", "3", "4", "5", "rating"]
    assert {"0%", "10%", "20%", "errors"} <= set(y_labels)  # 20% of calls at worst: a 0-20% axis, not 0-100%
    (x_axis,) = by_class(svg, "g", "x-axis")
    assert texts(x_axis) == ["Nov 20", "Nov 21", "Nov 22", "day (2026)"]
    (legend,) = by_class(svg, "g", "legend")
    assert texts(legend) == ["mean rating", "95% CI", "error rate"]
    assert "<figcaption>Trend per day</figcaption>" in article(page, "module-todo")


def test_one_point_gets_a_sentence_instead_of_a_chart() -> None:
    page = render_html(report(module("todo", THREE_DAYS[:1], TOOLS), module("notes", [])))
    todo = article(page, "module-todo")
    assert not charts(todo, "trend") and len(charts(todo, "latency")) == 1
    text = "".join(parse_html(todo).text)
    assert "Trend per day: one day so far (2026-11-20: rating 4.2 [3.6-4.8], error rate 5%); a chart needs two." in text
    assert "Trend per day: nothing recorded." in "".join(parse_html(article(page, "module-notes")).text)


def test_a_day_without_ratings_leaves_a_gap_not_a_fall_to_zero() -> None:
    days = [
        point("2026-11-18", 4.0, 10, 1),
        point("2026-11-19", 3.5, 10, 2),
        point("2026-11-20", None, 10, 3),  # calls but no rating
        point("2026-11-21", 4.5, 0, 0),  # a rating but no call: no error rate
        point("2026-11-22", 4.0, 10, 0),
    ]
    page = render_html(report(module("todo", days)))
    (svg,) = charts(page, "trend")
    (line,) = by_class(svg, "path", "rating-line")
    assert moves(line) == 2 and (line.get("d") or "").count("L") == 2  # 18-19, then 21-22
    assert len(points(svg, "rating-points")) == 4
    (band,) = by_class(svg, "path", "ci-band")
    assert moves(band) == 2
    lowest = max(float(c.get("cy") or 0) for c in points(svg, "rating-points"))
    rating_one = next(float(t.get("y") or 0) - 4 for t in by_class(svg, "g", "y-axis")[0].iter("text") if t.text == "1")
    assert lowest < rating_one  # nothing drawn at the bottom of the scale for the missing day
    (errors,) = by_class(svg, "path", "error-line")
    assert moves(errors) == 1 and (errors.get("d") or "").count("L") == 2  # 18-20; 22 alone after the gap
    assert len(points(svg, "error-points")) == 4
    (spark,) = re.findall(r'<svg class="spark".*?</svg>', page)
    assert spark.count("<polyline") == 2 and spark.count("<circle") == 4  # 18-19 and 21-22


def test_a_lone_rated_point_between_gaps_is_a_dot_and_a_whisker() -> None:
    days = [point("2026-11-18", None), point("2026-11-19", 3.0), point("2026-11-20", None)]
    (svg,) = charts(render_html(report(module("todo", days))), "trend")
    assert not by_class(svg, "path", "rating-line") and len(points(svg, "rating-points")) == 1
    (band,) = by_class(svg, "path", "ci-band")
    assert moves(band) == 1


def test_no_ratings_at_all_still_charts_the_error_rate_and_says_so() -> None:
    days = [point("2026-11-20", None, 10, 1), point("2026-11-21", None, 10, 9)]
    (svg,) = charts(render_html(report(module("todo", days))), "trend")
    assert not by_class(svg, "path", "ci-band") and not by_class(svg, "path", "rating-line")
    assert "no ratings" in texts(svg) and by_class(svg, "path", "error-line")
    assert texts(by_class(svg, "g", "legend")[0]) == ["mean rating", "error rate"]  # no band drawn, none named
    assert {"0%", "50%", "100%"} <= set(texts(svg))


def test_many_days_are_thinned_and_the_latest_is_always_labelled() -> None:
    days = [point(f"2026-10-{day:02d}", 4.0) for day in range(1, 32)]
    (svg,) = charts(render_html(report(module("todo", days))), "trend")
    labels = texts(by_class(svg, "g", "x-axis")[0])[:-1]
    assert 4 <= len(labels) < 16 and labels[-1] == "Oct 31"
    assert len(list(by_class(svg, "g", "x-axis")[0].iter("line"))) == 31  # a tick for every day


def test_long_run_ids_are_turned_and_cut_with_the_full_id_on_hover() -> None:
    runs = ["20261120-041249-b306a8", "20261121-041249-c1d2e3", "20261122-041249-f4a5b6"]
    page = render_html(report(module("todo", [point(run, 4.0) for run in runs]), trend_by="run"))
    (svg,) = charts(page, "trend")
    (x_axis,) = by_class(svg, "g", "x-axis")
    labels = [t for t in x_axis.iter("text") if t.get("transform")]
    assert len(labels) == 3 and all("rotate(-45" in (t.get("transform") or "") for t in labels)
    assert [t.findtext("title") for t in labels] == runs
    assert texts(x_axis) == ["…041249-b306a8", "…041249-c1d2e3", "…041249-f4a5b6", "run"]
    first_x = min(float(t.get("x") or 0) for t in labels)
    assert first_x - 14 * 7.8 * 0.71 >= 0  # the first turned label stays inside the chart
    assert "<figcaption>Trend per run</figcaption>" in page


def test_bucket_labels() -> None:
    assert bucket_labels(["2026-12-31", "2027-01-01"], "day", {}) == (["2026-12-31", "2027-01-01"], "day")
    assert bucket_labels(["2026-03-01", "2026-03-02"], "day", {}) == (["Mar 1", "Mar 2"], "day (2026)")
    assert bucket_labels(["r1", "not-a-day"], "day", {}) == (["r1", "not-a-day"], "day")
    assert shorten("abcdef", 4) == "abc…" and shorten("abcdef", 4, keep="end") == "…def"


RUN_IDS = ["20261201-041249-b306a8", "20261202-041249-c1d2e3", "20261203-041249-f4a5b6"]


def test_runs_are_labelled_by_their_label_and_told_apart_by_id_where_labels_do_not() -> None:
    a, b, c = RUN_IDS
    ids = ["…041249-b306a8", "…041249-c1d2e3", "…041249-f4a5b6"]
    assert bucket_labels([a, b], "run", {a: "baseline", b: "candidate"}) == (["baseline", "candidate"], "run")
    # One label for all: it names the axis, and the ids tell the runs apart.
    assert bucket_labels(RUN_IDS, "run", dict.fromkeys(RUN_IDS, "nightly")) == (ids, "run (nightly)")
    # Labels that differ at the end are cut in front, as ids are; a run without a label shows its id.
    labels = {a: "nightly-2026-12-01", b: "nightly-2026-12-02"}
    assert bucket_labels(RUN_IDS, "run", labels) == (["…ly-2026-12-01", "…ly-2026-12-02", ids[2]], "run")
    # A label some runs share, but not all, tells those apart from the others only: they show their ids.
    assert bucket_labels(RUN_IDS, "run", {a: "nightly", b: "nightly", c: "drill"}) == ([*ids[:2], "drill"], "run")
    assert bucket_labels(RUN_IDS, "run", {}) == (ids, "run")


def test_a_trend_by_run_names_each_run_by_its_label_with_its_id_on_hover() -> None:
    a, b, c = RUN_IDS
    runs = [run_info(a, "nightly-2026-12-01"), run_info(b, "nightly-2026-12-02"), run_info(c, None)]
    trend = [point(a, 4.2, 20, 1), point(b, 3.1, 25, 5), point(c, 4.6, 18, 0)]
    page = render_html(report(module("todo", trend), trend_by="run", runs=runs))
    (svg,) = charts(page, "trend")
    (x_axis,) = by_class(svg, "g", "x-axis")
    assert texts(x_axis) == ["…ly-2026-12-01", "…ly-2026-12-02", "…041249-f4a5b6", "run"]
    named = [f"{a} (nightly-2026-12-01)", f"{b} (nightly-2026-12-02)", c]
    assert [t.findtext("title") for t in x_axis.iter("text") if t.get("transform")] == named
    labels = [t for t in x_axis.iter("text") if t.get("transform")]
    assert min(float(t.get("x") or 0) for t in labels) - 14 * 7.8 * 0.71 >= 0  # inside the chart, as ids are
    first = points(svg, "rating-points")[0]
    assert first.findtext("title") == f"{named[0]}: rating 4.2 [3.6-4.8] from 4"
    assert f"{named[1]}: rating 3.1 [2.5-3.7] from 4; error rate 20% of 25 calls" in (svg.findtext("desc") or "")
    (spark,) = re.findall(r'<svg class="spark".*?</svg>', page)
    assert f"todo mean rating: {named[0]} 4.2, {named[1]} 3.1, {c} 4.6" in spark


def test_short_labels_lie_flat_and_a_lone_run_is_named_by_its_label() -> None:
    a, b, _ = RUN_IDS
    runs = [run_info(a, "baseline"), run_info(b, "candidate")]
    page = render_html(report(module("todo", [point(a, 4.0), point(b, 3.0)]), trend_by="run", runs=runs))
    (x_axis,) = by_class(charts(page, "trend")[0], "g", "x-axis")
    assert texts(x_axis) == ["baseline", "candidate", "run"]
    assert not [t for t in x_axis.iter("text") if t.get("transform")]  # short enough to read without turning
    one = render_html(report(module("todo", [point(a, 4.0)]), trend_by="run", runs=runs))
    assert f"one run so far ({a} (baseline): rating 4.0" in "".join(parse_html(one).text)


def test_nice_ticks_are_round() -> None:
    assert nice_ticks(137) == [0, 50, 100, 150]
    assert nice_ticks(3.2) == [0, 1, 2, 3, 4]
    assert nice_ticks(1200) == [0, 500, 1000, 1500]
    assert nice_ticks(0.37, count=2) == [0, 0.2, 0.4]
    assert nice_ticks(0.1, count=2) == [0, 0.05, 0.1]
    assert nice_ticks(0.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_latency_bars_have_an_axis_with_round_ticks_and_a_legend() -> None:
    long_name = "todo.create_a_recurring_task_with_a_very_long_name"
    page = render_html(report(module("todo", THREE_DAYS, [*TOOLS, tool(long_name, 2, 3, 4)])))
    (svg,) = charts(page, "latency")
    assert svg.get("viewBox") and svg.get("width") == "100%"
    assert (svg.findtext("title") or "") == "todo: latency per tool, p50, p95 and p99 in ms"
    assert texts(by_class(svg, "g", "legend")[0]) == ["p50", "p95", "p99"]
    (axis,) = by_class(svg, "g", "x-axis")
    assert texts(axis) == ["0", "50", "100", "150", "latency, ms"]
    bars = by_class(svg, "g", "bars")[0]
    widths = {(r.findtext("title") or ""): float(r.get("width") or 0) for r in bars.iter("rect") if r.get("class")}
    assert len(widths) == 9
    assert widths["todo.create p50 12 ms"] < widths["todo.create p95 88 ms"] < widths["todo.create p99 137 ms"]
    # one scale for the module: 150 ms spans the plot, so p99 137 ms is 137/150 of it
    assert abs(widths["todo.create p99 137 ms"] / widths["todo.list p99 31 ms"] - 137 / 31) < 0.05
    names = list(bars.iter("text"))  # without the module's prefix, the full name on hover
    assert [t.findtext("title") for t in names] == ["todo.create", "todo.list", long_name]
    create, listing, shown = texts(bars)
    assert (create, listing) == ("create", "list")
    assert shown.endswith("…") and len(shown) <= 17 and long_name.startswith(f"todo.{shown[:-1]}")


def test_latency_axis_keeps_fractions_for_fast_tools() -> None:
    page = render_html(report(module("todo", THREE_DAYS, [tool("todo.list", 0.1, 0.3, 0.42)])))
    (svg,) = charts(page, "latency")
    assert texts(by_class(svg, "g", "x-axis")[0]) == ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "latency, ms"]


def test_no_latency_no_latency_chart() -> None:
    page = render_html(report(module("todo", THREE_DAYS, [])))
    assert not charts(page, "latency") and "Latency per tool" not in page


class Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.values += [value or "" for _, value in attrs]


def test_hostile_names_stay_text_and_the_page_stays_one_file() -> None:
    hostile_module = module(
        HOSTILE,
        [point("http://evil.example/a.png", 4.0), point(f"run {HOSTILE}", 3.0, 5, 1)],
        [tool(f"{HOSTILE}.x", 10, 20, 30), tool("<img src=http://evil.example/x.png>", 1, 2, 3)],
    )
    page = render_html(report(hostile_module, module("todo", THREE_DAYS, TOOLS), trend_by="run"))
    assert "<script" not in page.lower() and "<img" not in page.lower()
    parsed = parse_html(page)  # balanced, ids unique
    assert not {"script", "img", "link", "iframe", "object", "embed", "image", "use", "foreignobject"} & parsed.tags
    assert all(link.startswith("#") for link in parsed.links)
    text = "".join(parsed.text)
    assert HOSTILE in text and "http://evil.example/a.png" in text
    attributes = Attributes()
    attributes.feed(page)
    assert not [value for value in attributes.values if "http" in value or "url(" in value]
    outside_text = re.sub(r">[^<]*<", "><", page)
    assert "http" not in outside_text and "@import" not in page
    for svg in charts(page, "trend") + charts(page, "latency"):  # well-formed, and the names only as text
        assert "script" not in {e.tag for e in svg.iter()}
    hostile_trend = charts(article(page, _anchor(HOSTILE)), "trend")
    assert HOSTILE in (hostile_trend[0].findtext("title") or "")


def test_the_same_report_renders_the_same_page() -> None:
    first = report(module("todo", THREE_DAYS, TOOLS), module("notes", THREE_DAYS[:2]))
    again = Report.model_validate_json(first.model_dump_json())
    assert render_html(first) == render_html(again)


def test_charts_are_sized_for_a_phone_and_for_print() -> None:
    page = render_html(report(module("todo", THREE_DAYS, TOOLS)))
    assert "svg.chart{display:block;width:100%;height:auto;max-width:" in page
    assert "@media print" in page and "@media (max-width:640px)" in page
    for svg in charts(page, "trend") + charts(page, "latency"):
        width = float((svg.get("viewBox") or "").split()[2])
        assert width <= 440  # text of 13 units stays above 10 px on a 375 px phone
        assert svg.get("font-size") == "13"
