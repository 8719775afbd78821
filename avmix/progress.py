"""Progress reporting. Library functions take ``progress(stage, done, total)``; the CLI passes a rich bar."""
from __future__ import annotations

import sys
from typing import Callable, Optional

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

ProgressFn = Optional[Callable[[str, float, float], None]]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def report(progress: ProgressFn, stage: str, done: float, total: float) -> None:
    if progress is not None:
        progress(stage, done, total)


class Bar:
    """A rich progress bar on stderr, one line per stage; silent when quiet or stderr is not a terminal."""

    def __init__(self, *, quiet: bool = False):
        self.enabled = not quiet and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "Bar":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description:<10}"), BarColumn(), TaskProgressColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=stderr, transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
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
    if not quiet:
        stderr.print(f"avmix: {message}", markup=False)
