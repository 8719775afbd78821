"""Progress reporting. Library functions take ``progress(stage, done, total)``; the CLI passes a rich bar.

rich is imported only when a progress bar is shown on a terminal: importing rich.console and
rich.progress costs ~20 ms of start-up, a measurable share of a short ``avmix mix``.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, Optional

from avmix import signals

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.progress import Progress

ProgressFn = Optional[Callable[[str, float, float], None]]

_stderr: "Console | None" = None
_quiet_bars = 0  # quiet Bars open: notes from code that has no quiet flag of its own stay silent


def notes_off() -> bool:
    """True inside a ``with Bar(quiet=True)`` block (a --quiet command)."""
    return _quiet_bars > 0


def _console() -> "Console":
    global _stderr
    if _stderr is None:
        from rich.console import Console
        _stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    return _stderr


def report(progress: ProgressFn, stage: str, done: float, total: float) -> None:
    signals.check()  # a checkpoint of every long loop: a swallowed Ctrl-C still stops the run
    if progress is not None:
        progress(stage, done, total)


class Bar:
    """A rich progress bar on stderr, one line per stage; silent when quiet or stderr is not a terminal."""

    def __init__(self, *, quiet: bool = False):
        self.quiet = quiet  # also silences the library's notes (compose.render reads it)
        self.enabled = not quiet and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "Bar":
        global _quiet_bars
        _quiet_bars += self.quiet
        if self.enabled:
            from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)
            self._progress = Progress(
                TextColumn("[bold]{task.description:<10}"), BarColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=_console(), transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        global _quiet_bars
        _quiet_bars -= self.quiet
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, stage: str, done: float, total: float) -> None:
        if self._progress is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=max(total, 1e-9))
        self._progress.update(self._tasks[stage], completed=done, total=max(total, 1e-9))


def note(message: str, *, quiet: bool = False) -> None:
    """A one-line notice on stderr (e.g. which backend was chosen and why)."""
    if quiet:
        return
    line = f"avmix: {message}"
    if _stderr is not None:  # a progress bar is (or was) on screen: print through it so it is not torn
        _stderr.print(line, markup=False, emoji=False)
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
