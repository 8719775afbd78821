"""glibc's heap, as avmix uses it: freed blocks kept for reuse while the audio work runs, and handed
back to the kernel once it is over. Best effort: other C libraries are left as they are."""
from __future__ import annotations

import sys


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # pragma: no cover
        return None


def keep_freed() -> None:
    """Stop glibc returning every freed block over 128 KB to the kernel.

    The audio stage makes short-lived numpy temporaries of 0.5-1 MB per 131072-frame block; by default
    each is mmap'ed (or the heap top trimmed) and page-faults anew on first touch: ~0.1 s of system time
    and 5-10 % of a 10-minute normalised mix. With higher thresholds the freed blocks are reused from the
    heap; peak memory does not change (the same few blocks are live at a time).
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: mmap only allocations over 64 MB
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: keep up to 128 MB of free heap top


def give_back() -> None:
    """Hand the kept free blocks back (malloc_trim): the analysis' threads leave tens of MB in their
    arenas, more the longer the audio, which would sit beside the video stage's ffmpeg."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
