"""A static, self-contained HTML report of KPI records (``crm-kpi report``).

Input is KPI records (catalogue §5): a JSON-lines file written by ``crm-kpi replay``
(optionally ``.gz``) or the KPI topic itself. Records are upserted on their key
``kpi|size|start|dims`` keeping the highest revision, exactly as a downstream consumer
of ``crm.kpi.v1`` does, so a file or topic holding several revisions of a window shows
the latest one only.

The output is one HTML file with inline CSS and inline SVG charts drawn here in
Python: no scripts, no fonts, images or styles from elsewhere, so it opens offline
and can be mailed or archived as is. Every chart plots one window size (``--window``)
over event time (UTC) and carries its KPI name, unit and a "how to read" line taken
from :mod:`streams.core.registry`, so the report never disagrees with the metric help
text or the catalogue. The same input always gives byte-identical output (no
wall-clock time, no randomness, sorted iteration everywhere).

Conventions in the charts:

* a window is plotted at the middle of its newest ``advance`` (the middle of a
  tumbling window; the last day of a rolling 30d window);
* lines connect adjacent windows only; a missing window (no data) breaks the line;
* ratios whose denominator was zero (``value: null``) are marked with a grey ``×``
  on the time axis instead of a point;
* satisfaction scores below ``min_sample`` (``"suppressed": true``) are drawn as
  hollow points without line or band, and their ``n`` bars are grey;
* the strip under a chart shows ``n``, the sample size behind each point.
"""

from __future__ import annotations

import asyncio
import gzip
import html
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.core.durations import format_duration, parse_duration
from streams.core.events import PRIORITIES
from streams.core.registry import KPI_BY_NAME, Kpi
from streams.core.windows import DAY_MS, WindowSpec, parse_window_specs

__all__ = [
    "Loaded",
    "ReportError",
    "build_report",
    "load_file",
    "load_source",
    "read_topic",
    "record_key",
    "require_window",
    "sizes_present",
    "upsert",
    "window_name",
]

# --- loading --------------------------------------------------------------------


class ReportError(Exception):
    """Input that cannot be turned into a report (one-line message for the CLI)."""


@dataclass
class Loaded:
    """KPI records after the upsert, with what was read to get them."""

    records: list[dict[str, Any]]
    source: str
    read: int = 0  # records (lines or messages) read, tombstones included
    superseded: int = 0  # older revisions replaced by a newer one


def record_key(record: dict[str, Any]) -> str:
    """The topic key of a KPI record, ``kpi|size|start|dims`` (catalogue §5)."""
    dims = record.get("dims") or {}
    dims_text = ",".join(f"{k}={dims[k]}" for k in sorted(dims)) or "-"
    window = record["window"]
    return f"{record['kpi']}|{window['size']}|{window['start']}|{dims_text}"


def _check(record: object, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ReportError(f"{where}: not a KPI record (expected a JSON object)")
    window = record.get("window")
    if (
        not isinstance(record.get("kpi"), str)
        or not isinstance(window, dict)
        or not all(isinstance(window.get(k), str) for k in ("size", "start", "end"))
        or not isinstance(record.get("dims", {}), dict)
        or not isinstance(record.get("revision", 0), int)
    ):
        raise ReportError(f"{where}: not a KPI record (needs kpi, window.size/start/end, dims, revision)")
    return record


def upsert(items: Iterable[tuple[str | bytes | None, dict[str, Any] | None]]) -> tuple[dict[str, dict], int]:
    """Keep the highest revision per key, as a consumer of the compacted KPI topic does.

    ``items`` are (key, record) in read order; a ``None`` key is computed from the record,
    a ``None`` record is a tombstone that deletes its key. On equal revisions the later
    record wins (the topic's order). Returns the records by key and how many were
    superseded.
    """
    latest: dict[str, dict] = {}
    superseded = 0
    for raw_key, record in items:
        if raw_key is None and record is None:
            continue
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        if record is None:
            if latest.pop(key, None) is not None:  # type: ignore[arg-type]
                superseded += 1
            continue
        key = key or record_key(record)
        current = latest.get(key)
        if current is None:
            latest[key] = record
        elif record.get("revision", 0) >= current.get("revision", 0):
            latest[key] = record
            superseded += 1
        else:
            superseded += 1
    return latest, superseded


def load_file(path: Path) -> Loaded:
    """Read KPI records from a JSON-lines file (``.gz`` decompressed) and upsert them."""
    opener = gzip.open if str(path).endswith(".gz") else open
    items: list[tuple[None, dict]] = []
    try:
        with opener(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ReportError(f"{path}:{number}: not JSON: {exc}") from None
                items.append((None, _check(value, f"{path}:{number}")))
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc}") from None
    latest, superseded = upsert(items)
    return Loaded(records=list(latest.values()), source=str(path), read=len(items), superseded=superseded)


async def read_topic(settings: Any, topic: str, timeout_s: float = 60.0) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every committed record of ``topic``, from the beginning to its end
    as of now, partition by partition in offset order. Raises :class:`ReportError` when
    the topic does not exist or the end is not reached within ``timeout_s``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.runtime.kafka import MAX_MESSAGE_BYTES, client_options

    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES, request_timeout_ms=int(timeout_s * 1000),
    )
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())  # failures are reported in one line
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
    except Exception as exc:  # aiokafka's errors share no base with OSError
        await consumer.stop()
        raise ReportError(f"kafka {settings.bootstrap_servers}: {exc or type(exc).__name__}") from None
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ReportError(f"topic {topic} does not exist on {settings.bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {tp.partition: [] for tp in tps}
        while True:
            pending = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            if not pending:
                break
            if loop.time() > deadline:
                raise ReportError(f"topic {topic}: end not reached within {timeout_s:g}s")
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=50_000)
            for tp, messages in batch.items():
                by_partition[tp.partition].extend((m.key, m.value) for m in messages)
            if not batch:  # transaction markers move the position without records
                await asyncio.sleep(0.05)
        return [item for p in sorted(by_partition) for item in by_partition[p]]
    finally:
        await consumer.stop()


