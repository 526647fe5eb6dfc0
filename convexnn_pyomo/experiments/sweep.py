"""One driver for the resumable studies (``imbalance``, ``constraints``, ``fairness``; the guide is :func:`run`).

A study is data (:class:`Study`): a list of *units* (tuples of keys, e.g. ``(rho, run, method)``),
a function that computes one unit's rows of a CSV file, the columns, a summary and a figure.
:func:`run` does the rest: it checks before writing, writes ``config.json``, appends a line on the
software that runs (version, git commit) to ``provenance.jsonl``, skips the units
already in the CSV (resume), runs the others in this process or in worker processes that report
progress through a queue (:func:`execute`), shows a progress bar with an ETA
(:class:`SweepProgress`), appends each unit's rows crash-safely (:func:`append_rows`; read back
without a torn last line by :func:`read_rows`) and ends with ``summary.csv`` and the figure.
:func:`interval_stats` summarises a metric with a clipped 95% interval.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import queue as _queue
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, is_dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MIN_RUNS_FOR_INTERVAL", "Study", "SweepProgress", "append_rows", "execute", "interval_stats", "provenance",
           "read_rows", "run", "write_atomic_csv"]

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
    _append_fsynced(path, buf.getvalue())


def _append_fsynced(path: Path, text: str) -> None:
    """Append ``text`` in one write and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
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


# -- the driver ----------------------------------------------------------------------------------

ProgressFn = Callable[[dict], None]


@dataclass
class Study:
    """A resumable study, described as data; :func:`run` runs it.

    Required: ``name`` (the progress bar's and the closing line's), ``config`` (a dataclass or a
    dict, written to ``config.json``), ``units`` (tuples of ``str``/``int``/``float`` keys, in the
    order to run them), ``run_unit(unit, progress) -> rows`` (one unit's rows, dicts over
    ``columns``; ``progress``, when not ``None``, takes event dicts), ``columns`` (of the rows
    file), ``key`` (the columns that name a unit, in the order of its tuple), ``summarize(rows) ->
    summary`` (written to ``summary.csv``) and ``figure(rows, summary, path)``.

    Optional: ``table(summary) -> str`` (the printed table), the file names, ``preflight()`` (checks
    before anything is written; raise to refuse), ``warm_up()`` (imports done once per process,
    outside the units' time), ``label(unit, round) -> str`` (how the bar names a running unit) and
    ``eta_keys(unit)`` (keys of finished units whose mean time predicts ``unit``'s, most specific
    first)."""

    name: str
    config: Any
    units: Sequence[Unit]
    run_unit: Callable[[Unit, ProgressFn | None], list[dict]]
    columns: Sequence[str]
    key: Sequence[str]
    summarize: Callable[[pd.DataFrame], pd.DataFrame]
    figure: Callable[[pd.DataFrame, pd.DataFrame, Path], object]
    table: Callable[[pd.DataFrame], str] | None = None
    rows_file: str = "results.csv"
    figure_file: str = "figure.png"
    preflight: Callable[[], None] | None = None
    warm_up: Callable[[], None] | None = None
    label: Callable[[Unit, int], str] | None = None
    eta_keys: Callable[[Unit], list] | None = None

    def todo(self, done: pd.DataFrame) -> list[Unit]:
        """The units without a row in ``done`` (the rows file read back), in order."""
        if not len(done) or not self.units:
            return list(self.units)
        types = [type(v) for v in self.units[0]]
        keys = {_cast(r, types) for r in done[list(self.key)].itertuples(index=False)}
        return [u for u in self.units if u not in keys]

    def progress_bar(self, todo: list[Unit], jobs: int) -> SweepProgress:
        """The bar over all units, ``todo`` of them left, on ``jobs`` workers."""
        return SweepProgress(len(self.units), todo, jobs, self.name, self.key, self.label, self.eta_keys)


