"""Machinery shared by the resumable sweeps (``imbalance``, ``constraints``).

A sweep is a list of *units* (tuples of keys, e.g. ``(rho, run, method)``), each producing rows
of a CSV file.  This module appends those rows crash-safely (:func:`append_rows`), reads them back
without a torn last line (:func:`read_rows`), runs the units in this process or in worker
processes that report progress through a queue (:func:`execute`), shows a progress bar with an
ETA (:class:`SweepProgress`) and summarises a metric with a clipped 95% interval
(:func:`interval_stats`).
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import queue as _queue
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["MIN_RUNS_FOR_INTERVAL", "SweepProgress", "append_rows", "execute", "interval_stats", "read_rows",
           "write_atomic_csv"]

#: Below this many runs a 95% t-interval is not informative (t = 12.7 with 2 runs): none is given.
MIN_RUNS_FOR_INTERVAL = 3

Unit = tuple


def append_rows(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    """Append whole lines and fsync: a killed sweep never leaves a half-written row."""
    new = not path.exists() or path.stat().st_size == 0
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    if new:
        w.writeheader()
    for r in rows:
        w.writerow(r)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, buf.getvalue().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_rows(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The CSV file without a possibly torn last line (a crash between write and fsync)."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(columns))
    text = path.read_text()
    if not text.endswith("\n"):  # torn tail: drop it (and rewrite the file without it)
        text = text[: text.rfind("\n") + 1]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return pd.read_csv(io.StringIO(text))


def write_atomic_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` through a temporary file (never a half-written table)."""
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def interval_stats(v: np.ndarray, lo: float, hi: float) -> dict:
    """Mean, std, min, max and the 95% t-interval of the mean (half-width and bounds clipped to
    ``[lo, hi]``); the interval is NaN with fewer than :data:`MIN_RUNS_FOR_INTERVAL` values."""
    from scipy import stats

    mean = float(np.mean(v))
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    half = float(stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v))) if len(v) >= MIN_RUNS_FOR_INTERVAL else math.nan
    no_interval = math.isnan(half)
    return {"mean": mean, "std": std, "min": float(np.min(v)), "max": float(np.max(v)), "ci95": half,
            "ci_low": math.nan if no_interval else max(lo, mean - half),
            "ci_high": math.nan if no_interval else min(hi, mean + half)}


# -- running units -------------------------------------------------------------------------------

_WORKER_QUEUE = None


def _init_worker(events, warm_up: Callable[[], None] | None) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = events
    if warm_up is not None:
        warm_up()


def _run_in_worker(run_unit: Callable, unit: Unit) -> list[dict]:
    """A worker's unit: its progress events go to the parent through the queue."""
    return run_unit(unit, _WORKER_QUEUE.put if _WORKER_QUEUE is not None else None)


def execute(todo: list[Unit], run_unit: Callable[[Unit, Callable | None], list[dict]], jobs: int,
            bar: SweepProgress | None, warm_up: Callable[[], None] | None = None) -> Iterator[tuple[Unit, list]]:
    """Yield ``(unit, rows)`` as units finish.  ``run_unit(unit, progress)`` computes one unit
    (``progress``, when not ``None``, receives its events); it and ``warm_up`` (imports done once
    per process, so that a unit's measured time excludes them) must be picklable for ``jobs > 1``,
    when the units run in worker processes whose events reach ``bar`` through a queue."""
    if jobs <= 1 or len(todo) <= 1:
        if warm_up is not None:
            warm_up()
        for unit in todo:
            yield unit, run_unit(unit, bar.event if bar else None)
        return
    ctx = multiprocessing.get_context()
    events = ctx.Queue() if bar else None
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(events, warm_up))
    try:
        futures = {pool.submit(_run_in_worker, run_unit, unit): unit for unit in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield futures[fut], fut.result()
            if bar:  # after the finished units: their late events are ignored
                bar.drain(events)
    finally:  # on an error (or Ctrl-C) do not start the units still queued
        pool.shutdown(wait=True, cancel_futures=True)


class SweepProgress:
    """A tqdm bar over units.  Its postfix names the running units (:meth:`label`) and an ETA: the
    remaining units' expected seconds (the mean of finished units sharing the most specific of
    :meth:`eta_keys`, else of all units) over the number of workers.

    Subclasses say how an event names its unit (:meth:`unit_of`), which finished units predict a
    unit's time (:meth:`eta_keys`) and how a running unit is shown (:meth:`label`)."""

    def __init__(self, total: int, todo: list[Unit], jobs: int, desc: str):
        from tqdm import tqdm

        self.jobs, self.todo = max(1, jobs), set(todo)
        self.running: dict[Unit, tuple[float, int]] = {}  # unit -> (start time, round)
        self.seconds: dict[Hashable, list[float]] = {}
        self.bar = tqdm(total=total, initial=total - len(todo), desc=desc, unit="fit",
                        bar_format="{desc}: {n_fmt}/{total_fmt} fits |{bar}| {elapsed} elapsed{postfix}")
        self._show()

    def unit_of(self, ev: dict) -> Unit:
        raise NotImplementedError

    def eta_keys(self, unit: Unit) -> list[Hashable]:
        """Keys of finished units whose mean time predicts ``unit``'s, most specific first."""
        return []

    def label(self, unit: Unit, round_: int) -> str:
        return str(unit)

    def event(self, ev: dict) -> None:
        unit = self.unit_of(ev)
        if unit in self.todo:  # a late event of a finished unit is ignored
            start = self.running.get(unit, (time.perf_counter(), 0))[0]
            self.running[unit] = (start, int(ev["round"]))
            self._show()

    def drain(self, events) -> None:
        while True:
            try:
                self.event(events.get_nowait())
            except _queue.Empty:
                break
        self._show()

    def finished(self, unit: Unit, rows: list[dict]) -> None:
        self.todo.discard(unit)
        self.running.pop(unit, None)
        for key in (*self.eta_keys(unit), ()):
            self.seconds.setdefault(key, []).append(float(rows[0]["seconds"]))
        self.bar.update(1)
        self._show()

    def eta(self) -> float | None:
        """Seconds left, or ``None`` before any unit finished."""
        if not self.seconds:
            return None
        now = time.perf_counter()
        left = 0.0
        for unit in self.todo:
            guess = next(np.mean(self.seconds[k]) for k in (*self.eta_keys(unit), ()) if k in self.seconds)
            started = self.running.get(unit)
            left += max(guess - (now - started[0]), 0.0) if started else guess
        return left / min(self.jobs, max(len(self.todo), 1))

    def _show(self) -> None:
        eta = self.eta()
        text = f"ETA {self.bar.format_interval(eta) if eta is not None else '?'}"
        for unit, (_, rnd) in self.running.items():
            text += f" | {self.label(unit, rnd)}"
        self.bar.set_postfix_str(text)

    def close(self) -> None:
        self.bar.close()