def load_source(source: str, settings_factory: Callable[[], Any] | None = None,
                timeout_s: float = 60.0) -> Loaded:
    """Load KPI records from a file path or, when no such file exists and the name looks
    like a topic, from that Kafka topic (settings from ``settings_factory``)."""
    path = Path(source)
    if path.is_file():
        return load_file(path)
    if "/" in source or source.endswith((".jsonl", ".gz", ".json")) or settings_factory is None:
        raise ReportError(f"no such file: {source}")
    settings = settings_factory()
    messages = asyncio.run(read_topic(settings, source, timeout_s))
    items: list[tuple[bytes | None, dict | None]] = []
    for offset, (key, value) in enumerate(messages):
        if value is None:
            items.append((key, None))
            continue
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ReportError(f"topic {source}, message {offset}: not JSON: {exc}") from None
        items.append((key, _check(record, f"topic {source}, message {offset}")))
    latest, superseded = upsert(items)
    return Loaded(records=list(latest.values()), source=f"topic {source} ({settings.bootstrap_servers})",
                  read=len(items), superseded=superseded)


# --- time and number formatting ------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TICK_STEPS_MS = tuple(parse_duration(s) for s in (
    "1m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d", "2d", "7d", "14d", "28d"))


def _ts_ms(text: str) -> int:
    """RFC 3339 window bound -> epoch ms (bounds are UTC, whole seconds or millis)."""
    from streams.codec.events import parse_ts

    return parse_ts(text)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _day(ms: int) -> str:
    d = _dt(ms)
    return f"{_MONTHS[d.month - 1]} {d.day:02d}"


def _clock(ms: int) -> str:
    d = _dt(ms)
    return f"{d.hour:02d}:{d.minute:02d}"


def _stamp(ms: int) -> str:
    """``2026-11-02 14:00`` (UTC), for headers and tooltips."""
    d = _dt(ms)
    return f"{d.year}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}"


def _span(ms: int) -> str:
    """A period as people say it: ``2d 1h``, ``1d 23h 30m``, ``45m``."""
    minutes = ms // 60_000
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (mins, "m")) if v]
    return " ".join(parts) or f"{ms // 1000}s"


def _num(value: float, decimals: int = 2) -> str:
    """Compact number: 950, 1.2k, 35k, 1.5M; trailing zeros dropped."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    size, suffix = next(((size, suffix) for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k"))
                         if value >= size), (1.0, ""))
    value /= size
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:.0f}"
    return f"{sign}{text or '0'}{suffix}"


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _nice_axis(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float]]:
    """Round the range [lo, hi] outwards to a nice step; returns (lo, hi, ticks)."""
    if hi <= lo:
        hi = lo + 1.0
    step = _nice_step(hi - lo, count)
    lo = math.floor(lo / step + 1e-9) * step
    hi = math.ceil(hi / step - 1e-9) * step
    ticks = [round(lo + i * step, 10) for i in range(int(round((hi - lo) / step)) + 1)]
    return lo, hi, ticks


# --- chart model ------
CONTENT_PX, GAP_PX, FIGURE_PAD_PX = 1176, 12, 26  # page content width, gap between figures, figure padding
WIDE = CONTENT_PX - FIGURE_PAD_PX  # charts this wide span the page


def columns(count: int) -> int:
    """Width of a chart when ``count`` figures share a row of the page."""
    return (CONTENT_PX - GAP_PX * (count - 1)) // count - FIGURE_PAD_PX


# ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """One window of one series."""

    start_ms: int
    end_ms: int
    y: float | None
    n: int | None = None
    suppressed: bool = False
    lo: float | None = None  # margin-of-error band, in y units
    hi: float | None = None
    tip: str = ""


@dataclass
class Series:
    """A line (or bars) drawn from marks; ``n_strip`` puts its n under the chart."""

    label: str
    color: str
    marks: list[Mark]
    dash: str | None = None
    stroke: float = 2.0
    strip_color: str | None = None
    bars: bool = False
    band: bool = False
    n_strip: bool = False


@dataclass(frozen=True)
class YAxis:
    lo: float
    hi: float
    ticks: list[float]
    fmt: Callable[[float], str]
    title: str


@dataclass(frozen=True)
class Frame:
    """The shared time axis of every chart: [x0, x1) and the window advance."""

    x0_ms: int
    x1_ms: int
    advance_ms: int

    def ticks(self, plot_width: float) -> list[int]:
        span = max(self.x1_ms - self.x0_ms, 1)
        spacing = 110 if plot_width > 600 else 55  # px between labels, at least
        wanted = max(2, int(plot_width // spacing) + 1)
        step = next((s for s in _TICK_STEPS_MS if span // s + 1 <= wanted), _TICK_STEPS_MS[-1])
        first = -(-self.x0_ms // step) * step
        return list(range(first, self.x1_ms + 1, step))

    def x_of(self, mark: Mark) -> int:
        """Where a window is plotted: the middle of its newest advance."""
        return mark.end_ms - min(self.advance_ms, mark.end_ms - mark.start_ms) // 2


@dataclass
class Chart:
    """One figure: title and reading aid from the registry, series, y axis."""

    chart_id: str
    title: str
    kpis: tuple[str, ...]
    series: list[Series]
    yaxis: YAxis
    subtitle: str = ""
    width: int = 0  # default: a full-width chart
    height: int = 250
    note: str = ""
    legend_extra: list[tuple[str, str]] = field(default_factory=list)
    legend_reversed: bool = False  # series drawn widest first, listed narrowest first

    def __post_init__(self) -> None:
        self.width = self.width or columns(1)

    @property
    def points(self) -> int:
        """Windows with a plotted value, over all series."""
        return sum(1 for s in self.series for m in s.marks if m.y is not None)


# --- SVG -----------------------------------------------------------------------------------

_E = html.escape
GRID = "#e3e6ea"
AXIS = "#6b7280"
TEXT = "#1f2937"
MUTED = "#9ca3af"
FONT_PX = 11


def _text_width(text: str, px: float = FONT_PX) -> float:
    return len(text) * px * 0.6


def _f(value: float) -> str:
    """Coordinates with one decimal, no ``-0.0``: stable, compact output."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def _legend(chart: Chart, width: int, left: int) -> tuple[list[str], int]:
    """Legend entries left to right, wrapped onto more rows when they do not fit;
    returns the SVG elements and the number of rows."""
    entries: list[tuple[str, str, str, float]] = [
        (s.label, s.color, "bar" if s.bars else ("dash" if s.dash else "line"), s.stroke)
        for s in (reversed(chart.series) if chart.legend_reversed else chart.series)]
    if any(s.band for s in chart.series):
        entries.append(("95% margin of error", next(s.color for s in chart.series if s.band), "band", 0))
    entries += [(label, MUTED, kind, 0) for label, kind in chart.legend_extra]
    out: list[str] = []
    x, row = float(left), 0
    for label, colour, kind, stroke in entries:
        advance = 23 + _text_width(label) + 14
        if x > left and x + advance - 14 > width - 8:
            x, row = float(left), row + 1
        y = 12 + row * LEGEND_ROW_PX
        if kind in ("line", "dash"):
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            out.append(f'<line x1="{_f(x)}" y1="{y}" x2="{_f(x + 18)}" y2="{y}" stroke="{colour}" '
                       f'stroke-width="{stroke}"{dash}/>')
        elif kind in ("bar", "band"):
            opacity = "0.18" if kind == "band" else "0.85"
            out.append(f'<rect x="{_f(x + 2)}" y="{y - 6}" width="14" height="12" fill="{colour}" '
                       f'fill-opacity="{opacity}"/>')
        elif kind == "hollow":
            out.append(f'<circle cx="{_f(x + 9)}" cy="{y}" r="3.5" fill="#fff" stroke="{AXIS}" stroke-width="1.5"/>')
        elif kind == "null":
            out.append(_cross(x + 9, y, AXIS))
        out.append(f'<text x="{_f(x + 23)}" y="{y + 4}" class="lg">{_E(label)}</text>')
        x += advance
    return out, row + 1