def run(study: Study, out: str | Path, jobs: int = 1, progress: bool = True, show_table: bool = False) -> pd.DataFrame:
    """Run (or resume) ``study`` into the folder ``out``; returns the summary table.

    In order: ``study.preflight()`` (nothing is written before it passes); ``out`` is created and
    ``study.config`` written to ``out/config.json`` (rewritten on every run: a resumed folder is not
    compared with the new configuration) and one line of :func:`provenance` appended to
    ``out/provenance.jsonl`` (one per run, with the units it is to run: a resumed folder says which
    code wrote which rows); the units with rows in ``out/<rows_file>`` are skipped;
    the others run in this process (``jobs <= 1``) or in ``jobs`` worker processes, and each
    finished unit's rows are appended at once (whole lines, fsynced: a killed run loses at most the
    units running, and a rerun resumes); with ``progress`` a bar names the running units and an ETA
    from the measured time of finished units; last, ``out/summary.csv`` (``study.summarize`` of all
    rows), the figure ``out/<figure_file>`` and, with ``progress``, a closing line (and, with
    ``show_table``, ``study.table(summary)``) on stdout.

    A new study writes only its data: the unit runner, the columns, the summary and the figure.
    With ``jobs > 1``, ``run_unit`` and ``warm_up`` must be picklable (module-level functions or
    :func:`functools.partial` of them over a picklable config).  Progress events are dicts with the
    ``key`` columns and, optionally, ``"round"`` (how far the unit is).  A row's ``seconds`` (the
    ETA's measure) is the unit's wall time unless ``run_unit`` gives its own::

        def run_unit(unit, progress):
            group, seed = unit
            return [{"group": group, "seed": seed, "error": fit(group, seed)}]

        study = Study(name="toy", config={"seeds": 2}, units=[(g, s) for s in range(2) for g in ("a", "b")],
                      run_unit=run_unit, columns=["group", "seed", "error", "seconds"], key=["group", "seed"],
                      summarize=lambda rows: rows.groupby("group", as_index=False)["error"].mean(),
                      figure=lambda rows, summary, path: summary.plot.bar(x="group").figure.savefig(path))
        summary = run(study, "out")  # out/results.csv, config.json, summary.csv, figure.png

    A rerun after an interruption runs only the units not yet in ``out/results.csv``."""
    if study.preflight is not None:
        study.preflight()
    out = Path(out)
    started = provenance()  # before anything is written: a study inside the checkout does not mark it modified
    out.mkdir(parents=True, exist_ok=True)
    config = asdict(study.config) if is_dataclass(study.config) else dict(study.config)
    (out / "config.json").write_text(json.dumps(config, indent=2, default=list) + "\n")
    path = out / study.rows_file
    done = read_rows(path, study.columns)
    if path.exists() and list(done.columns) != list(study.columns):  # a folder of an older version
        gone = [c for c in done.columns if c not in study.columns]
        if gone:
            raise ValueError(f"{path} has columns this study no longer writes ({', '.join(gone)}): "
                             "resume it with the version that wrote it, or use a new --out folder")
        write_atomic_csv(done.reindex(columns=list(study.columns)), path)  # its rows kept, new columns empty
    todo = study.todo(done)
    _append_fsynced(out / "provenance.jsonl", json.dumps({**started, "units": _plain(list(todo))}, default=str) + "\n")
    bar = study.progress_bar(todo, jobs) if progress else None
    t0 = time.perf_counter()
    try:
        for unit, rows in execute(todo, partial(_timed, study.run_unit), jobs, bar, study.warm_up):
            append_rows(path, rows, study.columns)  # one writer: this process
            if bar:
                bar.finished(unit, rows)
    finally:
        if bar:
            bar.close()
    return _finish(study, out, time.perf_counter() - t0, progress, show_table)


def _git(args: list[str], folder: Path) -> str | None:
    """``git args`` in ``folder``, stripped; ``None`` without git or outside a checkout."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, errors="replace",
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _source_state() -> dict:
    """The commit of the checkout the package runs from (``None`` for an installed copy) and, when its
    code (the package and ``pyproject.toml``, not results) differs from that commit, a hash of the
    difference."""
    package = Path(__file__).resolve().parents[1]
    root = package.parent
    top = _git(["rev-parse", "--show-toplevel"], root)
    if top is None or Path(top).resolve() != root:  # an installed copy, perhaps inside another checkout
        return {"commit": None, "modified": None}
    code = ["--", package.name, "pyproject.toml"]
    diff = _git(["diff", "HEAD", *code], root)
    return {"commit": _git(["rev-parse", "HEAD"], root), "modified": bool(diff),
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None}


def _plain(value):
    """``value`` with NumPy scalars as Python's (JSON numbers and booleans, not strings)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def provenance() -> dict:
    """What produced a study's rows: the time, the command line, the package's version and, when it
    runs from a git checkout, its commit and whether its code differs from it (``modified``, with a
    hash of the difference), the versions of Python, NumPy, SciPy, pandas, Pyomo, numba and CasADi."""
    from importlib import metadata

    from .. import __version__

    versions = {}
    for name in ("numpy", "scipy", "pandas", "pyomo", "numba", "casadi"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv, "convexnn_pyomo": __version__,
            **_source_state(), "python": platform.python_version(), **versions}


