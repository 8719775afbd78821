"""The shared real recordings are all there, readable, listed in SOURCES.md and not silent."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from tests import real


def test_every_listed_recording_is_documented_and_sounds():
    sources = (real.FOLDER / "SOURCES.md").read_text()
    on_disk = {p.name for p in real.FOLDER.glob("*.flac")}
    assert on_disk == set(real.RECORDINGS)
    for path, kind in real.all_recordings():
        assert kind in real.KINDS
        assert f"`{path.name}`" in sources
        x, sr = sf.read(str(path), always_2d=True)
        seconds = len(x) / sr
        assert 10 <= seconds <= 31, (path.name, seconds)
        assert np.sqrt(np.mean(x ** 2)) > 1e-3, path.name


def test_each_kind_has_a_recording():
    for kind in real.KINDS:
        assert real.of_kind(kind), kind
