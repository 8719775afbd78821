"""One exception family. Each error is a one-line message, an optional hint and an exit code."""
from __future__ import annotations

import os


class AvmixError(Exception):
    """Base error: the CLI prints ``avmix: error: <message>`` (and the hint) and exits with ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, path: str | os.PathLike | None = None):
        if path is not None:
            message = f"{os.fspath(path)}: {message}"
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(AvmixError):
    """Bad options or arguments (exit code 2)."""

    exit_code = 2


class InputError(AvmixError):
    """An input file is missing, unreadable, corrupt or of the wrong kind."""


class OutputError(AvmixError):
    """The output cannot be written (directory missing, exists without -y, equals an input)."""


class FFmpegError(AvmixError):
    """ffmpeg is missing, timed out or failed; the message quotes its last error lines."""


class ModelError(AvmixError):
    """A diffusion or tagging model cannot be found, loaded or driven."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (temp files, ffmpeg children); the
    CLI then exits with 143 instead of 130. Raise it from a SIGTERM handler."""

    raised = False  # set when one was raised (Typer turns the exception into exit code 130)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        Terminated.raised = True