LEGEND_ROW_PX = 18


def render_chart(chart: Chart, frame: Frame) -> str:
    """The chart as an inline ``<svg>`` element (no scripts, no external references).

    Layout from the top: legend (wrapped), plot area with y grid, the n strip when a
    series asks for it, then the time axis (clock times, the date under the first tick
    of each day). ``chart.height`` is the height with a one-row legend.
    """
    widest = max((_text_width(chart.yaxis.fmt(t)) for t in chart.yaxis.ticks), default=0.0)
    left, right = max(58, int(widest) + 34), 26
    legend, rows = _legend(chart, chart.width, left)
    top = 14 + rows * LEGEND_ROW_PX
    w, h = chart.width, chart.height + (rows - 1) * LEGEND_ROW_PX
    strip = [s for s in chart.series if s.n_strip]
    strip_h = 40 if strip else 0
    bottom = 36 + (strip_h + 10 if strip else 0)
    pw, ph = w - left - right, h - top - bottom
    y_axis = chart.yaxis
    span = max(frame.x1_ms - frame.x0_ms, 1)

    def px(ms: float) -> float:
        return left + (ms - frame.x0_ms) / span * pw

    def py(v: float) -> float:
        v = min(max(v, y_axis.lo), y_axis.hi)
        return top + ph - (v - y_axis.lo) / (y_axis.hi - y_axis.lo) * ph

    subtitle = f" · {chart.subtitle}" if chart.subtitle else ""
    out: list[str] = [
        f'<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-labelledby="{chart.chart_id}-t" data-kpi="{_E(",".join(chart.kpis))}" '
        f'data-points="{chart.points}">',
        f'<title id="{chart.chart_id}-t">{_E(chart.title + subtitle)}</title>',
        *legend,
    ]
    # y grid, tick labels and title
    for tick in y_axis.ticks:
        y = py(tick)
        out.append(f'<line x1="{left}" y1="{_f(y)}" x2="{left + pw}" y2="{_f(y)}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" class="tk">{_E(y_axis.fmt(tick))}</text>')
    cy = top + ph / 2
    out.append(f'<text x="14" y="{_f(cy)}" transform="rotate(-90 14 {_f(cy)})" text-anchor="middle" '
               f'class="ax">{_E(y_axis.title)}</text>')
    # time axis, across the plot and the n strip
    x_bottom = top + ph + (strip_h + 10 if strip else 0)
    ticks = frame.ticks(pw)
    daily = all(t % DAY_MS == 0 for t in ticks)
    previous_day, last_right = None, -math.inf
    for tick in ticks:
        x = px(tick)
        out.append(f'<line x1="{_f(x)}" y1="{top}" x2="{_f(x)}" y2="{_f(x_bottom)}" stroke="{GRID}"/>')
        day = _day(tick)
        label = day if daily else _clock(tick)
        half = _text_width(label) / 2
        anchor, lo, hi = ("end", x - 2 * half, x) if x + half > w - 2 else ("middle", x - half, x + half)
        if lo < last_right + 8:  # would overlap the previous label: grid line only
            continue
        last_right = hi
        out.append(f'<text x="{_f(x)}" y="{_f(x_bottom + 14)}" text-anchor="{anchor}" class="tk">{label}</text>')
        if not daily and day != previous_day:
            out.append(f'<text x="{_f(x)}" y="{_f(x_bottom + 28)}" text-anchor="{anchor}" class="tk dy">{day}</text>')
            previous_day = day
    out.append(f'<text x="4" y="{_f(x_bottom + 14)}" class="ax">UTC</text>')
    baseline = py(0.0) if y_axis.lo < 0 < y_axis.hi else top + ph
    out.append(f'<line x1="{left}" y1="{_f(baseline)}" x2="{left + pw}" y2="{_f(baseline)}" stroke="{AXIS}"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{_f(top + ph)}" stroke="{AXIS}"/>')

    slot = frame.advance_ms / span * pw  # width of one window advance in px
    # margin-of-error bands behind the lines: one polygon per run of adjacent published windows
    for s in chart.series:
        if not s.band:
            continue
        for run in _runs(s.marks, frame, lambda m: m.lo is not None and m.hi is not None and not m.suppressed):
            if len(run) == 1:
                m = run[0]
                x = px(frame.x_of(m))
                out.append(f'<rect x="{_f(x - 4)}" y="{_f(py(m.hi))}" width="8" height="{_f(py(m.lo) - py(m.hi))}" '  # type: ignore[arg-type]
                           f'fill="{s.color}" fill-opacity="0.18"/>')
                continue
            upper = [f"{_f(px(frame.x_of(m)))},{_f(py(m.hi))}" for m in run]  # type: ignore[arg-type]
            lower = [f"{_f(px(frame.x_of(m)))},{_f(py(m.lo))}" for m in reversed(run)]  # type: ignore[arg-type]
            out.append(f'<polygon points="{" ".join(upper + lower)}" fill="{s.color}" fill-opacity="0.18"/>')
    # bars (negative values in the warning colour)
    bar_series = [s for s in chart.series if s.bars and s.marks]
    for index, s in enumerate(bar_series):
        width = max(slot * 0.8 / len(bar_series), 1.0)
        for m in s.marks:
            if m.y is None:
                continue
            x = px(frame.x_of(m)) - slot * 0.4 + index * width
            y0, y1 = py(0.0), py(m.y)
            colour = s.color if m.y >= 0 else RED
            out.append(f'<rect class="pt" x="{_f(x)}" y="{_f(min(y0, y1))}" width="{_f(width)}" '
                       f'height="{_f(max(abs(y1 - y0), 0.8))}" fill="{colour}" fill-opacity="0.85">'
                       f'<title>{_E(m.tip)}</title></rect>')
    # lines, then points on top; sparse charts label their values
    sparse = chart.points <= 3
    dense = slot < 8
    for s in chart.series:
        if s.bars:
            continue
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        for run in _runs(s.marks, frame, lambda m: m.y is not None and not m.suppressed):
            if len(run) > 1:
                path = "".join(f"{'M' if i == 0 else 'L'}{_f(px(frame.x_of(m)))} {_f(py(m.y))}"  # type: ignore[arg-type]
                               for i, m in enumerate(run))
                out.append(f'<path d="{path}" fill="none" stroke="{s.color}" stroke-width="{s.stroke}" '
                           f'stroke-linejoin="round" stroke-linecap="round"{dash}/>')
    for s in chart.series:
        if s.bars:
            continue
        radius = max(s.stroke * 0.5 + 1.2, 2.0) * (0.6 if dense else 1.0)
        for m in s.marks:
            if m.y is None:
                continue
            x, y = px(frame.x_of(m)), py(m.y)
            if m.suppressed:
                out.append(f'<circle class="pt sup" cx="{_f(x)}" cy="{_f(y)}" r="{radius + 1:.1f}" fill="#fff" '
                           f'stroke="{s.color}" stroke-width="1.5"><title>{_E(m.tip)}</title></circle>')
            else:
                out.append(f'<circle class="pt" cx="{_f(x)}" cy="{_f(y)}" r="{radius:.1f}" fill="{s.color}">'
                           f'<title>{_E(m.tip)}</title></circle>')
            if sparse:
                anchor = "end" if x > left + pw - 60 else "start"
                dx = -7 if anchor == "end" else 7
                out.append(f'<text x="{_f(x + dx)}" y="{_f(max(y - 7, top + 10))}" text-anchor="{anchor}" '
                           f'class="vl">{_E(y_axis.fmt(m.y))}</text>')
    # windows whose ratio had no denominator
    for x_ms in sorted({frame.x_of(m) for s in chart.series for m in s.marks if m.y is None and not s.bars}):
        out.append(_cross(px(x_ms), top + ph - 6, AXIS))
    # n strip: sample size per window, grey where the score was suppressed
    if strip:
        s_top = top + ph + 10
        n_max = max((m.n or 0 for s in strip for m in s.marks), default=0)
        out.append(f'<rect x="{left}" y="{s_top}" width="{pw}" height="{strip_h}" fill="#f5f6f8"/>')
        if n_max:
            out.append(f'<text x="{left - 6}" y="{s_top + 9}" text-anchor="end" class="tk">{_num(n_max, 0)}</text>')
        out.append(f'<text x="{left - 6}" y="{s_top + strip_h}" text-anchor="end" class="tk">0</text>')
        out.append(f'<text x="14" y="{s_top + strip_h / 2}" transform="rotate(-90 14 {s_top + strip_h / 2})" '
                   f'text-anchor="middle" class="ax">n</text>')
        width = max(slot * 0.8 / len(strip), 0.8)
        for index, s in enumerate(strip):
            for m in s.marks:
                if not m.n:
                    continue
                bar = m.n / n_max * (strip_h - 2) if n_max else 0
                x = px(frame.x_of(m)) - slot * 0.4 + index * width
                colour = "#b8bcc4" if m.suppressed else (s.strip_color or s.color)
                out.append(f'<rect x="{_f(x)}" y="{_f(s_top + strip_h - bar)}" width="{_f(width)}" '
                           f'height="{_f(bar)}" fill="{colour}" fill-opacity="0.75"/>')
    if not chart.points:
        out.append(f'<text x="{_f(left + pw / 2)}" y="{_f(top + ph / 2)}" text-anchor="middle" class="nt">'
                   f"no data in these windows</text>")
    out.append("</svg>")
    return "\n".join(line for line in out if line)


