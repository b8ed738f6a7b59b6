"""The report's charts as inline SVG: a module's trend and its latency per tool.

Pure functions from report data to markup: no script, nothing fetched, no
ids (a page holds many charts, and ids must stay unique on it), and the same
data always gives the same bytes. Each chart scales with its container (a
viewBox, width 100% and a max-width set by the page), so it reads on an
800 px window and on a phone, and carries its own fonts and colours, so it
also reads on its own. Series differ by dash pattern and marker shape as
well as colour, so a grayscale print tells them apart. Every name from the
product is escaped: an SVG inside HTML is parsed as HTML.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from html import escape
from typing import Literal

from persona_runner.reporting.formatting import milliseconds, percent, rating_text, run_name
from persona_runner.reporting.model import RATING_MAX, RATING_MIN, ToolStats, TrendPoint
from persona_runner.util.text import counted

FONT = "system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
FONT_SIZE = 13
#: Average advance of a character at FONT_SIZE, in user units: enough to keep labels apart.
CHAR_WIDTH = 7.8
FG, MUTED, GRID, AXIS = "#1d232a", "#5b6570", "#e3e7eb", "#8a949e"
RATING_COLOUR = "#2f6fb3"
ERROR_COLOUR = "#c0392b"
ERROR_DASH = "6 3"
#: p50, p95, p99: dark, mid and light, so they stay apart in grayscale too.
PERCENTILE_COLOURS = (("p50", "#1f4e79"), ("p95", "#5b8fc7"), ("p99", "#c3d6ec"))

CHART_WIDTH = 400
PLOT_LEFT, PLOT_RIGHT = 52, 14
LEGEND_Y = 14
RATING_TOP, RATING_HEIGHT = 32, 120
ERROR_GAP, ERROR_HEIGHT = 20, 52
X_PAD = 10
#: A horizontal x label at most this wide; longer labels (run ids) are turned 45 degrees.
FLAT_LABEL_WIDTH = 80
#: Labels turned 45 degrees need this much room along the axis to keep clear of each other.
TURNED_LABEL_SPACING = 20
MAX_BUCKET_LABEL = 14
#: The x axis's name, a label shared by every run included, stays inside the chart's width.
MAX_AXIS_NAME = 40

TOOL_LABEL_WIDTH = 132
BAR_HEIGHT, BAR_GAP, ROW_GAP = 6, 1, 9
LATENCY_TOP = 30

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def nice_step(raw: float) -> float:
    """The 1, 2 or 5 times a power of ten at or above `raw`: the step of an axis people read at a glance."""
    if raw <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5):
        if raw <= factor * power * (1 + 1e-9):
            return factor * power
    return 10 * power


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round ticks from 0 to at least `high`, about `count` steps: 0, 50, 100, 150 rather than 0, 37.4, 74.8."""
    step = nice_step((high if high > 0 else 1.0) / count)
    steps = max(1, math.ceil((high if high > 0 else 1.0) / step - 1e-9))
    return [round(i * step, 12) for i in range(steps + 1)]


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0


def _tick_ms(value: float, step: float) -> str:
    return "0" if value == 0 else f"{value:,.{_decimals(step)}f}"


def _tick_percent(value: float, step: float) -> str:
    return "0%" if value == 0 else f"{value * 100:.{_decimals(step * 100)}f}%"


def _text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


