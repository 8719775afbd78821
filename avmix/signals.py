"""Signal handling: SIGTERM handled like Ctrl-C, so that the same clean-up runs (temp files, ffmpeg
children). Python delivers signals only to the main thread, so elsewhere these do nothing."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

from avmix.errors import Terminated

STOPS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def handling(handler: Callable, signals=STOPS) -> Iterator[None]:
    """Inside the block ``handler(signum, frame)`` handles ``signals``; the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _depth
    old: dict = {}
    _depth += handler is _raise
    try:
        for s in signals:
            old[s] = signal.signal(s, handler)
        yield
    finally:
        try:
            _restore(old)
        finally:
            _depth -= handler is _raise
            if not _depth:
                _raised.clear()


def _restore(old: dict) -> None:
    """Put every old handler back, also when a signal lands meanwhile (it is raised afterwards): a
    restore stopped half-way would leave, say, SIGTERM ignored for the rest of the run."""
    caught = None
    while True:
        try:
            for s, h in old.items():
                signal.signal(s, h)
            break
        except KeyboardInterrupt as e:  # (Terminated is one) from a handler just put back
            caught = caught or e
    if caught is not None:
        raise caught


# stop signals that _raise turned into exceptions inside the handling(_raise) blocks still open
_raised: list[int] = []
_depth = 0


def _raise(signum, frame) -> None:
    _raised.append(signum)
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def check() -> None:
    """Raise again a stop signal whose exception was swallowed: one raised inside a cffi callback or a
    finalizer is printed and dropped, and the run would go on as if never stopped. Called at every
    progress report (main thread only; elsewhere signals never raise)."""
    if _raised and _depth and threading.current_thread() is threading.main_thread():
        raise Terminated if _raised[-1] == signal.SIGTERM else KeyboardInterrupt


def sigterm_as_interrupt() -> contextlib.AbstractContextManager:
    """Inside the block SIGTERM raises :class:`avmix.errors.Terminated` (a KeyboardInterrupt; the CLI
    exits 143)."""
    return handling(_raise, (signal.SIGTERM,))
