"""The mux stage of ``generate``: the output from video.mp4 and the work audio. It always runs (its output
is outside the work directory); for MP4 and MOV the output's audio is encoded early (:class:`EarlyAudio`)."""
from __future__ import annotations

import time
from pathlib import Path

from avmix import mux
from avmix.manifest import key
from avmix.options import VideoOptions
from avmix.pipeline.workdir import AUDIO, ENCODED, VIDEO, Stages
from avmix.progress import ProgressFn
from avmix.timeline import Analysis


class EarlyAudio:
    """The mux stage's audio: the composed audio encoded for the output's container (mux.AudioEncode) by
    an ffmpeg that runs while the analysis and the video stage do, so that the mux only copies streams.
    The file is cached in the manifest under "audio", keyed on compose's key and the encoder: a run that
    changes only video options reuses it. (Part of the mux, which always runs, so not in "reused".)
    Containers whose mux must encode the audio itself (see mux.EARLY_AUDIO) have no such file."""

    def __init__(self, stages: Stages, k_compose: str, work: Path, out: Path):
        self.stages, self.job, self.path = stages, None, None
        ext = mux.EARLY_AUDIO.get(out.suffix.lower())
        if ext is None:
            return
        self.name = ENCODED + ext
        self.depends = {"compose": k_compose, "codec": mux.container(out)[2], "bitrate": mux.AUDIO_BITRATE}
        self.key = key("audio", self.depends)
        if stages.reuse("audio", self.key):
            self.path = work / self.name
            return
        m = stages.manifest
        if m.stages.pop("audio", None) is not None:  # the old file is about to be replaced
            m.save()
        self.started = time.perf_counter()
        self.job = mux.AudioEncode(work / AUDIO, work / self.name, out)

    def finish(self) -> Path | None:
        """The encoded file (waiting for the encode to end), recorded in the manifest; None: no such stage."""
        if self.job is not None:
            self.path, self.job = self.job.wait(), None
            # wall time, overlapping the stages it ran beside
            self.stages.done("audio", self.key, self.depends, [self.name], time.perf_counter() - self.started)
        return self.path

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.job = None


def run_mux(work: Path, out: Path, *, analysis: Analysis, vo: VideoOptions, encoded: Path | None,
            overwrite: bool, stages: Stages, progress: ProgressFn) -> dict:
    """Write ``out`` (the video is H.264 of the right length, so it is copied, not re-encoded). Returns
    what mux.render reports."""
    from avmix.video import writer

    t = time.perf_counter()
    # every backend writes the analysis' frames at the output size through VideoWriter: no probe needed
    known = writer.described(work / VIDEO, width=vo.size[0], height=vo.size[1], fps=analysis.fps,
                             frames=analysis.frames)
    muxed = mux.render(work / VIDEO, work / AUDIO, out, fit="audio", crf=vo.crf, preset=vo.preset,
                       overwrite=overwrite, progress=progress, encoded_audio=encoded, video_info=known)
    stages.timings["mux"] = round(time.perf_counter() - t, 4)
    return muxed
