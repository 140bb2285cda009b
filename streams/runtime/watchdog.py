"""Event-loop stall watchdog: when the worker's single event loop is held by one piece
of work (a big merge, a garbage collection, a slow encode), every other task waits with
it - stage 1 takes no input, /metrics answers late, gauges go stale. This finds out how
long and where.

A loop task stamps a heartbeat every ``interval_s``; a daemon thread checks the stamp as
often and, while it is older than ``threshold_s``, samples the loop thread's Python stack
(``sys._current_frames``) every ``interval_s / 5``. When the loop comes back the stall
is recorded: its length goes to a histogram (exported as
``crm_event_loop_stall_seconds``) and a WARNING names where the samples fell, e.g.
``event loop blocked 0.84 s; in state.py:162 encode_bucket < stage2.py:255 _commit (9 of
12 samples); gc gen 1 0.31 s`` - at most one line per 10 s: the longest stall, with how
many others there were. Compiled core functions have no Python frame and do not let the
sampling thread take the interpreter lock: a stall inside them is reported at the next
Python-level call they make (a msgspec struct's method, say) or else at the line of the
runtime that called them. Garbage collections are timed through
``gc.callbacks`` and named when they overlap a stall; every collection's time also goes
to ``observe_gc`` (exported as ``crm_gc_pause_seconds_total{generation}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("crm_kpi.watchdog")

PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # .../streams


def innermost_own_frame(frame, package_dir: str = PACKAGE_DIR) -> str | None:
    """``file.py:line function`` of the innermost frame in our package (``None``: the
    stack holds none of ours, e.g. the loop waiting in ``select``), followed by
    ``< file.py:line function`` of the innermost runtime frame (``streams/runtime``)
    that called it, when that is another: which call of the runtime the time went to."""
    inner = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(package_dir) and "/watchdog.py" not in filename:
            place = f"{Path(filename).name}:{frame.f_lineno} {frame.f_code.co_name}"
            if inner is None:
                inner = place
                if "/runtime/" in filename:
                    return inner
            elif "/runtime/" in filename:
                return f"{inner} < {place}"
        frame = frame.f_back
    return inner


def describe_stall(seconds: float, places: Counter, samples: int, gc_seconds: dict[int, float]) -> str:
    """One line for the log: the stall's length, where most samples fell, and the
    garbage collections inside it."""
    parts = [f"event loop blocked {seconds:.2f} s"]
    if places:
        where = ", ".join(f"{place} ({count} of {samples} samples)" for place, count in places.most_common(3))
        parts.append(f"in {where}")
    for generation, spent in sorted(gc_seconds.items()):
        parts.append(f"gc gen {generation} {spent:.2f} s")
    return "; ".join(parts)


class LoopWatchdog:
    """Measures and explains event-loop stalls (see the module text). ``observe``
    receives each stall's length in seconds; ``start`` inside the running loop."""

    def __init__(self, observe: Callable[[float], None], threshold_s: float = 0.25,
                 interval_s: float = 0.05, clock: Callable[[], float] = time.monotonic,
                 package_dir: str = PACKAGE_DIR, log_interval_s: float = 10.0,
                 observe_gc: Callable[[int, float], None] | None = None) -> None:
        self.observe = observe
        self.observe_gc = observe_gc  # every collection: (generation, seconds)
        self.package_dir = package_dir
        self.log_interval_s = log_interval_s
        self.logged_at = -float("inf")  # clock time of the last stall line
        self.worst: tuple[float, str] | None = None  # the longest stall not logged yet
        self.held = 0  # stalls since the last line
        self.held_seconds = 0.0
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.clock = clock
        self.beat = clock()
        self.loop_thread: int | None = None
        self.places: Counter = Counter()
        self.samples = 0
        self.gc_started: float | None = None
        self.gc_seconds: dict[int, float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.task: asyncio.Task | None = None

    # -- garbage collections (called on the thread that allocates: the loop's) ------
    def _gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.gc_started = self.clock()
        elif self.gc_started is not None:
            spent = self.clock() - self.gc_started
            self.gc_started = None
            generation = info.get("generation", -1)
            if self.observe_gc is not None:
                self.observe_gc(generation, spent)
            if spent >= self.interval_s:  # only pauses that can matter to a stall
                with self.lock:
                    self.gc_seconds[generation] = self.gc_seconds.get(generation, 0.0) + spent

    # -- the loop side --------------------------------------------------------------
    async def _heartbeat(self) -> None:
        while True:
            before = self.clock()
            self.beat = before
            await asyncio.sleep(self.interval_s)
            late = self.clock() - before - self.interval_s
            if late >= self.threshold_s:
                self._report(late)
            else:
                with self.lock:
                    self.places.clear()
                    self.samples = 0
                    self.gc_seconds.clear()
                self._log_held()

    def _report(self, seconds: float) -> None:
        with self.lock:
            places, samples, gc_seconds = self.places, self.samples, self.gc_seconds
            self.places, self.samples, self.gc_seconds = Counter(), 0, {}
        self.observe(seconds)
        line = describe_stall(seconds, places, samples, gc_seconds)
        if self.worst is None or seconds > self.worst[0]:
            self.worst = (seconds, line)
        self.held += 1
        self.held_seconds += seconds
        self._log_held()

    def _log_held(self) -> None:
        """At most one line per ``log_interval_s``: the longest stall since the last
        line, and how many others there were (a worker catching up on a backlog stalls
        every second or so)."""
        now = self.clock()
        if self.worst is None or now - self.logged_at < self.log_interval_s:
            return
        line = self.worst[1]
        if self.held > 1:
            line += (f" [the longest of {self.held} stalls in the last {now - self.logged_at:.0f} s, "
                     f"{self.held_seconds:.1f} s blocked in all]")
        log.warning("%s", line)
        self.logged_at = now
        self.worst, self.held, self.held_seconds = None, 0, 0.0

    # -- the sampling thread --------------------------------------------------------
    def _watch(self) -> None:
        # checks once per heartbeat interval; samples five times as often during a stall
        period = self.interval_s
        while not self.stopping.wait(period):
            if self.clock() - self.beat < self.threshold_s or self.loop_thread is None:
                period = self.interval_s
                continue
            period = self.interval_s / 5
            frame = sys._current_frames().get(self.loop_thread)
            place = innermost_own_frame(frame, self.package_dir) if frame is not None else None
            with self.lock:
                self.samples += 1
                if place is not None:
                    self.places[place] += 1

    def start(self) -> None:
        self.loop_thread = threading.get_ident()
        self.beat = self.clock()
        self.task = asyncio.get_running_loop().create_task(self._heartbeat(), name="loop-watchdog")
        gc.callbacks.append(self._gc)
        self.thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self.thread.start()

    async def stop(self) -> None:
        self.stopping.set()
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.thread is not None:
            self.thread.join(timeout=1)
