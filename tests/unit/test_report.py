"""``crm-kpi report`` (streams.report): a self-contained HTML report of KPI records.

Built from the KPI records that replaying ``examples/sample-day.jsonl.gz`` produces:
one ``<svg>`` per chart with the registry's titles, as many points as there are
windows with a value, nothing loaded from elsewhere, the same bytes for the same
input; upsert of revisions; nulls, suppressed scores and empty series. The last test
renders the report in headless Chromium (Debian's ``chromium``, installed by
``scripts/bootstrap.sh``) and keeps the screenshot in ``artifacts/``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
import subprocess
import time
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from streams.cli import app as cli_app
from streams.codec.records import encode_kpi
from streams.core.pipeline import CoreConfig
from streams.core.registry import KPI_BY_NAME
from streams.replay import read_lines, run_replay
from streams.report import (
    Loaded,
    ReportError,
    build_report,
    load_file,
    load_source,
    record_key,
    upsert,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "sample-day.jsonl.gz"
ARTIFACTS = REPO / "artifacts"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--force-device-scale-factor=1",
)
SCREEN_W, SCREEN_H = 1280, 4200

PRIORITY_ORDER = ("urgent", "high", "normal", "low")
EXPECTED_CHARTS = (
    "first-response-time-seconds-overall",
    *(f"first-response-time-seconds-priority-{p}" for p in PRIORITY_ORDER),
    "resolution-time-seconds-overall",
    *(f"resolution-time-seconds-priority-{p}" for p in PRIORITY_ORDER),
    "sla-hit-rates", "nps", "csat-ces",
    "revenue-minor-eur", "revenue-minor-gbp", "revenue-minor-usd",
    "churn-rate", "retention-rate",
)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kpi_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KPI records of the sample day, as ``crm-kpi replay --out`` writes them."""
    result = run_replay(read_lines([SAMPLE]), CoreConfig())
    path = tmp_path_factory.mktemp("report") / "kpis.jsonl"
    path.write_bytes(b"".join(encode_kpi(r) + b"\n" for r in result.records))
    return path


