"""``text:PROMPT[@SECONDS]`` inputs: a track described in words, to be synthesised (pure parsing).

``text:heavy rain@8`` is 8 s of heavy rain; ``text:heavy rain`` takes the run's default length. A tail
after the last ``@`` counts as the length only when it looks like a number (``@8``, ``@2.5``, ``@8s``), so
``text:mail me@home`` is all prompt. A file really named ``text:...`` is reached as ``./text:...``.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from avmix.errors import UsageError

PREFIX = "text:"
MAX_SECONDS = 24 * 3600.0
MIN_SECONDS = 0.05  # shorter tracks round to a handful of samples (none at all for 1e-9 s)
_NUMERIC_TAIL = re.compile(r"^\s*[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?\s*s?\s*$")


@dataclass(frozen=True)
class TextSpec:
    prompt: str
    seconds: float | None  # None: the run's --text-duration
    source: str  # the input as given

    def with_default(self, seconds: float) -> float:
        return self.seconds if self.seconds is not None else float(seconds)


def is_text(value: object) -> bool:
    """True for an input of the form ``text:...`` (``./text:...`` is a file)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def check_seconds(seconds: float, what: str) -> float:
    """A track length in seconds: finite, > 0 and at most a day; UsageError naming ``what`` otherwise."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise UsageError(f"{what}: length {seconds!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{what}: length must be more than 0 seconds, not {seconds!r}")
    if value < MIN_SECONDS:
        raise UsageError(f"{what}: length {value:g} s is under the shortest text track, {MIN_SECONDS:g} s")
    if value > MAX_SECONDS:
        raise UsageError(f"{what}: length {value:g} s is more than a day")
    return value


def parse(value: str | os.PathLike) -> TextSpec:
    """``text:PROMPT[@SECONDS]`` -> TextSpec; UsageError for an empty prompt or a bad length."""
    source = os.fspath(value)
    if not is_text(source):
        raise UsageError(f"{source!r} is not a text track (text:PROMPT[@SECONDS])")
    body = source[len(PREFIX):]
    seconds = None
    head, at, tail = body.rpartition("@")
    if at and _NUMERIC_TAIL.match(tail):
        body = head
        seconds = check_seconds(tail.strip().rstrip("sS").replace("_", ""), source)
    prompt = " ".join(body.split())
    if not prompt:
        raise UsageError(f"{source!r}: empty prompt", hint='describe the sound, e.g. "text:heavy rain@8"')
    return TextSpec(prompt, seconds, source)
