"""``crm-kpi tail``: the newest KPI records of ``crm.kpi.v1`` as a readable terminal table.

The KPI topic holds one record per ``kpi|size|start|dims`` key and revision (catalogue §5):
open windows as ``final: false, revision: -1``, closed ones from ``revision: 0``. A
consumer keeps the highest revision per key (:class:`KpiBoard`, an upsert), and the table
shows, per *series* (KPI, window size, dimensions), the record of its newest window —
provisional while the window is open, final once it closed.

Values are formatted by the KPI's unit in the registry (:mod:`streams.core.registry`):
seconds as durations (``4m 05s``), ratios as percentages, NPS as a signed score with its
margin of error, money from minor units in its currency (``1,234.50 EUR``). A KPI that is
not (yet) in the registry is formatted by its name's suffix (``_seconds``, ``_rate``,
``_minor``).

Everything but :func:`follow` is pure (no Kafka), so the formatting and upsert logic is
unit-tested without a broker.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.table import Table

from streams.core.durations import parse_duration
from streams.core.registry import KPI_BY_NAME, KPIS

# ISO 4217 minor-unit exponents that are not 2 (the rest: 2 decimals).
_CURRENCY_EXPONENT: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
_KPI_ORDER: dict[str, int] = {kpi.name: index for index, kpi in enumerate(KPIS)}
_SIZE_MS_CACHE: dict[str, int] = {}
DEFAULT_BACKLOG = 1000
"""Records per partition read before following, without ``--from-beginning``."""


# --------------------------------------------------------------------------- formatting


def format_duration(seconds: float) -> str:
    """Seconds as a short duration: ``850ms``, ``12.3s``, ``4m 05s``, ``2h 07m``, ``3d 04h``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes}m {rest:02d}s"
    if whole < 86400:
        hours, rest = divmod(whole, 3600)
        return f"{hours}h {rest // 60:02d}m"
    days, rest = divmod(whole, 86400)
    return f"{days}d {rest // 3600:02d}h"


def format_money(minor: float, currency: str | None) -> str:
    """Minor units in their currency (``123450, "EUR"`` → ``1,234.50 EUR``; JPY has no
    decimals); without a currency the minor units themselves."""
    if not currency:
        return f"{minor:,.0f} minor units"
    exponent = _CURRENCY_EXPONENT.get(currency.upper(), 2)
    return f"{minor / 10**exponent:,.{exponent}f} {currency}"