@pytest.fixture(scope="module")
def records(kpi_file: Path) -> list[dict]:
    return [orjson.loads(line) for line in kpi_file.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def report_html(kpi_file: Path) -> str:
    return build_report(load_file(kpi_file), "1h")


class Figures(HTMLParser):
    """Each ``<figure>``: id, ``<h3>`` text, its ``<svg>`` elements with their attributes
    and point marks (elements of class ``pt``); plus every src/href and tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict] = {}
        self.current: dict | None = None
        self.in_h3 = False
        self.tags: Counter[str] = Counter()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags[tag] += 1
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        if tag == "figure":
            self.current = {"title": "", "svgs": [], "points": 0, "suppressed": 0}
            self.figures[attributes["id"] or ""] = self.current
        elif self.current is not None:
            if tag == "h3":
                self.in_h3 = True
            elif tag == "svg":
                self.current["svgs"].append(attributes)
            elif "pt" in (attributes.get("class") or "").split():
                self.current["points"] += 1
                self.current["suppressed"] += "sup" in (attributes.get("class") or "").split()

    def handle_endtag(self, tag: str) -> None:
        if tag == "h3":
            self.in_h3 = False
        elif tag == "figure":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.in_h3 and self.current is not None:
            self.current["title"] += data


def parse(document: str) -> Figures:
    parser = Figures()
    parser.feed(document)
    return parser


def hourly(records: list[dict], kpi: str, dims: dict[str, str]) -> list[dict]:
    return [r for r in records if r["kpi"] == kpi and r["window"]["size"] == "1h" and r["dims"] == dims]


# --- content ---------------------------------------------------------------------------------


def test_one_svg_per_chart_titled_from_the_registry(report_html: str) -> None:
    figures = parse(report_html).figures
    assert tuple(figures) == EXPECTED_CHARTS
    for chart_id, figure in figures.items():
        assert len(figure["svgs"]) == 1, chart_id
        svg = figure["svgs"][0]
        kpis = svg["data-kpi"].split(",")
        assert all(k in KPI_BY_NAME for k in kpis), chart_id
        title = " ".join(figure["title"].split())
        assert title.startswith(" · ".join(kpis)), (chart_id, title)
    assert figures["first-response-time-seconds-priority-urgent"]["title"].endswith("priority=urgent")
    assert figures["revenue-minor-eur"]["title"].endswith("currency=EUR")
    # the how-to-read lines are the registry's formulas
    for kpi in ("first_response_time_seconds", "resolution_time_seconds", "sla_first_reply_hit_rate",
                "sla_resolution_hit_rate", "nps", "csat", "ces", "revenue_minor", "churn_rate", "retention_rate"):
        assert KPI_BY_NAME[kpi].formula.replace("'", "&#x27;") in report_html, kpi


def test_point_counts_match_the_windows_with_values(report_html: str, records: list[dict]) -> None:
    figures = parse(report_html).figures

    def stat_points(kpi: str, dims: dict[str, str]) -> int:
        return sum(1 for r in hourly(records, kpi, dims) for p in ("p50", "p90", "p99")
                   if r["stats"].get(p) is not None)

    def value_points(kpi: str, dims: dict[str, str]) -> int:
        return sum(1 for r in hourly(records, kpi, dims) if r["value"] is not None)

    expected = {
        "first-response-time-seconds-overall": stat_points("first_response_time_seconds", {}),
        "resolution-time-seconds-overall": stat_points("resolution_time_seconds", {}),
        "sla-hit-rates": value_points("sla_first_reply_hit_rate", {}) + value_points("sla_resolution_hit_rate", {}),
        "nps": value_points("nps", {}),
        "csat-ces": value_points("csat", {}) + value_points("ces", {}),
        "churn-rate": value_points("churn_rate", {}),
        **{f"revenue-minor-{c.lower()}": value_points("revenue_minor", {"currency": c}) for c in ("EUR", "GBP", "USD")},
        **{f"first-response-time-seconds-priority-{p}": stat_points("first_response_time_seconds", {"priority": p})
           for p in PRIORITY_ORDER},
    }
    for chart_id, count in expected.items():
        figure = figures[chart_id]
        assert int(figure["svgs"][0]["data-points"]) == count == figure["points"], chart_id
    # plausible for one simulated day of 1h windows: 2 days of event time at most
    assert 10 <= expected["first-response-time-seconds-overall"] // 3 <= 49
    assert 10 <= value_points("sla_resolution_hit_rate", {}) <= 49
    # tiny hourly samples: every NPS point is suppressed and drawn hollow
    assert figures["nps"]["suppressed"] == expected["nps"] > 0
    assert "suppressed" in report_html


def test_header_summarises_the_input(report_html: str, records: list[dict]) -> None:
    hours = sorted({r["window"]["start"] for r in records if r["window"]["size"] == "1h"})
    text = re.sub(r"<[^>]+>", " ", report_html)
    assert f"{len(records):,} after upsert" in text
    assert f"{len(hours)} windows of 1h" in text
    assert f"{hours[0][:10]} {hours[0][11:16]} →" in text
    assert "5m (" in text and "30d (" in text


def test_self_contained_and_deterministic(report_html: str, kpi_file: Path) -> None:
    parser = parse(report_html)
    assert not re.search(r"https?:|ftp:|//[a-z0-9]", report_html, re.IGNORECASE)
    assert parser.links == []
    for tag in ("script", "link", "img", "iframe", "object", "embed"):
        assert parser.tags[tag] == 0, tag
    assert "url(" not in report_html and "@import" not in report_html
    assert parser.tags["svg"] == len(EXPECTED_CHARTS) and parser.tags["style"] == 1
    assert build_report(load_file(kpi_file), "1h") == report_html


# --- upsert, nulls, suppression, empty ---------------------------------------------------------


def record(kpi: str, start: str, value: object, *, n: int = 0, revision: int = 0, size: str = "1h",
           dims: dict | None = None, **stats: object) -> dict:
    hour = int(start[11:13])
    end = f"{start[:11]}{hour + 1:02d}{start[13:]}"
    return {"kpi": kpi, "window": {"size": size, "start": start, "end": end}, "dims": dims or {},
            "value": value, "n": n, "stats": stats, "revision": revision, "final": True}


def test_upsert_keeps_the_highest_revision_and_honours_tombstones() -> None:
    a0 = record("churn_rate", "2026-11-02T10:00:00Z", 0.1, n=10)
    a2 = {**a0, "value": 0.3, "revision": 2}
    a1 = {**a0, "value": 0.2, "revision": 1}
    b = record("churn_rate", "2026-11-02T11:00:00Z", 0.5, n=10)
    latest, superseded = upsert([(None, a0), (None, a2), (None, a1), (record_key(b).encode(), b)])
    assert [r["value"] for r in latest.values()] == [0.3, 0.5] and superseded == 2
    latest, _ = upsert([(None, a0), (record_key(a0), None)])
    assert latest == {}
    assert record_key(a0) == "churn_rate|1h|2026-11-02T10:00:00Z|-"
    assert record_key({**a0, "dims": {"team": "b", "priority": "high"}}).endswith("|priority=high,team=b")


def test_revisions_in_a_file_show_the_latest(tmp_path: Path) -> None:
    rows = [record("sla_first_reply_hit_rate", "2026-11-02T10:00:00Z", v, n=4, revision=rev)
            for rev, v in ((0, 0.25), (1, 0.75))]
    path = tmp_path / "k.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n\n")
    loaded = load_file(path)
    assert (loaded.read, loaded.superseded, len(loaded.records)) == (2, 1, 1)
    document = build_report(loaded, "1h")
    assert "first reply 75.0%" in document and "25.0%" not in document


def test_nulls_suppressed_scores_and_empty_series() -> None:
    rows = [
        record("churn_rate", "2026-11-02T10:00:00Z", None, subscribers_at_start=0),
        record("churn_rate", "2026-11-02T11:00:00Z", 0.02, n=50),
        record("nps", "2026-11-02T10:00:00Z", 50.0, n=4, promoters=2, passives=2, detractors=0,
               margin_of_error=48.0, suppressed=True),
        record("nps", "2026-11-02T11:00:00Z", 20.0, n=40, promoters=20, passives=8, detractors=12,
               margin_of_error=27.0, suppressed=False),
        record("nps", "2026-11-02T12:00:00Z", 30.0, n=45, promoters=22, passives=13, detractors=9,
               margin_of_error=25.0, suppressed=False),
    ]
    figures = parse(document := build_report(rows, "1h")).figures
    assert figures["churn-rate"]["points"] == 1 and "no data (zero denominator)" in document
    assert (figures["nps"]["points"], figures["nps"]["suppressed"]) == (3, 1)
    assert "<polygon" in document  # the margin-of-error band of the two published windows
    assert "± 27.0" in document
    for empty in ("first-response-time-seconds-overall", "sla-hit-rates", "csat-ces", "revenue-minor"):
        assert figures[empty]["points"] == 0
    assert document.count("no data in these windows") >= 10
    assert "<svg" in build_report([], "1h")  # nothing at all: every chart says so


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl"
    path.write_text('{"kpi": "nps"}\n')
    with pytest.raises(ReportError, match=r"k.jsonl:1: not a KPI record"):
        load_file(path)
    path.write_text("{not json\n")
    with pytest.raises(ReportError, match=r"k.jsonl:1: not JSON"):
        load_file(path)
    with pytest.raises(ReportError, match="no such file"):
        load_source(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ReportError, match="window"):
        build_report([], "7m")


def test_cli_writes_the_report(kpi_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli_app, ["report", "--from", str(kpi_file), "--out", str(out), "--window", "1d"])
    assert result.exit_code == 0, result.output
    assert "1d windows charted" in result.output and out.read_text().count("<svg") == len(EXPECTED_CHARTS)
    result = CliRunner().invoke(cli_app, ["report", "--from", str(kpi_file), "--out", str(out), "--window", "2h"])
    assert result.exit_code == 2 and "no 2h windows" in result.output and "5m, 1h, 1d, 30d" in result.output


@pytest.mark.kafka
def test_report_from_the_kpi_topic_upserts(kafka, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer

    from streams.settings import load_settings

    topic = kafka.new_topic("report-kpi", partitions=2, compacted=True)
    first = record("sla_first_reply_hit_rate", "2026-11-02T10:00:00Z", 0.25, n=4)
    gone = record("sla_first_reply_hit_rate", "2026-11-02T11:00:00Z", 0.5, n=2)
    messages = [(first, 0), ({**first, "value": 0.75, "revision": 1}, 0), (gone, 1), (None, 1)]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for value, partition in messages:
                key = record_key(value or gone).encode()
                await producer.send_and_wait(topic, orjson.dumps(value) if value else None, key=key,
                                             partition=partition)
        finally:
            await producer.stop()

    asyncio.run(send())
    loaded = load_source(topic, lambda: load_settings(bootstrap_servers=kafka.bootstrap), timeout_s=30)
    assert isinstance(loaded, Loaded) and loaded.read == 4
    assert [(r["value"], r["revision"]) for r in loaded.records] == [(0.75, 1)]
    assert "first reply 75.0%" in build_report(loaded, "1h")


# --- rendered in a real browser ----------------------------------------------------------------


def png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the filtered scanlines of an 8-bit RGB/RGBA PNG (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, header = 8, [], b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    stride = 1 + width * (3 if colour == 2 else 4)
    raw = zlib.decompress(b"".join(idat))
    assert len(raw) == stride * height
    return width, height, [raw[i * stride:(i + 1) * stride] for i in range(height)]


def busy(row: bytes) -> bool:
    """A scanline that is not one flat colour: under any PNG filter a uniform row is a
    handful of distinct bytes (the colour, or zeros after the first pixel)."""
    return len(set(row[1:])) > 8


def test_report_renders_in_headless_chromium(report_html: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium not found: scripts/bootstrap.sh installs Debian's chromium "
                    "(apt-get install chromium)", pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "report-sample-day-1h.html"
    shot = ARTIFACTS / "report-sample-day-1h.png"
    page.write_text(report_html, encoding="utf-8")
    shot.unlink(missing_ok=True)
    began = time.perf_counter()
    run = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={SCREEN_W},{SCREEN_H}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert run.returncode == 0 and shot.is_file(), f"chromium failed ({run.returncode}): {run.stderr[-2000:]}"
    assert time.perf_counter() - began < 120

    width, height, rows = png_rows(shot)
    assert (width, height) == (SCREEN_W, SCREEN_H)
    assert shot.stat().st_size > 100_000  # a flat page compresses to a few kB
    flags = [busy(row) for row in rows]
    assert sum(flags) > height * 0.4, "the screenshot is mostly blank"
    assert any(flags[:150]), "no header at the top"
    assert not any(flags[-40:]), "the report is taller than the screenshot (raise SCREEN_H)"
