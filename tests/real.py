"""The shared real recordings in tests/fixtures/real/ (see SOURCES.md there), by kind.

Use these, not synthesised sound, wherever a test or benchmark needs real material.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent / "fixtures" / "real"

KINDS = ("music", "speech", "field", "effects")

# name -> (kind, one line on what it is)
RECORDINGS: dict[str, tuple[str, str]] = {
    "music_electronic.flac": ("music", "electronic track with a steady beat, 30 s, 16 kHz mono"),
    "music_morning_coffee.flac": ("music", "downtempo track, 30 s, 16 kHz mono"),
    "music_piano_notes.flac": ("music", "eight sustained grand-piano notes, 2.5 s each, 20 s, 44.1 kHz mono"),
    "speech_instruct.flac": ("speech", "woman's voice, studio read prompts, 30 s, 16 kHz mono"),
    "speech_congrats.flac": ("speech", "woman's voice, studio read prompts, 30 s, 16 kHz mono"),
    "field_birds.flac": ("field", "birdsong in a Pennsylvania forest, quiet, 10 s, 32 kHz mono"),
    "effects_pygame.flac": ("effects", "boom, car door, punch, whiff, car door, silence between, 12 s, 11 kHz mono"),
    "effects_tuxracer.flac": ("effects", "sliding on leaves, rock and snow with two tree hits, 13 s, 44.1 kHz stereo"),
}


def path(name: str) -> Path:
    """The path of one recording, by file name."""
    if name not in RECORDINGS:
        raise KeyError(f"no real recording named {name!r}; see {FOLDER / 'SOURCES.md'}")
    return FOLDER / name


def of_kind(kind: str) -> list[Path]:
    """All recordings of one kind: music, speech, field or effects."""
    if kind not in KINDS:
        raise KeyError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return [FOLDER / name for name, (k, _) in RECORDINGS.items() if k == kind]


def all_recordings() -> list[tuple[Path, str]]:
    """Every recording with its kind."""
    return [(FOLDER / name, kind) for name, (kind, _) in RECORDINGS.items()]


def room(rt60: float, drr_db: float, rng: np.random.Generator, *, rate: int, delay: float = 0.0) -> np.ndarray:
    """A room impulse response to play a recording through: ``delay`` seconds of silence (the path to a
    far microphone), the direct sound, then exponentially decaying noise reflections from 2 ms on,
    ``drr_db`` dB below the direct sound in total energy (negative: the reflections are louder)."""
    t = np.arange(int(rt60 * rate)) / rate
    h = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    h[:int(0.002 * rate)] = 0
    h *= np.sqrt(10 ** (-drr_db / 10) / np.sum(h ** 2))
    h[0] = 1.0
    return np.concatenate([np.zeros(int(round(delay * rate))), h])


def strongest_lag(a: np.ndarray, b: np.ndarray, *, rate: int) -> float:
    """Seconds to delay ``b`` by at the highest full-rate GCC-PHAT peak: what a reverberant pair's direct
    sound must beat (avmix align took this peak before it looked for the direct sound)."""
    from avmix.align import gcc_phat

    r = gcc_phat(a.astype(np.float32), b.astype(np.float32))
    k = int(np.argmax(r))
    return (k if k <= len(r) // 2 else k - len(r)) / rate