def _cross(x: float, y: float, colour: str) -> str:
    return (f'<path d="M{_f(x - 3)} {_f(y - 3)}L{_f(x + 3)} {_f(y + 3)}M{_f(x - 3)} {_f(y + 3)}'
            f'L{_f(x + 3)} {_f(y - 3)}" stroke="{colour}" stroke-width="1.3"/>')


def _runs(marks: Sequence[Mark], frame: Frame, keep: Callable[[Mark], bool]) -> list[list[Mark]]:
    """Maximal runs of adjacent windows (start advancing by one step) that ``keep``."""
    runs: list[list[Mark]] = []
    for mark in marks:
        if not keep(mark):
            runs.append([])
            continue
        if runs and runs[-1] and mark.start_ms == runs[-1][-1].start_ms + frame.advance_ms:
            runs[-1].append(mark)
        else:
            runs.append([mark])
    return [run for run in runs if run]


# --- from records to charts ---------------------------------------------------------------

# percentiles are drawn nested, widest first, so equal values stay visible as one banded line
P_COLOURS = (("p50", "#0072B2", 1.6), ("p90", "#E69F00", 3.4), ("p99", "#F0A07C", 5.6))
BLUE, GREEN, PURPLE, RED, ORANGE = "#0072B2", "#009E73", "#CC79A7", "#D55E00", "#E69F00"


