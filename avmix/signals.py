"""SIGTERM handled like Ctrl-C, so that the same clean-up runs (temp files, ffmpeg children)."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from avmix.errors import Terminated


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`avmix.errors.Terminated` (a KeyboardInterrupt; the CLI
    exits 143). Only in the main thread, where Python delivers signals; elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