def shorten(text: str, limit: int, keep: Literal["start", "end"] = "start") -> str:
    """At most `limit` characters, an ellipsis standing for what was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…" if keep == "start" else "…" + text[-(limit - 1) :]


def _f(value: float) -> str:
    """A coordinate: one decimal is finer than any screen, and keeps the page small and stable."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _svg(width: float, height: float, title: str, desc: str, body: str, css_class: str) -> str:
    return (
        f'<svg class="{css_class}" role="img" width="100%" viewBox="0 0 {_f(width)} {_f(height)}"'
        f' preserveAspectRatio="xMinYMin meet" font-family="{FONT}" font-size="{FONT_SIZE}">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{body}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = FG, extra: str = "") -> str:
    anchor_attr = "" if anchor == "start" else f' text-anchor="{anchor}"'
    return f'<text x="{_f(x)}" y="{_f(y)}"{anchor_attr} fill="{fill}"{extra}>{escape(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, extra: str = "") -> str:
    return f'<line x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" stroke="{stroke}"{extra}/>'


def _runs(present: Sequence[bool]) -> list[list[int]]:
    """Indices of consecutive present values, run by run: a missing value breaks a line instead of joining it."""
    runs: list[list[int]] = []
    for i, here in enumerate(present):
        if not here:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _polyline_path(points: Sequence[tuple[float, float] | None]) -> str:
    """One path of every run of two or more points, each starting with a move: gaps stay gaps."""
    parts = []
    for run in _runs([point is not None for point in points]):
        if len(run) < 2:
            continue
        coords = [point for point in (points[i] for i in run) if point is not None]
        parts.append(" ".join(f"{'M' if j == 0 else 'L'}{_f(x)} {_f(y)}" for j, (x, y) in enumerate(coords)))
    return " ".join(parts)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> str:
    """Swatches and names in one row, from `x` or further left if need be; a swatch is drawn in a 20x10 box."""
    total = sum(24 + _text_width(name) + 14 for _, name in items) - 14
    x = max(2.0, min(x, CHART_WIDTH - 2 - total))
    parts = []
    for swatch, name in items:
        parts.append(f'<g transform="translate({_f(x)} {_f(y)})">{swatch}{_text(24, 0, name)}</g>')
        x += 24 + _text_width(name) + 14
    return f'<g class="legend">{"".join(parts)}</g>'


def _rating_swatch() -> str:
    return (
        f'<line x1="0" y1="-4" x2="20" y2="-4" stroke="{RATING_COLOUR}" stroke-width="2"/>'
        f'<circle cx="10" cy="-4" r="3" fill="{RATING_COLOUR}"/>'
    )


def _box_swatch(colour: str, opacity: str = "1") -> str:
    fill_opacity = "" if opacity == "1" else f' fill-opacity="{opacity}"'
    return f'<rect x="0" y="-9" width="20" height="10" fill="{colour}"{fill_opacity}/>'


def _error_swatch() -> str:
    return (
        f'<line x1="0" y1="-4" x2="20" y2="-4" stroke="{ERROR_COLOUR}" stroke-width="1.75"'
        f' stroke-dasharray="{ERROR_DASH}"/><rect x="7.5" y="-6.5" width="5" height="5" fill="{ERROR_COLOUR}"/>'
    )


def _run_labels(run_ids: Sequence[str], labels: Mapping[str, str]) -> tuple[list[str], str]:
    """Short x labels for runs, and the x axis's name: each run's label, people know runs by it.

    Runs that all share one label name the axis with it ("run (nightly)")
    and are told apart by id. Otherwise a label is cut in front, as ids are,
    since labels that differ tend to differ at the end (`nightly-2026-12-01`,
    `build-1234`); a run without a label, or whose cut label another run in
    the chart shares, shows the end of its id instead.
    """
    ids = [shorten(run_id, MAX_BUCKET_LABEL, keep="end") for run_id in run_ids]
    named = [labels.get(run_id) for run_id in run_ids]
    if len(set(named)) == 1 and named[0] is not None:
        return ids, f"run ({shorten(named[0], MAX_AXIS_NAME)})"
    cut = [None if name is None else shorten(name, MAX_BUCKET_LABEL, keep="end") for name in named]
    shared = Counter(cut)
    return [
        label if label is not None and shared[label] == 1 else short_id
        for label, short_id in zip(cut, ids, strict=True)
    ], "run"


def bucket_labels(
    buckets: Sequence[str], by: Literal["day", "run"], run_labels: Mapping[str, str]
) -> tuple[list[str], str]:
    """Short x labels for the buckets, and the x axis's name: "Nov 20" under "day (2026)"; runs by their label
    from `run_labels` (run id -> label), else by their id cut in front."""
    if by == "run":
        return _run_labels(buckets, run_labels)
    try:
        days = [date.fromisoformat(bucket) for bucket in buckets]
    except ValueError:
        days = []
    if days:
        years = sorted({day.year for day in days})
        if len(years) == 1:
            return [f"{MONTHS[day.month - 1]} {day.day}" for day in days], f"day ({years[0]})"
        return [day.isoformat() for day in days], "day"
    return [shorten(bucket, MAX_BUCKET_LABEL, keep="end") for bucket in buckets], by


def bucket_names(buckets: Sequence[str], by: Literal["day", "run"], run_labels: Mapping[str, str]) -> list[str]:
    """Each bucket in full, as its point's tooltip and the chart's description name it: a day, or a run's id
    with its label."""
    if by == "day":
        return list(buckets)
    return [run_name(bucket, run_labels.get(bucket)) for bucket in buckets]


class _XLabels:
    """How the buckets are labelled under the x axis: short labels, flat or turned 45 degrees, and the axis's name."""

    def __init__(self, names: Sequence[str], labels: Sequence[str], axis_name: str) -> None:
        self.names = list(names)
        self.labels, self.name = list(labels), axis_name
        self.widest = max(_text_width(label) for label in self.labels)
        self.turned = self.widest > FLAT_LABEL_WIDTH

    @property
    def left_room(self) -> float:
        """How far left of its point a label reaches: a turned one hangs down to the left."""
        return self.widest * 0.75 + 8 if self.turned else self.widest / 2 + 2

    def draw(self, xs: Sequence[float], top: float) -> tuple[str, float]:
        """Tick marks for every bucket, labels for as many as fit (always the latest), the axis name; and its height."""
        spacing = xs[1] - xs[0] if len(xs) > 1 else CHART_WIDTH
        room = TURNED_LABEL_SPACING if self.turned else self.widest + 10
        every = max(1, math.ceil(room / spacing))
        count = len(self.labels)
        parts = [_line(x, top, x, top + 4, AXIS) for x in xs]
        for i in (i for i in range(count) if (count - 1 - i) % every == 0):
            label, name = self.labels[i], self.names[i]
            full = f"<title>{escape(name)}</title>" if label != name else ""
            if self.turned:
                at = f"{_f(xs[i])} {_f(top + 14)}"
                parts.append(
                    f'<text x="{_f(xs[i])}" y="{_f(top + 14)}" text-anchor="end" fill="{MUTED}"'
                    f' transform="rotate(-45 {at})">{full}{escape(label)}</text>'
                )
            else:
                half = _text_width(label) / 2 + 2
                x = min(max(xs[i], half), CHART_WIDTH - half)
                parts.append(
                    f'<text x="{_f(x)}" y="{_f(top + 16)}" text-anchor="middle" fill="{MUTED}">'
                    f"{full}{escape(label)}</text>"
                )
        height = (self.widest * math.sqrt(0.5) + 18) if self.turned else 20
        middle = (PLOT_LEFT + CHART_WIDTH - PLOT_RIGHT) / 2
        parts.append(_text(middle, top + height + 12, self.name, anchor="middle", fill=MUTED))
        return f'<g class="x-axis">{"".join(parts)}</g>', height + 16


def _y_axis(
    ticks: Sequence[float], to_y: Callable[[float], float], label: Callable[[float], str], right: float, name: str
) -> str:
    """Grid lines at the ticks, their labels left of the plot, and the axis's name turned along it."""
    parts = []
    for tick in ticks:
        y = to_y(tick)
        parts.append(_line(PLOT_LEFT, y, right, y, GRID))
        parts.append(_text(PLOT_LEFT - 5, y + 4, label(tick), anchor="end", fill=MUTED))
    middle = (to_y(ticks[0]) + to_y(ticks[-1])) / 2
    parts.append(
        f'<text x="11" y="{_f(middle)}" text-anchor="middle" fill="{MUTED}"'
        f' transform="rotate(-90 11 {_f(middle)})">{escape(name)}</text>'
    )
    parts.append(_line(PLOT_LEFT, to_y(ticks[0]), PLOT_LEFT, to_y(ticks[-1]), AXIS))
    parts.append(_line(PLOT_LEFT, to_y(ticks[0]), right, to_y(ticks[0]), AXIS))
    return f'<g class="y-axis">{"".join(parts)}</g>'


def _rating_part(point: TrendPoint) -> str:
    return "no rating" if point.rating.mean is None else f"rating {rating_text(point.rating)} from {point.rating.n}"


def _error_part(point: TrendPoint) -> str:
    return f"error rate {percent(point.error_rate)} of {counted(point.calls, 'call')}"


def _point_text(name: str, point: TrendPoint) -> str:
    return f"{name}: {_rating_part(point)}; {_error_part(point)}"


def trend_chart(
    module: str, trend: Sequence[TrendPoint], by: Literal["day", "run"], run_labels: Mapping[str, str]
) -> str | None:
    """Mean rating with its 95% CI band over 1..5, and the error rate in a panel below, per day or run (named by
    its label from `run_labels`, run id -> label, where it has one).

    None with fewer than two points: a line needs two. A day or run without a
    rating (or without a call) leaves a gap in that series, never a fall to zero.
    """
    if len(trend) < 2:
        return None
    right = CHART_WIDTH - PLOT_RIGHT
    width = right - PLOT_LEFT
    buckets = [point.bucket for point in trend]
    names = bucket_names(buckets, by, run_labels)
    x_labels = _XLabels(names, *bucket_labels(buckets, by, run_labels))
    first = max(PLOT_LEFT + X_PAD, x_labels.left_room)
    step = (right - X_PAD - first) / (len(trend) - 1)
    xs = [first + i * step for i in range(len(trend))]

    def rating_y(value: float) -> float:
        return RATING_TOP + (RATING_MAX - value) / (RATING_MAX - RATING_MIN) * RATING_HEIGHT

    error_top = RATING_TOP + RATING_HEIGHT + ERROR_GAP
    rates = [point.error_rate for point in trend]
    error_ticks = nice_ticks(max([0.1, *(rate for rate in rates if rate is not None)]), count=2)
    error_step, error_high = error_ticks[1], error_ticks[-1]

    def error_y(value: float) -> float:
        return error_top + (1 - value / error_high) * ERROR_HEIGHT

    body = [
        _y_axis([1, 2, 3, 4, 5], rating_y, lambda tick: f"{tick:.0f}", right, "rating"),
        _y_axis(error_ticks, error_y, lambda tick: _tick_percent(tick, error_step), right, "errors"),
    ]

    bands = []
    has_interval = [p.rating.ci_low is not None and p.rating.ci_high is not None for p in trend]
    for run in _runs(has_interval):
        low = [rating_y(trend[i].rating.ci_low or 0.0) for i in run]
        high = [rating_y(trend[i].rating.ci_high or 0.0) for i in run]
        if len(run) == 1:
            x = xs[run[0]]
            bands.append(f"M{_f(x - 4)} {_f(high[0])} H{_f(x + 4)} V{_f(low[0])} H{_f(x - 4)} Z")
            continue
        upper = " ".join(f"{'M' if j == 0 else 'L'}{_f(xs[i])} {_f(high[j])}" for j, i in enumerate(run))
        lower = " ".join(f"L{_f(xs[i])} {_f(low[j])}" for j, i in reversed(list(enumerate(run))))
        bands.append(f"{upper} {lower} Z")
    if bands:
        body.append(f'<path class="ci-band" d="{" ".join(bands)}" fill="{RATING_COLOUR}" fill-opacity="0.2"/>')

    means = [None if p.rating.mean is None else (xs[i], rating_y(p.rating.mean)) for i, p in enumerate(trend)]
    line = _polyline_path(means)
    if line:
        body.append(
            f'<path class="rating-line" d="{line}" fill="none" stroke="{RATING_COLOUR}" stroke-width="2"'
            ' stroke-linejoin="round" stroke-linecap="round"/>'
        )
    body.append(
        '<g class="rating-points">'
        + "".join(
            f'<circle cx="{_f(xy[0])}" cy="{_f(xy[1])}" r="3" fill="{RATING_COLOUR}">'
            f"<title>{escape(f'{names[i]}: {_rating_part(trend[i])}')}</title></circle>"
            for i, xy in enumerate(means)
            if xy is not None
        )
        + "</g>"
    )
    if not any(means):
        body.append(_text(PLOT_LEFT + width / 2, rating_y(3) + 4, "no ratings", anchor="middle", fill=MUTED))

    errors = [None if rate is None else (xs[i], error_y(rate)) for i, rate in enumerate(rates)]
    error_line = _polyline_path(errors)
    if error_line:
        body.append(
            f'<path class="error-line" d="{error_line}" fill="none" stroke="{ERROR_COLOUR}" stroke-width="1.75"'
            f' stroke-dasharray="{ERROR_DASH}"/>'
        )
    body.append(
        '<g class="error-points">'
        + "".join(
            f'<rect x="{_f(xy[0] - 2.5)}" y="{_f(xy[1] - 2.5)}" width="5" height="5" fill="{ERROR_COLOUR}">'
            f"<title>{escape(f'{names[i]}: {_error_part(trend[i])}')}</title></rect>"
            for i, xy in enumerate(errors)
            if xy is not None
        )
        + "</g>"
    )

    axis, axis_height = x_labels.draw(xs, error_top + ERROR_HEIGHT)
    body.append(axis)
    legend = [(_rating_swatch(), "mean rating")]
    if bands:
        legend.append((_box_swatch(RATING_COLOUR, "0.2"), "95% CI"))
    legend.append((_error_swatch(), "error rate"))
    body.insert(0, _legend(legend, PLOT_LEFT, LEGEND_Y))

    height = error_top + ERROR_HEIGHT + axis_height
    title = f"{module}: mean rating (95% CI) and error rate per {by}"
    desc = f"{len(trend)} {by}s. " + "; ".join(_point_text(n, p) for n, p in zip(names, trend, strict=True)) + "."
    return _svg(CHART_WIDTH, height, title, desc, "".join(body), "chart trend")


def _percentiles(tool: ToolStats) -> list[tuple[str, float | None]]:
    return [("p50", tool.p50_ms), ("p95", tool.p95_ms), ("p99", tool.p99_ms)]


def latency_chart(module: str, tools: Sequence[ToolStats]) -> str | None:
    """p50, p95 and p99 per tool as grouped horizontal bars on one axis in ms, scaled to this module's slowest tool.

    None when no tool has latencies. Tools are named without their module's
    prefix; a name still too long for its column is cut, and shown whole when
    pointed at.
    """
    tools = [tool for tool in tools if tool.p99_ms is not None or tool.p95_ms is not None or tool.p50_ms is not None]
    if not tools:
        return None
    left = TOOL_LABEL_WIDTH + 8
    right = CHART_WIDTH - PLOT_RIGHT - 6
    width = right - left
    slowest = max(value for tool in tools for _, value in _percentiles(tool) if value is not None)
    ticks = nice_ticks(slowest, count=5)
    tick_step, high = ticks[1], ticks[-1]
    row = 3 * BAR_HEIGHT + 2 * BAR_GAP + ROW_GAP
    bottom = LATENCY_TOP + row * len(tools)

    def to_x(value: float) -> float:
        return left + value / high * width

    swatches = [(_box_swatch(colour), name) for name, colour in PERCENTILE_COLOURS]
    body = [_legend(swatches, left, LEGEND_Y)]
    grid = []
    for tick in ticks:
        x = to_x(tick)
        grid.append(_line(x, LATENCY_TOP - 4, x, bottom, GRID))
        grid.append(_line(x, bottom, x, bottom + 4, AXIS))
        grid.append(_text(x, bottom + 16, _tick_ms(tick, tick_step), anchor="middle", fill=MUTED))
    grid.append(_line(left, bottom, right, bottom, AXIS))
    grid.append(_line(left, LATENCY_TOP - 4, left, bottom, AXIS))
    grid.append(_text(left + width / 2, bottom + 32, "latency, ms", anchor="middle", fill=MUTED))
    body.append(f'<g class="x-axis">{"".join(grid)}</g>')

    limit = int(TOOL_LABEL_WIDTH // CHAR_WIDTH)
    rows = []
    for i, tool in enumerate(tools):
        top = LATENCY_TOP + i * row + ROW_GAP / 2
        # Under the module's own heading its name adds nothing: "create_event" reads better than "calendar.create_…".
        short = tool.tool.removeprefix(f"{module}.") or tool.tool
        label = shorten(short, limit)
        full = f"<title>{escape(tool.tool)}</title>" if label != tool.tool else ""
        rows.append(
            f'<text x="{TOOL_LABEL_WIDTH}" y="{_f(top + 3 * BAR_HEIGHT / 2 + BAR_GAP + 4)}" text-anchor="end"'
            f' fill="{FG}">{full}{escape(label)}</text>'
        )
        for j, ((name, colour), (_, value)) in enumerate(zip(PERCENTILE_COLOURS, _percentiles(tool), strict=True)):
            if value is None:
                continue
            rows.append(
                f'<rect class="{name}" x="{_f(left)}" y="{_f(top + j * (BAR_HEIGHT + BAR_GAP))}"'
                f' width="{_f(max(0.5, value / high * width))}" height="{BAR_HEIGHT}" fill="{colour}">'
                f"<title>{escape(f'{tool.tool} {name} {milliseconds(value)}')}</title></rect>"
            )
    body.append(f'<g class="bars">{"".join(rows)}</g>')
    title = f"{module}: latency per tool, p50, p95 and p99 in ms"
    desc = "; ".join(
        f"{tool.tool}: " + ", ".join(f"{name} {milliseconds(value)}" for name, value in _percentiles(tool))
        for tool in tools
    )
    return _svg(CHART_WIDTH, bottom + 40, title, desc + ".", "".join(body), "chart latency")