def _duration_axis(values: Iterable[float]) -> YAxis:
    top = max(values, default=0.0)
    scale, name = _duration_unit(top)
    lo, hi, ticks = _nice_axis(0.0, max(top / scale, 1e-9))
    return YAxis(lo * scale, hi * scale, [t * scale for t in ticks], lambda v, s=scale: _num(v / s, 1), name)


def _ratio_axis(values: Iterable[float], *, full: bool = True, title: str = "percent") -> YAxis:
    values = list(values)
    if full:
        hi = max(1.0, max(values, default=0.0))
        lo, hi, ticks = _nice_axis(0.0, hi * 100, 5)
    else:
        lo_v = min(values, default=0.0) * 100
        hi_v = max(values, default=0.01) * 100
        if hi_v - lo_v < 0.5:
            lo_v, hi_v = lo_v - 0.5, hi_v + 0.5
        lo, hi, ticks = _nice_axis(max(min(lo_v, hi_v), 0.0) if lo_v >= 0 else lo_v, hi_v, 4)
    decimals = _decimals(ticks)
    return YAxis(lo / 100, hi / 100, [t / 100 for t in ticks], lambda v, d=decimals: f"{v * 100:.{d}f}%", title)


def _decimals(ticks: Sequence[float]) -> int:
    """Fewest decimals (up to 3) that print every tick exactly."""
    return next((d for d in range(3) if all(abs(t * 10**d - round(t * 10**d)) < 1e-6 for t in ticks)), 3)


def _money_axis(values: Iterable[float], currency: str) -> YAxis:
    values = list(values)
    lo, hi, ticks = _nice_axis(min(0.0, min(values, default=0.0)), max(0.0, max(values, default=1.0)), 4)
    return YAxis(lo, hi, ticks, lambda v: _num(v, 1), "minor units")


def _dims_match(record: dict, wanted: dict[str, str]) -> bool:
    return (record.get("dims") or {}) == wanted


def _window_text(mark_start: int, mark_end: int) -> str:
    end = _stamp(mark_end)
    return f"{_stamp(mark_start)} – {end[11:] if end[:10] == _stamp(mark_start)[:10] else end}"


class _Index:
    """Records of the charted window size, by KPI and dims."""

    def __init__(self, records: list[dict], size: str) -> None:
        self.by_kpi: dict[str, list[dict]] = {}
        for record in records:
            if record["window"]["size"] == size:
                self.by_kpi.setdefault(record["kpi"], []).append(record)
        for items in self.by_kpi.values():
            items.sort(key=lambda r: (r["window"]["start"], record_key(r)))

    def select(self, kpi: str, dims: dict[str, str]) -> list[dict]:
        return [r for r in self.by_kpi.get(kpi, ()) if _dims_match(r, dims)]

    def dim_values(self, kpi: str, name: str) -> list[str]:
        return sorted({(r.get("dims") or {}).get(name) for r in self.by_kpi.get(kpi, ())
                       if set(r.get("dims") or {}) == {name}})


