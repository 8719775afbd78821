"""The ``avmix`` command line: a Typer app over the library. Parsing and printing only, no DSP here.

Each group of commands lives in ``avmix/commands/<name>.py`` with a ``register(app)`` function.
Every AvmixError becomes one line on stderr and its exit code; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import atexit
import importlib
import os
import re
import sys
import threading
from typing import Optional

import typer
# typer 0.26 vendors click (pinned in pyproject); its exceptions are not the click package's
from typer._click.exceptions import ClickException

from avmix import __version__
from avmix import heap, signals
from avmix.errors import AvmixError, Terminated

COMMAND_MODULES = ["audio", "generate", "render", "models", "score", "batch", "align"]
COMMAND_GROUPS = {"mix": "audio", "concat": "audio", "overlay": "audio", "generate": "generate",
                  "render": "render", "models": "models", "score": "score", "batch": "batch",
                  "align": "align"}

app = typer.Typer(
    name="avmix",
    help="Compose sounding videos from separate audio tracks.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        print(f"avmix {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Compose sounding videos from separate audio tracks."""


_registered: set[str] = set()


def register(names=COMMAND_MODULES) -> typer.Typer:
    """Add the command groups ``names`` to the app (once each) and return it."""
    for name in names:
        if name not in _registered:
            importlib.import_module(f"avmix.commands.{name}").register(app)
            _registered.add(name)
    return app


def _groups_for(argv: list[str]) -> list[str]:
    """Only the group of the command being run: building every command's options costs Typer about
    0.1 s, a quarter of a short job. Help, completion and unknown commands get them all."""
    words = [a for a in argv if not a.startswith("-")]
    first = words[0] if words else None
    if first in COMMAND_GROUPS and not any(a.startswith("--install-completion") or
                                           a.startswith("--show-completion") for a in argv):
        return [COMMAND_GROUPS[first]]
    return COMMAND_MODULES


def _printable(text: str) -> str:
    """Control characters (a newline or escape sequence in a file name) shown escaped, so an error is
    always one line and cannot drive the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _say(message: str) -> None:
    sys.stderr.write(f"avmix: {_printable(message)}\n")
    sys.stderr.flush()


def _signals_raise():
    """SIGINT raises KeyboardInterrupt and SIGTERM Terminated (exit code 143)."""
    return signals.handling(signals._raise)


def _interrupted() -> int:
    _say("interrupted; no output was written")
    return 143 if Terminated.raised else 130


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (never raises, never prints a traceback
    unless ``--debug``). Ctrl-C exits with 130 and SIGTERM with 143, after removing partial outputs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    Terminated.raised = False
    try:
        with _signals_raise():
            rv = register(_groups_for(argv))(args=argv, prog_name="avmix", standalone_mode=False)
        if rv == 130:  # Typer returns 130 for a KeyboardInterrupt (or Terminated) it caught
            return _interrupted()
        return rv if isinstance(rv, int) else 0
    except AvmixError as e:
        if debug:
            raise
        _say(f"error: {e.message}")
        if e.hint:
            _say(f"hint: {e.hint}")
        return e.exit_code
    except typer.Exit as e:
        return e.exit_code
    except ClickException as e:
        # one line like every other error, plus where to look
        _say(f"error: {e.format_message()}")
        ctx = getattr(e, "ctx", None)
        if ctx is not None:
            _say(f"hint: see '{ctx.command_path} --help'")
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted()
    except BrokenPipeError:
        return 1
    except MemoryError:
        _say("error: out of memory")
        return 1
    except OSError as e:
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        _say(f"error: {where}{e.strerror or e}")
        return 1
    except Exception as e:  # a bug: still one line, the traceback only with --debug
        if debug:
            raise
        _say(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return 1


def main() -> None:
    """The console script: runs the command line and ends the process (call :func:`run` for an exit code)."""
    # OpenBLAS starts a thread per core when numpy loads: ~0.05 s of CPU a command, and avmix's products
    # are small (a 10-minute normalised mix took no longer on one thread)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    heap.keep_freed()
    _exit(run())


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown, which frees every module and object one by one: about
    25 ms, a tenth of a short mix. Every output is closed by now. The exit handlers still run (temp files
    removed, the DSP helper thread joined); a thread alive after them gets the normal exit, which waits.
    Under a profiler or tracer the normal exit is kept, so that it can write its results."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: started with that descriptor closed
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: what Python's own exit would report as 120
            code = code or 120
    os._exit(code)