def format_count(value: float) -> str:
    """Whole numbers with thousands separators, anything else with two decimals."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def unit_of(kpi: str) -> str:
    """The registry unit of ``kpi``; for a name the registry does not know (yet), a guess
    from its suffix (``_seconds``, ``_rate``/``_ratio``, ``_minor``), else ``count``."""
    known = KPI_BY_NAME.get(kpi)
    if known is not None:
        return known.unit
    if kpi.endswith("_seconds"):
        return "seconds"
    if kpi.endswith(("_rate", "_ratio")):
        return "ratio"
    if kpi.endswith("_minor"):
        return "minor_units"
    return "count"


def format_value(record: Mapping[str, Any]) -> str:
    """The record's headline ``value`` for people, by the KPI's unit (see the module doc)."""
    kpi = str(record.get("kpi", ""))
    value = record.get("value")
    stats = record.get("stats") or {}
    if stats.get("suppressed"):
        return f"suppressed (n={record.get('n', 0)})"
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    unit = unit_of(kpi)
    if unit == "seconds":
        return format_duration(value)
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "minor_units":
        return format_money(value, (record.get("dims") or {}).get("currency"))
    if unit == "score":
        if kpi == "nps":
            margin = stats.get("margin_of_error")
            return f"{value:+.1f}" + (f" ±{margin:.1f}" if isinstance(margin, int | float) else "")
        return f"{value:.1f}"
    if unit == "per_customer":
        return f"{value:.2f}"
    return format_count(value)


def format_dims(dims: Mapping[str, str] | None) -> str:
    """``channel=chat, priority=high``, or ``(overall)`` for the overall figure."""
    if not dims:
        return "(overall)"
    return ", ".join(f"{name}={value}" for name, value in sorted(dims.items()))


def format_start(start: str) -> str:
    """A window start (``2026-11-02T10:00:00Z``) as ``2026-11-02 10:00`` (UTC); seconds
    are shown only when not zero."""
    text = start.removesuffix("Z").replace("T", " ")
    return text[:-3] if text.endswith(":00") and len(text) == 19 else text


def format_state(record: Mapping[str, Any]) -> str:
    """``final`` or ``provisional``."""
    return "final" if record.get("final") else "provisional"


# --------------------------------------------------------------------------- filter, upsert


def parse_dims(items: Iterable[str]) -> dict[str, str]:
    """``["priority=high", "channel=chat,team=billing"]`` → a dict; raises ValueError for
    an item without ``=`` or with an empty name."""
    dims: dict[str, str] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"dimension filter {part!r} is not NAME=VALUE")
            dims[name.strip()] = value.strip()
    return dims


@dataclass(frozen=True)
class TailFilter:
    """Which records to show: a KPI name or glob (``sla_*``), dimensions that must all be
    present with these values (``{"priority": "high"}``; an empty value means "without
    this dimension"), a window size."""

    kpi: str | None = None
    dims: Mapping[str, str] = field(default_factory=dict)
    window: str | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True if ``record`` passes every given criterion."""
        if self.kpi is not None and not fnmatch.fnmatchcase(str(record.get("kpi", "")), self.kpi):
            return False
        if self.window is not None and (record.get("window") or {}).get("size") != self.window:
            return False
        dims = record.get("dims") or {}
        return all(dims.get(name, "") == value for name, value in self.dims.items())


def record_key(record: Mapping[str, Any]) -> str:
    """The topic key of a record, ``kpi|size|start|dims`` (catalogue §5), rebuilt from
    its fields (for messages without a key)."""
    window = record.get("window") or {}
    dims = record.get("dims") or {}
    dims_text = ",".join(f"{k}={v}" for k, v in sorted(dims.items())) or "-"
    return f"{record.get('kpi')}|{window.get('size')}|{window.get('start')}|{dims_text}"


def series_key(record: Mapping[str, Any]) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(kpi, window size, dims): one line of the table."""
    window = record.get("window") or {}
    dims = record.get("dims") or {}
    return str(record.get("kpi")), str(window.get("size")), tuple(sorted(dims.items()))


def _size_ms(size: str) -> int:
    if size not in _SIZE_MS_CACHE:
        try:
            _SIZE_MS_CACHE[size] = parse_duration(size)
        except (ValueError, TypeError):
            _SIZE_MS_CACHE[size] = 1 << 62
    return _SIZE_MS_CACHE[size]


def _row_order(record: Mapping[str, Any]) -> tuple:
    kpi, size, dims = series_key(record)
    return (_KPI_ORDER.get(kpi, len(_KPI_ORDER)), kpi, _size_ms(size), size, len(dims), dims)


@dataclass
class KpiBoard:
    """What an upserting consumer of the KPI topic holds: per key the record with the
    highest revision (on equal revisions the later one, as compaction keeps it)."""

    filter: TailFilter = field(default_factory=TailFilter)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: int = 0
    malformed: int = 0
    updated_at: float | None = None

    def offer(self, key: bytes | str | None, value: bytes | Mapping[str, Any] | None) -> bool:
        """Take one message (key and JSON value, or an already decoded record); returns True
        if the board changed. Tombstones, undecodable values and records the filter
        rejects are ignored; a lower revision never replaces a higher one."""
        self.received += 1
        if value is None:
            return False
        if isinstance(value, bytes | bytearray | memoryview):
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError:
                self.malformed += 1
                return False
        else:
            record = dict(value)
        if not isinstance(record, dict) or "kpi" not in record or not isinstance(record.get("window"), dict):
            self.malformed += 1
            return False
        if not self.filter.matches(record):
            return False
        if isinstance(key, bytes | bytearray | memoryview):
            key = bytes(key).decode("utf-8", "replace")
        key = key or record_key(record)
        current = self.records.get(key)
        revision = record.get("revision", -1)
        if current is not None and revision < current.get("revision", -1):
            return False
        self.records[key] = record
        self.updated_at = time.time()
        return True

    def latest_per_series(self) -> list[dict[str, Any]]:
        """Per (kpi, window size, dims) the record of the newest window start, sorted by
        registry order of the KPI, window size, then dimensions (overall first)."""
        newest: dict[tuple, dict[str, Any]] = {}
        for record in self.records.values():
            series = series_key(record)
            current = newest.get(series)
            if current is None or str(record["window"].get("start")) >= str(current["window"].get("start")):
                newest[series] = record
        return sorted(newest.values(), key=_row_order)


def table_rows(records: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """Text cells of the table: kpi, window, start, dims, value, n, state, revision."""
    return [
        (
            str(record.get("kpi")),
            str((record.get("window") or {}).get("size")),
            format_start(str((record.get("window") or {}).get("start", ""))),
            format_dims(record.get("dims")),
            format_value(record),
            format_count(record.get("n") or 0),
            format_state(record),
            str(record.get("revision")),
        )
        for record in records
    ]


def render(board: KpiBoard, *, title: str = "", limit: int | None = None) -> Table:
    """The board as a rich table (at most ``limit`` series, with a note about the rest)."""
    records = board.latest_per_series()
    shown = records if limit is None else records[: max(0, limit)]
    table = Table(title=title or None, title_justify="left", expand=False)
    for name, justify, no_wrap in (("kpi", "left", True), ("window", "left", True), ("start (UTC)", "left", True),
                                   ("dims", "left", False), ("value", "right", True), ("n", "right", True),
                                   ("state", "left", True), ("rev", "right", True)):
        table.add_column(name, justify=justify, no_wrap=no_wrap, overflow="fold")  # type: ignore[arg-type]
    for cells in table_rows(shown):
        style = None if cells[6] == "final" else "dim"
        table.add_row(*cells, style=style)
    hidden = len(records) - len(shown)
    caption = f"{len(records):,} series, {len(board.records):,} windows, {board.received:,} records read"
    if hidden:
        caption += f"; {hidden:,} series not shown (narrow with --kpi, --dims, --window)"
    table.caption = caption
    table.caption_justify = "left"
    return table


# --------------------------------------------------------------------------- Kafka


async def follow(
    bootstrap: str,
    topic: str,
    board: KpiBoard,
    *,
    from_beginning: bool = False,
    backlog: int = DEFAULT_BACKLOG,
    once: bool = False,
    timeout_s: float = 60.0,
    on_change: Callable[[KpiBoard], None] | None = None,
    stop: asyncio.Event | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> KpiBoard:
    """Read ``topic`` into ``board`` (read_committed, no consumer group).

    Starts at the beginning with ``from_beginning``, else ``backlog`` records before
    each partition's end. With ``once`` reads up to the end offsets seen at the start and
    returns (raising TimeoutError after ``timeout_s``); otherwise follows until ``stop``
    is set, calling ``on_change`` after every batch that changed the board."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    options = {"bootstrap_servers": bootstrap, **(client_options or {})}
    consumer = AIOKafkaConsumer(
        group_id=None, isolation_level="read_committed", enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024, **options,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            starts = await consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(starts[tp], ends[tp] - max(0, backlog)))
        deadline = time.monotonic() + timeout_s
        while True:
            if once:
                positions = [await consumer.position(tp) for tp in tps]
                if all(position >= ends[tp] for position, tp in zip(positions, tps, strict=True)):
                    return board
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: not read to its end in {timeout_s:.0f} s")
            elif stop is not None and stop.is_set():
                return board
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            changed = False
            for messages in batches.values():
                for message in messages:
                    changed = board.offer(message.key, message.value) or changed
            if changed and on_change is not None:
                on_change(board)
    finally:
        await consumer.stop()