def _marks(records: list[dict], value: Callable[[dict], float | None], label: str,
           fmt: Callable[[float], str], band: Callable[[dict], tuple[float, float] | None] | None = None) -> list[Mark]:
    marks = []
    for record in records:
        start, end = _ts_ms(record["window"]["start"]), _ts_ms(record["window"]["end"])
        stats = record.get("stats") or {}
        y = value(record)
        if y is not None and not math.isfinite(y):
            y = None
        suppressed = bool(stats.get("suppressed"))
        n = record.get("n")
        lo_hi = band(record) if band and y is not None else None
        tip = f"{_window_text(start, end)} UTC · {label} "
        tip += ("no data (zero denominator)" if y is None else fmt(y))
        if lo_hi:
            tip += f" ± {fmt(lo_hi[1] - y)}"  # type: ignore[operator]
        tip += f" · n={n}" if n is not None else ""
        tip += " · suppressed (n below min_sample)" if suppressed else ""
        marks.append(Mark(start, end, y, n if isinstance(n, int) else None, suppressed,
                          lo_hi[0] if lo_hi else None, lo_hi[1] if lo_hi else None, tip))
    return marks


def _stat(name: str) -> Callable[[dict], float | None]:
    def get(record: dict) -> float | None:
        value = (record.get("stats") or {}).get(name)
        return float(value) if isinstance(value, int | float) else None
    return get


def _value(record: dict) -> float | None:
    value = record.get("value")
    return float(value) if isinstance(value, int | float) else None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _percentile_charts(index: _Index, kpi: str) -> list[Chart]:
    """Overall p50/p90/p99 and one small chart per priority (shared y scale)."""
    charts = []
    groups: list[tuple[str, dict[str, str]]] = [("overall", {})]
    priorities = [p for p in reversed(PRIORITIES)] + [
        p for p in index.dim_values(kpi, "priority") if p not in PRIORITIES]
    groups += [(f"priority={p}", {"priority": p}) for p in priorities]
    selected = {label: index.select(kpi, dims) for label, dims in groups}
    per_priority = [v for label, rs in selected.items() if label != "overall" for r in rs
                    for v in (_stat(p)(r) for p, _, _ in P_COLOURS) if v is not None]
    overall = [v for r in selected["overall"] for v in (_stat(p)(r) for p, _, _ in P_COLOURS) if v is not None]
    for label, _dims in groups:
        axis = _duration_axis(overall if label == "overall" else per_priority)
        series = []
        for p, colour, stroke in reversed(P_COLOURS):
            series.append(Series(p, colour, _marks(selected[label], _stat(p), p, _fmt_duration), stroke=stroke))
        series[0].n_strip, series[0].strip_color = True, "#7b8594"
        small = label != "overall"
        charts.append(Chart(
            chart_id=_slug(f"{kpi}-{label}"), title=kpi, subtitle=label, kpis=(kpi,), series=series,
            yaxis=axis, width=columns(4) if small else columns(1), legend_reversed=True, height=230 if small else 270,
        ))
    return charts


_DURATION_UNITS = ((120, 1, "seconds", "s"), (2 * 3600, 60, "minutes", "min"), (72 * 3600, 3600, "hours", "h"),
                   (math.inf, 86400, "days", "d"))


def _duration_unit(seconds: float, short: bool = False) -> tuple[int, str]:
    """The display unit for a duration: seconds below 2 min, minutes below 2 h, hours
    below 3 days, days beyond."""
    limit, scale, name, abbreviation = next(u for u in _DURATION_UNITS if abs(seconds) < u[0])
    return scale, abbreviation if short else name


def _fmt_duration(seconds: float) -> str:
    scale, unit = _duration_unit(seconds, short=True)
    return f"{seconds / scale:.1f} {unit}"


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _sla_chart(index: _Index) -> Chart:
    kpis = ("sla_first_reply_hit_rate", "sla_resolution_hit_rate")
    series = [
        Series("first reply", BLUE, _marks(index.select(kpis[0], {}), _value, "first reply", _pct), n_strip=True),
        Series("resolution", GREEN, _marks(index.select(kpis[1], {}), _value, "resolution", _pct), n_strip=True),
    ]
    values = [m.y for s in series for m in s.marks if m.y is not None]
    return Chart("sla-hit-rates", " · ".join(kpis), kpis, series, _ratio_axis(values, title="hit rate"),
                 subtitle="overall", legend_extra=_extras(series))


def _extras(series: list[Series]) -> list[tuple[str, str]]:
    extra = []
    if any(m.suppressed for s in series for m in s.marks):
        extra.append(("suppressed (n below min_sample)", "hollow"))
    if any(m.y is None for s in series for m in s.marks):
        extra.append(("no data (zero denominator)", "null"))
    return extra


def _suppressed_note(series: list[Series]) -> str:
    marks = [m for s in series for m in s.marks if m.y is not None]
    if marks and all(m.suppressed for m in marks):
        return f"all {len(marks)} points suppressed: n below min_sample in every window (noise)"
    return ""


def _nps_chart(index: _Index) -> Chart:
    def band(record: dict) -> tuple[float, float] | None:
        moe = _stat("margin_of_error")(record)
        y = _value(record)
        if moe is None or y is None:
            return None
        return max(y - moe, -100.0), min(y + moe, 100.0)

    marks = _marks(index.select("nps", {}), _value, "NPS", lambda v: f"{v:.1f}", band)
    series = [Series("NPS", BLUE, marks, band=True, n_strip=True)]
    axis = YAxis(-100.0, 100.0, [-100.0, -50.0, 0.0, 50.0, 100.0], lambda v: f"{v:.0f}", "NPS (score)")
    return Chart("nps", "nps", ("nps",), series, axis, subtitle="overall",
                 note=_suppressed_note(series), legend_extra=_extras(series))


def _csat_ces_chart(index: _Index) -> Chart:
    series = [
        Series("CSAT (4-5 of 5)", GREEN, _marks(index.select("csat", {}), _value, "CSAT", _pct), n_strip=True),
        Series("CES (5-7 of 7)", PURPLE, _marks(index.select("ces", {}), _value, "CES", _pct), n_strip=True),
    ]
    values = [m.y for s in series for m in s.marks if m.y is not None]
    return Chart("csat-ces", "csat · ces", ("csat", "ces"), series,
                 _ratio_axis(values, title="satisfied share"), subtitle="overall",
                 note=_suppressed_note(series), legend_extra=_extras(series))


