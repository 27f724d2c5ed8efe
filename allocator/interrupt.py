"""Ctrl-C as commercial solvers handle it: the first stops the search, the second aborts.

While a search runs (a HiGHS run, the lns neighbourhood search), the first Ctrl-C only
requests a stop: every HiGHS object made through :func:`watch` is interrupted at its next
callback, and the search returns the best plan found so far. A second Ctrl-C (or a first one
outside a search: index, build, extraction, export) raises KeyboardInterrupt at once.

    with interrupt.session():         # the API and the sweep: one per command
        ...
        with interrupt.searching():   # solve.py and lns.py around their searches
            h.run()
        interrupt.check_abort()       # a second Ctrl-C came during the run: raise now
    interrupt.requested()             # did the user ask to stop?

The handler is installed only from the main thread and only over Python's default one, so a
process that ignores SIGINT (a sweep worker) or handles it itself keeps its own behaviour.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

_stop = threading.Event()  # a stop was requested (first Ctrl-C)
_abort = threading.Event()  # abort now (second Ctrl-C)
_lock = threading.Lock()
_depth = {"session": 0, "searching": 0}

MESSAGE = "interrupted by the user (Ctrl-C)"


class SolveInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a solve. ``result`` is the interrupted Result: status feasible with the
    best schedule found so far (its bound and gap), or no_solution when there was none."""

    def __init__(self, result: Any):
        super().__init__(MESSAGE)
        self.result = result


def requested() -> bool:
    """True once the user asked to stop (until the next outermost session starts)."""
    return _stop.is_set()


def aborted() -> bool:
    return _abort.is_set()


def request_stop() -> None:
    """Ask every watched search to stop, as the first Ctrl-C does (for tests and embedders)."""
    _stop.set()


def check_abort() -> None:
    """Raise KeyboardInterrupt if a second Ctrl-C arrived while a search was running."""
    if _abort.is_set():
        raise KeyboardInterrupt


def _handler(signum, frame) -> None:
    first = not _stop.is_set()
    _stop.set()
    if not first:
        _abort.set()
    if not first or _depth["searching"] == 0:
        raise KeyboardInterrupt


@contextlib.contextmanager
def session():
    """The outermost session clears an earlier stop request and installs the handler (main
    thread, over Python's default handler only); nested ones do nothing."""
    main = threading.current_thread() is threading.main_thread()
    with _lock:
        outer = _depth["session"] == 0
        _depth["session"] += 1
    previous = None
    if outer:
        _stop.clear()
        _abort.clear()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        with _lock:
            _depth["session"] -= 1


@contextlib.contextmanager
def searching():
    """Mark a search: within it the first Ctrl-C requests a stop instead of raising. Only a
    search of the main thread counts (where the handler runs): while the main thread waits
    for searches in other threads (a thread pool, Dask threads), Ctrl-C raises there and the
    stop request still ends those searches."""
    main = threading.current_thread() is threading.main_thread()
    with session():
        if main:
            _depth["searching"] += 1
        try:
            yield
        finally:
            if main:
                _depth["searching"] -= 1


def watch(h) -> None:
    """Interrupt the HiGHS object ``h`` (simplex, IPM and MIP callbacks) once a stop is
    requested. The callbacks are cheap: a few hundred calls per solve."""
    def check(e) -> None:
        if _stop.is_set():
            e.interrupt()

    for event in ("cbSimplexInterrupt", "cbIpmInterrupt", "cbMipInterrupt"):
        getattr(h, event).subscribe(check)


def ignore_in_worker() -> None:
    """For a worker process of a sweep: Ctrl-C belongs to the parent, which cancels the work."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
