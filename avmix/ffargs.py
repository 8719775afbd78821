"""File names in ffmpeg-python command lines.

ffmpeg-python hashes its nodes' arguments as UTF-8, so a file name that is not valid UTF-8 (a POSIX
name decoded with surrogate escapes) breaks building the command. Build it with ``slot(n)`` in place
of each file and ``fill(args, paths)`` the list from ``get_args()`` afterwards.
"""
from __future__ import annotations

import os

from avmix import ffmpeg


def slot(n: int) -> str:
    """Stand-in for the ``n``-th file name (pure ASCII, never a real ffmpeg URL)."""
    return f"@avmix-file-{n}@"


def fill(args: list[str], files: list[str | os.PathLike]) -> list[str]:
    """``args`` with every ``slot(n)`` replaced by ``ffmpeg.url(files[n])``."""
    urls = {slot(n): ffmpeg.url(f) for n, f in enumerate(files)}
    missing = set(urls) - set(args)
    if missing:
        raise ValueError(f"placeholders not in the command line: {sorted(missing)}")
    return [urls.get(a, a) for a in args]