def _finish(study: Study, out: Path, seconds: float, progress: bool, show_table: bool) -> pd.DataFrame:
    """``summary.csv`` and the figure from all rows; the closing line and the table."""
    rows = read_rows(out / study.rows_file, study.columns)
    summary = study.summarize(rows)
    write_atomic_csv(summary, out / "summary.csv")
    study.figure(rows, summary, out / study.figure_file)
    if progress:
        files = f"{out}/{study.rows_file}, summary.csv, {study.figure_file}"
        print(f"{study.name} finished in {seconds:.0f} s; wrote {files}")
    if show_table and study.table is not None:
        print(study.table(summary))
    return summary


def _timed(run_unit: Callable, unit: Unit, progress: ProgressFn | None) -> list[dict]:
    """``run_unit``'s rows, each with the unit's wall time as ``seconds`` unless it has its own."""
    t0 = time.perf_counter()
    rows = run_unit(unit, progress)
    seconds = round(time.perf_counter() - t0, 3)
    return [{"seconds": seconds, **row} for row in rows]


def _cast(values, types: Sequence[type]) -> Unit:
    """A unit's key from values read back (CSV cells, event fields): each of its element's type."""
    return tuple(t(v) for t, v in zip(types, values))


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


def execute(todo: list[Unit], run_unit: Callable[[Unit, ProgressFn | None], list[dict]], jobs: int,
            bar: SweepProgress | None, warm_up: Callable[[], None] | None = None) -> Iterator[tuple[Unit, list]]:
    """Yield ``(unit, rows)`` as units finish.  ``run_unit(unit, progress)`` computes one unit
    (``progress``, when not ``None``, receives its events); it and ``warm_up`` (imports done once
    per process, so that a unit's measured time excludes them) must be picklable for ``jobs > 1``,
    when the units run in worker processes whose events reach ``bar`` through a queue."""
    if not todo:
        return
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

    An event names its unit by the ``key`` fields (:meth:`unit_of`) and how far it is by
    ``"round"``; ``label(unit, round)`` and ``eta_keys(unit)`` replace the defaults (the unit's keys
    and rounds; the mean of all finished units)."""

    def __init__(self, total: int, todo: list[Unit], jobs: int, desc: str, key: Sequence[str] = (),
                 label: Callable[[Unit, int], str] | None = None, eta_keys: Callable[[Unit], list] | None = None):
        from tqdm import tqdm

        self.jobs, self.todo, self.key = max(1, jobs), set(todo), tuple(key)
        self._types = [type(v) for v in todo[0]] if todo else []
        self._label, self._eta_keys = label, eta_keys
        self.running: dict[Unit, tuple[float, int]] = {}  # unit -> (start time, round)
        self.seconds: dict[Hashable, list[float]] = {}
        self.bar = tqdm(total=total, initial=total - len(todo), desc=desc, unit="fit",
                        bar_format="{desc}: {n_fmt}/{total_fmt} fits |{bar}| {elapsed} elapsed{postfix}")
        self._show()

    def unit_of(self, ev: dict) -> Unit:
        return _cast((ev[k] for k in self.key), self._types)

    def eta_keys(self, unit: Unit) -> list[Hashable]:
        """Keys of finished units whose mean time predicts ``unit``'s, most specific first."""
        return self._eta_keys(unit) if self._eta_keys else []

    def label(self, unit: Unit, round_: int) -> str:
        if self._label:
            return self._label(unit, round_)
        return " ".join(f"{k}={v}" for k, v in zip(self.key, unit)) + (f" round {round_}" if round_ else "")

    def event(self, ev: dict) -> None:
        unit = self.unit_of(ev)
        if unit in self.todo:  # a late event of a finished unit is ignored
            start = self.running.get(unit, (time.perf_counter(), 0))[0]
            self.running[unit] = (start, int(ev.get("round", 0)))
            self._show()

    def drain(self, events) -> None:
        while True:
            try:
                self.event(events.get_nowait())
            except _queue.Empty:
                break
        self._show()

    def finished(self, unit: Unit, rows: list[dict]) -> None:
        """``unit`` is done; its first row's ``seconds`` joins the ETA's measures."""
        self.todo.discard(unit)
        self.running.pop(unit, None)
        for key in (*self.eta_keys(unit), ()) if rows else ():
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
