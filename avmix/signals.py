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
    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        with _blocked(signals):  # a signal arriving now must not stop the restoring half-way
            for s, h in old.items():
                signal.signal(s, h)


@contextlib.contextmanager
def _blocked(signals) -> Iterator[None]:
    """Signals held by the kernel inside the block and delivered after it (no-op without
    pthread_sigmask, i.e. on Windows)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    before = mask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, before)


def _raise(signum, frame) -> None:
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> contextlib.AbstractContextManager:
    """Inside the block SIGTERM raises :class:`avmix.errors.Terminated` (a KeyboardInterrupt; the CLI
    exits 143)."""
    return handling(_raise, (signal.SIGTERM,))
