"""Live progress: the figures a long command reports as it runs, and their terminal display.

A solve reports events ``Progress(stage, elapsed_s, incumbent, bound, gap)``: a new stage
(validate, index, build, solve, extract, ...), and during the search the incumbent, the best
bound and the gap as they move (HiGHS's MIP callbacks on the mip route, the neighbourhood
search on the lns route). Figures are in the units and sense of the objective; None when not
known yet.

    with progress.reporting(callback, log="solve.log"):   # the API: allocator.solve(progress=)
        progress.stage("build")                             # the pipeline
        report = progress.current()                         # a search, before its threads start
        report.search(incumbent=..., bound=..., gap=...)

``log`` keeps a text log: allocator's own stage and incumbent lines and, through
:meth:`Reporter.solver_log`, HiGHS's log. :func:`display` is the rich live view the CLI
shows on a terminal (stderr); it shows nothing when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MIN_INTERVAL_S = 0.25  # search events with unchanged figures are sent at most this often


@dataclass(frozen=True)
class Progress:
    """One progress event."""

    stage: str
    elapsed_s: float
    incumbent: float | None = None
    bound: float | None = None
    gap: float | None = None


Callback = Callable[[Progress], None]


def _finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class Reporter:
    """Sends progress events to a callback and a log file; thread-safe (the lns search and
    HiGHS call it from their threads)."""

    def __init__(self, callback: Callback | None = None, log: IO[str] | None = None):
        self.t0 = time.perf_counter()
        self.callback = callback
        self.log = log
        self._lock = threading.Lock()
        self._stage = "start"
        self._figures: tuple = (None, None, None)
        self._sent = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def stage(self, name: str) -> None:
        with self._lock:
            self._stage = name
            self._figures = (None, None, None)
            event = Progress(name, self.elapsed())
            self._write(f"stage {name}")
        self._send(event)

    def search(self, incumbent=None, bound=None, gap=None) -> None:
        """The search's current figures; the gap is computed when not given."""
        inc, bnd = _finite(incumbent), _finite(bound)
        gap = _finite(gap)
        if gap is None and inc is not None and bnd is not None:
            gap = max(0.0, abs(inc - bnd) / max(abs(inc), 1e-9))
        figures = (inc, bnd, gap)
        now = time.perf_counter()
        with self._lock:
            changed = figures != self._figures
            if not changed and now - self._sent < MIN_INTERVAL_S:
                return
            self._sent = now
            self._figures = figures
            event = Progress(self._stage, now - self.t0, inc, bnd, gap)
            if changed and inc is not None:
                self._write(f"incumbent {inc:,.2f} bound {_fmt(bnd)} gap {_pct(gap)}")
        self._send(event)

    def solver_log(self, text: str) -> None:
        """A line of HiGHS's own log (only kept with a log file)."""
        if self.log is not None:
            with self._lock:
                self.log.write(text if text.endswith("\n") else text + "\n")
                self.log.flush()

    @property
    def wants_solver_log(self) -> bool:
        return self.log is not None

    def _write(self, line: str) -> None:
        if self.log is not None:
            self.log.write(f"[allocator {self.elapsed():9.2f} s] {line}\n")
            self.log.flush()

    def _send(self, event: Progress) -> None:
        if self.callback is not None:
            self.callback(event)


_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "allocator_progress", default=None)


def current() -> Reporter | None:
    """The reporter of the running command (None: nobody listens). Threads do not inherit
    it: a search takes it before starting its threads."""
    return _current.get()


def stage(name: str) -> None:
    r = _current.get()
    if r is not None:
        r.stage(name)


@contextlib.contextmanager
def reporting(callback: Callback | None = None, log: str | Path | None = None) -> Iterator[Reporter | None]:
    """Report the enclosed work's progress to ``callback`` and/or the file ``log``. Without
    either, an enclosing reporter (the CLI's) keeps listening."""
    if callback is None and log is None:
        yield _current.get()
        return
    outer = _current.get()
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(log, "a", encoding="utf-8")) if log is not None else None
        if outer is not None and callback is not None:  # both listen: the caller and the CLI
            inner_cb = callback

            def callback(event: Progress, _a=inner_cb, _b=outer.callback) -> None:
                _a(event)
                if _b is not None:
                    _b(event)
        reporter = Reporter(callback if callback is not None else (outer.callback if outer else None),
                            fh if fh is not None else (outer.log if outer else None))
        token = _current.set(reporter)
        try:
            yield reporter
        finally:
            _current.reset(token)


# --------------------------------------------------------------------------- display


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def _clock(s: float) -> str:
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Display:
    """The rich live view of one command on stderr: title, stage, elapsed and, during a
    search, incumbent, bound and gap. Use as a progress callback. Disappears when the command
    ends (what it leaves is the command's own output)."""

    def __init__(self, title: str, *, enabled: bool | None = None, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False)
        self.enabled = self.console.is_terminal if enabled is None else bool(enabled)
        self.title = title
        self.t0 = time.perf_counter()
        self.last: Progress | None = None
        self._live = None

    def __call__(self, event: Progress) -> None:
        self.last = event

    def __rich__(self):
        from rich.table import Table

        ev = self.last
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        t.add_column(style="dim")
        t.add_column()
        t.add_row(self.title, f"stage {ev.stage if ev else 'start'}", "elapsed", _clock(time.perf_counter() - self.t0))
        if ev is not None and (ev.incumbent is not None or ev.bound is not None):
            t.add_row("", "", "incumbent", _fmt(ev.incumbent))
            t.add_row("", "", "bound", _fmt(ev.bound))
            t.add_row("", "", "gap", _pct(ev.gap))
        return t

    def __enter__(self) -> Display:
        if self.enabled:
            from rich.live import Live

            self._live = Live(self, console=self.console, refresh_per_second=4, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        return False


@contextlib.contextmanager
def shown(title: str, *, quiet: bool = False, log: str | Path | None = None) -> Iterator[Reporter | None]:
    """For a CLI command: the live display on a terminal (not with ``quiet``) and the log
    file, both fed by one reporter around the command."""
    view = Display(title, enabled=False if quiet else None)
    with view, reporting(view if view.enabled else None, log) as reporter:
        yield reporter