def _revenue_charts(index: _Index) -> list[Chart]:
    currencies = index.dim_values("revenue_minor", "currency")
    charts = []
    width = columns(min(max(len(currencies), 1), 3))
    for currency in currencies or ["—"]:
        records = index.select("revenue_minor", {"currency": currency})
        marks = _marks(records, _value, f"net revenue {currency}", lambda v: f"{v:,.0f} minor units")
        axis = _money_axis([m.y for m in marks if m.y is not None], currency)
        series = [Series("net revenue", BLUE, marks, bars=True), Series("net refund (negative)", RED, [], bars=True)]
        charts.append(Chart(_slug(f"revenue-minor-{currency}"), "revenue_minor", ("revenue_minor",), series, axis,
                            subtitle=f"currency={currency}", width=width, height=240))
    return charts


def _subscriber_charts(index: _Index) -> list[Chart]:
    charts = []
    for kpi, colour, full_low in (("churn_rate", RED, True), ("retention_rate", GREEN, False)):
        marks = _marks(index.select(kpi, {}), _value, kpi, lambda v: f"{v * 100:.2f}%")
        series = [Series(kpi.replace("_", " "), colour, marks, n_strip=True)]
        values = [m.y for m in marks if m.y is not None]
        if full_low:  # churn: from 0 up to the largest value (at least 1%)
            lo, hi, ticks = _nice_axis(0.0, max(max(values, default=0.0) * 100, 1.0), 4)
        else:  # retention: the band the values live in, up to 100%
            low = min(values, default=0.99) * 100
            lo, hi, ticks = _nice_axis(min(low, 99.0), max(100.0, max(values, default=1.0) * 100), 4)
        decimals = _decimals(ticks)
        axis = YAxis(lo / 100, hi / 100, [t / 100 for t in ticks],
                     lambda v, d=decimals: f"{v * 100:.{d}f}%", "% of subscribers")
        charts.append(Chart(_slug(kpi), kpi, (kpi,), series, axis, subtitle="overall", width=columns(2), height=240,
                            legend_extra=_extras(series)))
    return charts


def _how_to_read(kpi: Kpi, size: str) -> str:
    """The registry's reading aid: formula and unit, direction, what moves it, how it is
    gamed; plus the window sizes it is meaningful for when the charted one is not."""
    direction = {"higher_is_better": "higher is better", "lower_is_better": "lower is better",
                 "neutral": "neither higher nor lower is better"}[kpi.direction]
    text = f"{kpi.formula} [{kpi.unit}]; {direction}; moved by {kpi.moves}. Watch: {kpi.gamed}."
    meaningful = getattr(kpi, "windows", None)
    if meaningful and size not in meaningful:
        text += f" Meaningful for {', '.join(meaningful)} windows: read {size} windows with care."
    return text


CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#1f2937;font:14px/1.45 "DejaVu Sans","Liberation Sans",Arial,sans-serif}
main{max-width:1224px;min-width:1224px;margin:0 auto;padding:24px 24px 40px}
header{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:18px 22px;margin-bottom:18px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:26px 0 10px;padding-bottom:4px;border-bottom:2px solid #d1d5db}
h3{font-size:14px;margin:0;font-family:"DejaVu Sans Mono",monospace;font-weight:bold}
h3 .sub{font-family:"DejaVu Sans",Arial,sans-serif;font-weight:normal;color:#4b5563}
.lead{color:#4b5563;margin:0 0 12px}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:0}
dl.summary dt{color:#6b7280}
dl.summary dd{margin:0}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{flex:0 0 auto}
figure{background:#fff;border:1px solid #e5e7eb;border-radius:8px;margin:0;padding:10px 12px 6px}
figure.small h3 .sub{display:block}
h3{overflow-wrap:anywhere}
figcaption{margin-bottom:4px}
p.note{font-size:12px;color:#92400e;background:#fef3c7;border-radius:4px;padding:2px 8px;margin:4px 0;display:inline-block}
p.how{font-size:12px;color:#4b5563;margin:2px 0 4px;max-width:1150px}
svg.chart{display:block;max-width:100%;height:auto;font-family:"DejaVu Sans",Arial,sans-serif}
svg .tk{font-size:11px;fill:#4b5563}
svg .tk.dy{fill:#111827;font-weight:bold}
svg .ax{font-size:11px;fill:#374151}
svg .lg{font-size:11px;fill:#1f2937}
svg .vl{font-size:11px;fill:#111827;font-weight:bold}
svg .nt{font-size:12px;fill:#6b7280;font-style:italic}
footer{color:#6b7280;font-size:12px;margin-top:26px}
"""


def _window_spec(window: str) -> WindowSpec:
    try:
        specs = parse_window_specs(window)
    except ValueError as exc:
        raise ReportError(f"--window: {exc}") from None
    if len(specs) != 1:
        raise ReportError(f"--window takes one size, got {window!r}")
    return specs[0]


def window_name(window: str) -> str:
    """The canonical name of a window size as records spell it (``60m`` -> ``1h``)."""
    return _window_spec(window).name


def sizes_present(records: Iterable[dict]) -> dict[str, int]:
    """Window sizes in the records with their record counts, shortest first."""
    sizes: dict[str, int] = {}
    for record in records:
        sizes[record["window"]["size"]] = sizes.get(record["window"]["size"], 0) + 1
    order = sorted(sizes, key=lambda s: (parse_duration(s) if _is_duration(s) else math.inf, s))
    return {size: sizes[size] for size in order}


def require_window(loaded: Loaded, window: str) -> str:
    """The canonical window size, or :class:`ReportError` when no record has it."""
    size = window_name(window)
    sizes = sizes_present(loaded.records)
    if size not in sizes:
        present = f"window sizes present: {', '.join(sizes)}" if sizes else "it holds no KPI records"
        raise ReportError(f"no {size} windows in {loaded.source} ({present})")
    return size


def build_report(loaded: Loaded | list[dict], window: str = "1h", *, title: str = "CRM KPI report") -> str:
    """The HTML report of the records' ``window``-size windows (deterministic).

    ``loaded`` is what :func:`load_source` returned, or plain KPI record dicts (already
    upserted). Raises :class:`ReportError` for a window size that does not parse.
    """
    if not isinstance(loaded, Loaded):
        latest, superseded = upsert((None, r) for r in loaded)
        loaded = Loaded(records=list(latest.values()), source="records", read=len(loaded), superseded=superseded)
    spec = _window_spec(window)
    size = spec.name
    records = sorted(loaded.records, key=record_key)
    index = _Index(records, size)
    charted = [r for items in index.by_kpi.values() for r in items]
    starts = [_ts_ms(r["window"]["start"]) for r in charted]
    ends = [_ts_ms(r["window"]["end"]) for r in charted]
    if charted:
        frame = Frame(min(e - spec.advance_ms for e in ends), max(ends), spec.advance_ms)
    else:
        frame = Frame(0, spec.advance_ms, spec.advance_ms)

    sections: list[tuple[str, str, list[Chart]]] = [
        ("3.1", "Response time", _percentile_charts(index, "first_response_time_seconds")),
        ("3.2", "Resolution time", _percentile_charts(index, "resolution_time_seconds")),
        ("3.3", "SLA attainment", [_sla_chart(index)]),
        ("3.4", "Satisfaction", [_nps_chart(index), _csat_ces_chart(index)]),
        ("3.5", "Revenue", _revenue_charts(index)),
        ("3.5", "Churn and retention", _subscriber_charts(index)),
    ]

    sizes = sizes_present(records)
    provisional = sum(1 for r in charted if not r.get("final", True))
    revised = sum(1 for r in charted if (r.get("revision") or 0) > 0)
    if charted:
        period = (f"{_stamp(min(starts))} → {_stamp(max(ends))} UTC "
                  f"({_span(max(ends) - min(starts))}, {len({r['window']['start'] for r in charted})} "
                  f"windows of {size})")
    else:
        period = f"no {size} windows in the input"
    summary = [
        ("Source", loaded.source),
        ("Charted windows", f"{size} ({'rolling, advancing ' + format_duration(spec.advance_ms) if spec.rolling else 'tumbling'})"),
        ("Period covered", period),
        ("KPI records", f"{len(records):,} after upsert ({loaded.read:,} read, {loaded.superseded:,} older revisions "
                        f"superseded); {len(charted):,} of {size} windows"),
        ("Window sizes present", ", ".join(f"{s} ({count:,})" for s, count in sizes.items()) or "none"),
        ("Revisions", f"{revised:,} charted windows revised by late data; {provisional:,} provisional (still open)"),
        ("KPIs present", f"{len({r['kpi'] for r in records})} of {len(KPI_BY_NAME)} in the registry"),
    ]

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_E(title)} — {size} windows</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<header>",
        f"<h1>{_E(title)}</h1>",
        '<p class="lead">Event-time windowed KPIs (KPI catalogue §3), charted per window over time (UTC). '
        "Lines join adjacent windows only; gaps are windows without data. Strips under charts show n, "
        "the sample size behind each point; hover a point for its exact value.</p>",
        '<dl class="summary">',
        *(f"<dt>{_E(k)}</dt><dd>{_E(v)}</dd>" for k, v in summary),
        "</dl></header>",
    ]
    for number, name, charts in sections:
        out.append(f'<section id="{_slug(name)}"><h2>§{number} {_E(name)}</h2><div class="grid">')
        explained: set[str] = set()
        for chart in charts:
            wide = chart.width >= WIDE
            caption = ""
            if wide:
                caption = "".join(_how_line(k, size, len(chart.kpis) > 1) for k in chart.kpis)
                explained.update(chart.kpis)
            subtitle = f' <span class="sub">· {_E(chart.subtitle)}</span>' if chart.subtitle else ""
            css = "wide" if wide else "small"
            out.append(
                f'<figure id="{chart.chart_id}" class="{css}" style="width:{chart.width + FIGURE_PAD_PX}px" '
                f'data-kpi="{_E(",".join(chart.kpis))}"><figcaption><h3>{_E(chart.title)}{subtitle}</h3>'
                f"{caption}{_note(chart)}</figcaption>"
            )
            out.append(render_chart(chart, frame))
            out.append("</figure>")
        out.append("</div>")
        rest = [k for k in dict.fromkeys(k for c in charts for k in c.kpis) if k not in explained]
        out.extend(_how_line(k, size, True) for k in rest)
        out.append("</section>")
    out.append(
        "<footer>Generated by <code>crm-kpi report</code>. Definitions: KPI catalogue §3; record format §5; "
        "titles, units and reading notes come from the KPI registry (streams/core/registry.py). "
        "Money is in minor units per currency, without FX conversion.</footer>"
    )
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def _note(chart: Chart) -> str:
    return f'<p class="note">{_E(chart.note)}</p>' if chart.note else ""


def _how_line(kpi: str, size: str, named: bool) -> str:
    label = f"How to read {kpi}:" if named else "How to read:"
    return f'<p class="how"><b>{_E(label)}</b> {_E(_how_to_read(KPI_BY_NAME[kpi], size))}</p>'


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True
