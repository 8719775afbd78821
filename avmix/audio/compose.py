"""The compose stage: mix, concat and overlay audio tracks, streaming, to the sample.

The plans (:mod:`avmix.audio.plan`) turn inputs and options into a :class:`~avmix.timeline.Timeline`
(integer sample arithmetic on the inputs' lengths at the job's rate, no float drift); :func:`render`
streams a Timeline block by block: every source overlapping a block is read, scaled by its gain, fades
and ducking, summed in float32, then master gain, master fades and the true-peak limiter are applied and
the block is written. Memory stays flat in the inputs' length. With ``limit=False`` the output is the
exact float sum.

Loudness normalisation takes two passes: the first measures (BS.1770 integrated loudness or sample
peak), the second writes with the master gain. Silent mixes are left unchanged (with a note);
mixes shorter than 0.4 s are measured as one block. The limiter takes loudness away from spiky
(high-crest) material, so when the first pass's sample peak shows that it may act, the writing pass
also measures the output, and a miss of more than ``LUFS_TOLERANCE`` is written again with a corrected
gain (a few passes at most). When the first pass shows the limiter will not act, nothing extra is done.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import math
import os
import queue
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from avmix import paths
from avmix.audio import dynamics, gainsearch, held, match, reference
from avmix.audio.channels import reconcile_channels
from avmix.audio.io import AudioFile, _rechunk, open_audio
from avmix.audio.loudness import LoudnessMeter, peak_dbfs
from avmix.audio.plan import BLOCK, DEFAULT_PEAK, Settings, _seconds, plan_concat, plan_mix, plan_overlay
from avmix.audio.reference import MIN_SECONDS, Analyzer, Measurement
from avmix.errors import InputError
from avmix.audio.writer import AudioWriter, integer_bits
from avmix.progress import ProgressFn, note, report
from avmix.timeline import Source, Timeline, file_hash

DEFAULT_LUFS = -14.0
LUFS_TOLERANCE = 0.2  # LU: a limited output this close to the target is kept
LUFS_NOTE = 0.5  # LU: a limited output further off than this (the spec's tolerance) gets a note
MAX_WRITES = 4  # gain-search passes at most when the limiter keeps the output off its loudness target
# (one more rewrites the closest pass when that was not the last)


# ------------------------------------------------------------------------------------------ engine

class _Reader:
    """A source's samples as placed: ``take(n)`` returns the next n frames (looping if asked)."""

    def __init__(self, f: AudioFile, src: Source, sr: int, ch: int):
        self.f, self.src, self.sr, self.ch = f, src, sr, ch
        self._it: Iterator[np.ndarray] | None = None
        self._buf: np.ndarray | None = None
        self._left = 0  # frames left in the current pass over the segment

    def _restart(self) -> None:
        self.close()
        self._it = _prefetch(self.f.blocks(sample_rate=self.sr, channels=self.ch, start=self.src.offset_sample,
                                           frames=self.src.source_frames, blocksize=BLOCK))
        self._left = self.src.source_frames

    def close(self) -> None:
        if self._it is not None:
            self._it.close()

    def take(self, n: int) -> np.ndarray:
        parts = []
        while n > 0:
            if self._buf is None or len(self._buf) == 0:
                if self._left == 0:
                    if self._it is not None and not self.src.loop or self.src.source_frames == 0:
                        parts.append(np.zeros((n, self.ch), np.float32))
                        break
                    self._restart()
                self._buf = next(self._it)
                self._left -= len(self._buf)
            k = min(n, len(self._buf))
            parts.append(self._buf[:k])
            self._buf = self._buf[k:]
            n -= k
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


_DONE = object()


def _prefetch(it: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Run a block iterator on its own thread, ``depth`` blocks ahead: inputs decode in parallel with
    each other and with mixing and writing (libsndfile, soxr and numpy release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        """Queue ``item`` unless the consumer has gone (then False)."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for b in it:
                if not put(b):
                    break
            item = _DONE
        except BaseException as e:  # handed to the consumer
            item = e
        finally:
            it.close()
        put(item)

    t = threading.Thread(target=work, name="avmix-read", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


class _Engine:
    """Produces the output (or selected sources' contributions) block by block, before the limiter."""

    corrected = False  # the master correction is applied when writing (a held mix has it already)

    def __init__(self, tl: Timeline):
        self.tl = tl
        self.files = list(source_files(tl))
        sr = tl.sample_rate
        self.fades = [(int(round(s.fade_in * sr)), int(round(s.fade_out * sr))) for s in tl.sources]
        self.master_fades = (int(round(tl.fade_in * sr)), int(round(tl.fade_out * sr)))

    def blocks(self, *, only: int | None = None, master_gain_db: float = 0.0,
               blocksize: int = BLOCK) -> Iterator[np.ndarray]:
        """float32 (n, channels) blocks covering the whole output: the mix, or source ``only`` alone."""
        tl, sr, ch = self.tl, self.tl.sample_rate, self.tl.channels
        srcs = tl.sources
        wanted = set(range(len(srcs))) if only is None else {only}
        for i in list(wanted):  # ducked sources need their sidechain
            if srcs[i].duck is not None:
                wanted.add(srcs[i].duck.by)
        readers = {i: _Reader(self.files[i], srcs[i], sr, ch) for i in wanted}
        # the master gain is folded into every source's gain (one multiply per sample, not two); the
        # sidechain threshold moves with it, so ducking does not depend on normalisation
        duckers = {i: dynamics.Ducker(sr, srcs[i].duck.db, attack=srcs[i].duck.attack,
                                      release=srcs[i].duck.release,
                                      threshold_db=srcs[i].duck.threshold_db + master_gain_db)
                   for i in wanted if srcs[i].duck is not None}
        order = sorted(wanted, key=lambda i: srcs[i].duck is not None)  # sidechains first
        gains = {i: np.float32(10.0 ** ((srcs[i].gain_db + master_gain_db) / 20.0)) for i in wanted}
        try:
            for pos in range(0, tl.frames, blocksize):
                n = min(blocksize, tl.frames - pos)
                out = np.empty((n, ch), np.float32)
                fresh = True  # out holds no samples yet (filled by the first source or zeroed)
                parts: dict[int, tuple[int, np.ndarray]] = {}
                for i in order:
                    s = srcs[i]
                    a, b = max(pos, s.start_sample), min(pos + n, s.end_sample)
                    if i in duckers:
                        ctl = np.zeros((n, ch), np.float32)
                        if s.duck.by in parts:
                            ca, seg_c = parts[s.duck.by]
                            ctl[ca:ca + len(seg_c)] = seg_c
                        dg = duckers[i].gains(ctl)
                    if b <= a:
                        continue
                    seg = readers[i].take(b - a)
                    g = gains[i]
                    fi, fo = self.fades[i]
                    fg = dynamics.fade_gains(a - s.start_sample, b - a, s.end_sample - s.start_sample, fi, fo,
                                             s.fade_curve)
                    if g != 1.0 or fg is not None or i in duckers:
                        seg = seg * g
                        if fg is not None:
                            seg *= fg.astype(np.float32)[:, None]
                        if i in duckers:
                            seg *= dg[a - pos:b - pos, None]
                    parts[i] = (a - pos, seg)
                    if only is not None and i != only:
                        continue
                    if fresh and b - a == n:
                        np.copyto(out, seg)
                    else:
                        if fresh:
                            out.fill(0.0)
                        out[a - pos:b - pos] += seg
                    fresh = False
                if fresh:
                    out.fill(0.0)
                fi, fo = self.master_fades
                fg = dynamics.fade_gains(pos, n, tl.frames, fi, fo, dynamics.EQUAL_POWER)
                if fg is not None:
                    out *= fg.astype(np.float32)[:, None]
                yield out
        finally:
            for r in readers.values():
                r.close()


def source_files(tl: Timeline, *, workers: int = 1) -> list[AudioFile]:
    """The timeline's inputs, opened (``workers`` side by side) the first time and then kept on it:
    source_blocks makes one engine per source, and a compressed input is decoded when opened, so N
    sources must not mean N x N decodes."""
    files = getattr(tl, "_files", None)
    if files is None or len(files) != len(tl.sources):
        if workers > 1:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                files = list(pool.map(lambda s: open_audio(s.path), tl.sources))
        else:
            files = [open_audio(s.path) for s in tl.sources]
        tl._files = files
    return files


def source_blocks(timeline: Timeline, index: int, *, blocksize: int = BLOCK) -> Iterator[np.ndarray]:
    """Source ``index`` exactly as it sits in the output: float32 (n, channels) blocks over the whole
    output length, with gain, fades, ducking and master gain applied (not the limiter)."""
    if not 0 <= index < len(timeline.sources):
        raise IndexError(f"timeline has no source {index}")
    eng = _Engine(timeline)
    it = eng.blocks(only=index, master_gain_db=timeline.master_gain_db)
    corr = _corrector(timeline)
    if corr is not None:  # the mix's own correction (linear, its gain curve fixed): stems still sum to it
        yield from _rechunk(corr.run(it), timeline.frames, timeline.channels, blocksize)
        return
    # the engine works in BLOCK frames (a multiple of the ducker's hop); other sizes are re-cut
    yield from it if blocksize == BLOCK else _rechunk(it, timeline.frames, timeline.channels, blocksize)


def master_of(tl: Timeline) -> dict | None:
    """The timeline's correction after the sum (reference matching), or None."""
    return tl.master or None


def _corrector(tl: Timeline) -> match.Corrector | None:
    return match.corrector(master_of(tl), tl.sample_rate, tl.channels)


def render(timeline: Timeline, output: str | os.PathLike, *, bit_depth: int | None = None,
           stems_dir: str | os.PathLike | None = None, loudness: bool | None = None,
           progress: ProgressFn = None, quiet: bool | None = None) -> Timeline:
    """Write the composed audio to ``output`` (atomically); fill ``master_gain_db``, ``peak_dbfs``,
    ``lufs`` and ``output`` of the timeline and return it. Two passes when normalising (more when the
    limiter keeps a LUFS-normalised output from its target).

    ``loudness``: measure the output's integrated loudness into ``timeline.lufs`` (K-weighting costs
    about as much as the whole plain mix, so it is opt-in: the CLI asks for it with ``--json``); when not
    measured ``lufs`` stays None. ``quiet``: no notes on stderr (default: the progress bar's setting).
    """
    loudness = bool(loudness)
    if quiet is None:
        quiet = bool(getattr(progress, "quiet", False))
    with dynamics.single_thread_blas():
        return _render(timeline, output, bit_depth=bit_depth, stems_dir=stems_dir, loudness=loudness,
                       progress=progress, quiet=quiet)


def _render(timeline: Timeline, output: str | os.PathLike, *, bit_depth: int | None,
            stems_dir: str | os.PathLike | None, loudness: bool, progress: ProgressFn, quiet: bool) -> Timeline:
    tl = timeline
    s: Settings = getattr(tl, "_settings", None) or Settings()
    eng = _Engine(tl)
    if s.reference is not None:
        tl._analyze_output = loudness  # the "after" figures of --json cost an analysis pass of the output
        return _render_matched(eng, s, output, bit_depth=bit_depth, stems_dir=stems_dir, progress=progress,
                               quiet=quiet)
    may_limit = False
    if s.normalize != "none":
        tl.master_gain_db, peak = _normalize_gain(eng, s, progress, quiet)
        may_limit = s.normalize == "lufs" and _limiter_may_act(tl, peak)
    if may_limit:
        target = DEFAULT_LUFS if s.target is None else float(s.target)
        peak, tl.lufs = _write_to_target(eng, tl, output, target, bit_depth=bit_depth, progress=progress,
                                         quiet=quiet)
    else:
        peak, tl.lufs = _write(eng, tl, output, bit_depth=bit_depth, lufs=loudness, progress=progress)
    return _finish(tl, s, output, peak, bit_depth=bit_depth, stems_dir=stems_dir, quiet=quiet)


def _finish(tl: Timeline, s: Settings, output, peak: float, *, bit_depth: int | None, stems_dir, quiet: bool) -> Timeline:
    tl.peak_dbfs = peak_dbfs(peak)
    bits = integer_bits(output, bit_depth)
    if bits and peak > 1.0 + 2.0 ** (1 - bits):  # over one step past full scale (never with the limiter)
        note(f"the output peaks at {tl.peak_dbfs:+.1f} dBFS, so the {bits}-bit file is clipped there; "
             "pass --bit-depth 32 (float WAV) to keep the exact sum"
             + ("" if s.normalize == "peak" else ", or leave the limiter on"), quiet=quiet)
    tl.output = os.fspath(output)
    if stems_dir is not None:
        write_stems(tl, stems_dir, bit_depth=bit_depth)
    return tl


def _measure_stream(blocks, tl: Timeline, progress: ProgressFn, stage: str = "measure", *,
                    bands: bool = True) -> Measurement:
    return reference.measure(blocks, tl.sample_rate, tl.channels, bands=bands, progress=progress, stage=stage,
                             total=tl.frames)


def measure_reference(f: AudioFile, sample_rate: int, channels: int, *, progress: ProgressFn = None,
                      stop: threading.Event | None = None) -> Measurement:
    """The reference measured at the job's rate and channels (resampled and mixed as inputs are),
    except its loudness: that is measured on the file's own channels (a stereo reference of a mono
    job would otherwise read 3 LU low, a mono one of a stereo job 3 LU high), so the output measures
    what the reference does. The file is read once. ``stop`` set: give up early (the job failed or
    was interrupted; the result is then meaningless)."""
    blocks = f.blocks(sample_rate=sample_rate, channels=f.channels, blocksize=BLOCK)
    if stop is not None:
        blocks = itertools.takewhile(lambda _: not stop.is_set(), blocks)
    meter = LoudnessMeter(sample_rate, f.channels) if f.channels != channels else None
    if meter is not None:
        blocks = _metered(blocks, meter, channels)
    m = reference.measure(blocks, sample_rate, channels, bands=False, progress=progress, stage="reference",
                          total=f.target_frames(sample_rate))
    if meter is not None:
        m.lufs = meter.integrated()
    return m


def _metered(blocks: Iterator[np.ndarray], meter: LoudnessMeter, channels: int) -> Iterator[np.ndarray]:
    """``blocks`` mixed to ``channels``, each measured by ``meter`` as it was."""
    for b in blocks:
        meter.add(b)
        yield reconcile_channels(b, channels)


def open_reference(path: str | os.PathLike) -> AudioFile:
    """Open a reference, refusing one too short to measure."""
    paths.check_input(path)
    f = open_audio(path)
    if f.duration < MIN_SECONDS:
        raise InputError(f"the reference is {f.duration:.2f} s long; at least {MIN_SECONDS:g} s is needed to "
                         "measure its loudness", path=path, hint="give a longer reference")
    return f


def _render_matched(eng: _Engine, s: Settings, output, *, bit_depth: int | None, stems_dir, progress: ProgressFn,
                    quiet: bool) -> Timeline:
    """Reference matching: measure the reference and the mix, derive the correction, write with it
    (measuring the output, and writing again when the limiter keeps it off the reference's loudness).
    A short mix is held in memory: corrected once, its level under the limiter modelled
    (:class:`avmix.audio.held.LevelModel`) to choose the gain, and written from there."""
    tl = eng.tl
    ref_file = getattr(tl, "_reference_file", None) or open_reference(s.reference)
    notes: list[str] = []
    balance = None
    stop = threading.Event()  # on an error or Ctrl-C, do not wait for the whole reference
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # the reference beside the mix
        ref_job = pool.submit(measure_reference, ref_file, tl.sample_rate, tl.channels, progress=progress,
                              stop=stop)
        try:
            if s.reference_balance and not ref_job.result().silent:
                tracks = [_measure_stream(eng.blocks(only=i), tl, progress, "balance", bands=False).spectrum_only()
                          for i in range(len(tl.sources))]
                balance = match.balance(ref_job.result(), tracks)
                for src, g in zip(tl.sources, balance):
                    src.gain_db = round(src.gain_db + g, 6)
                eng = _Engine(tl)
            tl.master = None
            kept = held.Held()
            mix = _measure_stream(kept.keep(eng.blocks()), tl, progress)
            ref = ref_job.result()
        finally:
            stop.set()
    corr = match.derive(ref, mix, strength=s.reference_strength, ceiling_db=tl.limit_dbtp, notes=notes)
    model = None
    if kept.blocks is not None:
        model = kept.correct(corr, tl.sample_rate, tl.channels, tl.limit_dbtp)
        held.refine_dynamics(corr, ref, mix, kept, model, strength=s.reference_strength)
        if corr["predicted_lufs"] is not None and math.isfinite(model.lufs):
            corr["predicted_lufs"] = round(model.lufs, 4)  # measured on the corrected mix, not predicted
        eng = held.HeldEngine(tl, kept.blocks)
    before, target = mix.summary(), ref.summary()
    del mix, ref  # their per-hop and per-frame arrays (about 16 MB an hour) are not needed while writing
    corr["reference"] = os.fspath(s.reference)
    if balance is not None:
        corr["balance_db"] = [round(g, 3) for g in balance]
    for n in notes:
        note(n, quiet=quiet)
    tl.master = corr
    if corr["target_lufs"] is None:
        peak, _ = _write(eng, tl, output, bit_depth=bit_depth, lufs=False, progress=progress)
    else:
        want = corr["target_lufs"]
        if model is not None and math.isfinite(model.lufs):
            start = round(want - model.lufs, 6)  # the limiter only takes loudness: no lower gain can do
            tl.master_gain_db = (start if tl.limit_dbtp is None else
                                 gainsearch.solve(model.level, want, start, start + gainsearch.MAX_BOOST_DB))
        else:
            model = None
            tl.master_gain_db = round(want - corr["predicted_lufs"], 6)
            start = tl.master_gain_db - 3.0  # predicted from spectra: leave room under it
        peak, tl.lufs = _write_to_target(eng, tl, output, corr["target_lufs"], bit_depth=bit_depth,
                                         progress=progress, quiet=quiet, start=start,
                                         model=None if model is None else model.level)
    corr["report"] = {"before": before, "after": getattr(tl, "_after", None), "target": target}  # in the timeline
    return _finish(tl, s, output, peak, bit_depth=bit_depth, stems_dir=stems_dir, quiet=quiet)


def _normalize_gain(eng: _Engine, s: Settings, progress: ProgressFn, quiet: bool) -> tuple[float, float]:
    """Pass 1: the master gain (dB) that brings the mix to the target loudness or peak, and the mix's
    sample peak before it (linear; measured only when needed: by peak, or by loudness with a limiter)."""
    tl = eng.tl
    done = 0
    by_lufs = s.normalize == "lufs"
    with _Measure(tl.sample_rate, tl.channels, lufs=by_lufs,
                  peak=not by_lufs or tl.limit_dbtp is not None) as meas:
        for block in eng.blocks():
            meas.add(block)
            done += len(block)
            report(progress, "measure", done, tl.frames)
        peak, lufs = meas.result()
    if s.normalize == "lufs":
        level, target = lufs, (DEFAULT_LUFS if s.target is None else s.target)
    else:
        level, target = peak_dbfs(peak), (DEFAULT_PEAK if s.target is None else s.target)
    if not math.isfinite(level):
        note("the mix is silent; loudness normalisation left it unchanged", quiet=quiet)
        return 0.0, peak
    return round(float(target - level), 6), peak


def _limiter_may_act(tl: Timeline, peak: float) -> bool:
    """Whether the limiter could touch the mix at the master gain, from the mix's sample peak before it.
    When it cannot, the output's loudness is exactly the measured one plus the gain."""
    if tl.limit_dbtp is None:
        return False
    loud = peak * 10.0 ** (tl.master_gain_db / 20.0)
    return loud * 1.001 > dynamics.TruePeakLimiter.untouched_peak(tl.limit_dbtp)  # float32 rounding slack


def _limiter(tl: Timeline) -> dynamics.TruePeakLimiter | None:
    if tl.limit_dbtp is None:
        return None
    return dynamics.TruePeakLimiter(tl.sample_rate, tl.channels, ceiling_db=tl.limit_dbtp)


def _mix_into(eng: _Engine, sink: "_Measure", progress: ProgressFn) -> None:
    """One pass: mix at the timeline's master gain, limit, and hand every block to ``sink``."""
    tl = eng.tl
    limiter = _limiter(tl)
    corr = None if eng.corrected else _corrector(tl)  # a held mix is corrected already
    done = 0
    for block in eng.blocks(master_gain_db=tl.master_gain_db):
        done += len(block)
        if corr is not None:
            block = corr.process(block)
        sink.add(limiter.process(block) if limiter else block)
        report(progress, "mix", done, tl.frames)
    if corr is not None:
        block = corr.flush()
        sink.add(limiter.process(block) if limiter else block)
    if limiter:
        sink.add(limiter.flush())


class _Rejected(Exception):
    """Raised inside a writer's with block to throw its temp file away: the output is left untouched."""

    def __init__(self, next_gain: float):
        super().__init__(f"write again at {next_gain} dB")
        self.next_gain = next_gain


def _write(eng: _Engine, tl: Timeline, output: str | os.PathLike, *, bit_depth: int | None, lufs: bool,
           progress: ProgressFn, retry=None) -> tuple[float, float | None]:
    """A writing pass; returns (linear sample peak, LUFS or None). ``retry(lufs)`` returning a gain
    discards the written file (raising _Rejected with it), so a wrong output never stays in place."""
    with AudioWriter(output, sample_rate=tl.sample_rate, channels=tl.channels, bit_depth=bit_depth,
                     frames=tl.frames) as w, \
            _Measure(tl.sample_rate, tl.channels, lufs=lufs or retry is not None, writer=w,
                     analyze=master_of(tl) is not None and getattr(tl, "_analyze_output", False)) as sink:
        _mix_into(eng, sink, progress)
        peak, level = sink.result()
        if sink.analyzer is not None:
            tl._after = sink.analyzer.result().summary()
        if retry is not None and (gain := retry(level)) is not None:
            raise _Rejected(gain)
    return peak, level


def _try_gain(eng: _Engine, tl: Timeline, output: str | os.PathLike, retry, *, bit_depth: int | None,
              progress: ProgressFn) -> tuple[float, float]:
    """Write at the timeline's master gain unless ``retry`` gives another gain for the output's
    loudness (then _Rejected)."""
    if os.fspath(output) != paths.STDIO:
        return _write(eng, tl, output, bit_depth=bit_depth, lufs=True, progress=progress, retry=retry)
    # what went to standard output cannot be taken back: measure first, write once the gain is kept
    # (rendering is deterministic, so the written output has the measured loudness)
    with _Measure(tl.sample_rate, tl.channels, peak=False) as sink:
        _mix_into(eng, sink, progress)
        _, level = sink.result()
    if (gain := retry(level)) is not None:
        raise _Rejected(gain)
    peak, _ = _write(eng, tl, output, bit_depth=bit_depth, lufs=False, progress=progress)
    return peak, level


def _write_to_target(eng: _Engine, tl: Timeline, output: str | os.PathLike, target: float, *,
                     bit_depth: int | None, progress: ProgressFn, quiet: bool,
                     start: float | None = None, model=None) -> tuple[float, float]:
    """Write with the limiter and measure the output; while the loudness the limiter took leaves it
    more than LUFS_TOLERANCE off ``target``, discard it and write again at the gain
    :func:`gainsearch.verdict` gives (the closest pass once the search ends). Returns (sample peak, LUFS)."""
    start = tl.master_gain_db if start is None else start  # the lowest gain the search may try
    tries: list[tuple[float, float]] = []  # (master gain, output LUFS) of every pass

    def retry(level: float) -> float | None:
        tries.append((tl.master_gain_db, level))
        return gainsearch.verdict(tries, target, start, tolerance=LUFS_TOLERANCE, final=len(tries) >= MAX_WRITES,
                                  model=model)

    while True:  # ends: after MAX_WRITES passes the verdict is the closest pass, kept when written again
        try:
            peak, level = _try_gain(eng, tl, output, retry, bit_depth=bit_depth, progress=progress)
            break
        except _Rejected as r:
            tl.master_gain_db = r.next_gain
    if math.isfinite(level) and abs(level - target) > LUFS_NOTE:
        if tl.limit_dbtp is None:
            note(f"could not bring the output to {target:.1f} LUFS (it is {level:.1f} LUFS)", quiet=quiet)
        else:
            note(f"could not bring the output to {target:g} LUFS under the limiter's {tl.limit_dbtp:g} dBTP "
                 f"ceiling (it is {level:.1f} LUFS); raise --ceiling or pass --no-limit", quiet=quiet)
    return peak, level


class _Measure:
    """Sample peak and integrated loudness of a block stream (and, given a ``writer``, writing it),
    done on a worker thread so that K-weighting and encoding overlap reading, mixing and limiting
    (numpy, libsndfile and file writes release the GIL)."""

    def __init__(self, sample_rate: int, channels: int, *, lufs: bool = True, writer: AudioWriter | None = None,
                 peak: bool = True, analyze: bool = False):
        self.analyzer = Analyzer(sample_rate, channels, bands=False) if analyze else None  # matching's "after"
        self._meter = None if not lufs else self.analyzer.meter if analyze else LoudnessMeter(sample_rate, channels)
        self._writer = writer
        self._want_peak = peak  # False: pass 1 of LUFS normalisation (two passes over every block saved)
        self._q: queue.Queue = queue.Queue(maxsize=4)  # bounded: memory stays flat
        self._peak = 0.0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="avmix-output", daemon=True)

    def __enter__(self) -> "_Measure":
        self._thread.start()
        return self

    def _work(self) -> None:
        while (b := self._q.get()) is not None:
            if self._error is not None or not len(b):
                continue
            try:
                if self._want_peak:
                    self._peak = max(self._peak, float(b.max()), -float(b.min()))
                if self.analyzer is not None:  # K-weights into the shared meter too
                    self.analyzer.add(b)
                elif self._meter is not None:
                    self._meter.add(b)
                if self._writer is not None:
                    self._writer.write(b)
            except BaseException as e:  # re-raised in the caller's thread
                self._error = e

    def add(self, block: np.ndarray) -> None:
        if self._error is not None:  # fail fast (disk full, encoder died, ...)
            self._raise()
        self._q.put(block)  # the block is never modified afterwards, so no copy

    def _raise(self) -> None:
        self._stop()
        raise self._error

    def result(self) -> tuple[float, float | None]:
        """(linear sample peak, LUFS or None); waits for the worker."""
        self._stop()
        if self._error is not None:
            raise self._error
        return self._peak, (self._meter.integrated() if self._meter is not None else None)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()

    def __exit__(self, *exc) -> None:
        self._stop()


def write_stems(tl: Timeline, stems_dir: str | os.PathLike, *, bit_depth: int | None = None) -> list[Path]:
    """Write every source as it sits in the output to ``stems_dir/NN-slug.wav`` (:func:`avmix.paths.stem_name`)."""
    d = Path(stems_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for s in tl.sources:
        p = d / paths.stem_name(s.index, s.label)
        with AudioWriter(p, sample_rate=tl.sample_rate, channels=tl.channels, bit_depth=bit_depth,
                         frames=tl.frames) as w:
            for b in source_blocks(tl, s.index):
                w.write(b)
        out.append(p)
    return out


# ------------------------------------------------------------------------------------------ entry points

def _settings(kw: dict) -> Settings:
    names = set(Settings.__dataclass_fields__)
    unknown = set(kw) - names
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    s = Settings(**kw)
    s.gains = [float(g) for g in (s.gains or [])]
    s.labels = [str(x) for x in (s.labels or [])]
    return s


def _run(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, plan, *,
         bit_depth: int | None, overwrite: bool, timeline_path: str | os.PathLike | None,
         loudness: bool | None, stems_dir: str | os.PathLike | None, progress: ProgressFn,
         origins: dict[int, dict] | None = None,
         reference: str | os.PathLike | None = None) -> Timeline:
    names = [os.fspath(p) for p in inputs]
    for p in names:
        paths.check_input(p)
    ref_file = open_reference(reference) if reference is not None else None
    read = names + ([os.fspath(reference)] if reference is not None else [])
    paths.check_audio_outputs(names, output, timeline=timeline_path, reference=reference)
    paths.check_output(output, overwrite=overwrite)
    if timeline_path is not None:
        paths.check_output(timeline_path, overwrite=True)
    elif os.fspath(output) != paths.STDIO:
        paths.check_sidecar(output, overwrite=overwrite)
    files = [open_audio(p) for p in names]
    tl = plan(files)
    for i, origin in (origins or {}).items():  # how a synthesised source was made (avmix.synth)
        tl.sources[i].origin = origin
    tl._reference_file = ref_file
    if stems_dir is not None and Path(stems_dir).is_dir():  # stems are outputs too: apart from what is read,
        # and replaced only with overwrite (a folder still to be made holds nothing to lose)
        for src in tl.sources:
            paths.check_output(Path(stems_dir) / paths.stem_name(src.index, src.label), read + [os.fspath(output)],
                               overwrite=overwrite)
    # hash while rendering, one thread a file (xxhash releases the GIL)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(files), 4)) as pool:
        hashes = [pool.submit(file_hash, f.local_path) for f in files]
        render(tl, output, bit_depth=bit_depth, loudness=loudness, stems_dir=stems_dir, progress=progress)
        for src, h in zip(tl.sources, hashes):
            src.hash = h.result()
    side = timeline_path if timeline_path is not None else (
        None if os.fspath(output) == paths.STDIO else paths.sidecar(output))
    if side is not None:
        tl.save(side)
    return tl


def mix(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, duration: str = "longest",
        match_loudness: bool = False, align: bool = False, bit_depth: int | None = None, overwrite: bool = False,
        timeline_path: str | os.PathLike | None = None, loudness: bool | None = None,
        stems_dir: str | os.PathLike | None = None, progress: ProgressFn = None,
        origins: dict[int, dict] | None = None, **settings) -> Timeline:
    """Mix ``inputs`` (starting together, or lined up by their sound with ``align``) into ``output``; write
    ``OUTPUT.timeline.json``; return the Timeline.

    ``settings`` are :class:`Settings` fields (gains, normalize, target, limit, ceiling, fade_in, ...);
    ``origins`` ({input index: dict}) go into the timeline's sources (how a synthesised track was made).
    """
    s = _settings(settings)
    return _run(inputs, output, lambda fs: plan_mix(fs, duration=duration, match_loudness=match_loudness,
                                                    align=align, settings=s, progress=progress),
                bit_depth=bit_depth, overwrite=overwrite, timeline_path=timeline_path, loudness=loudness,
                stems_dir=stems_dir, progress=progress, origins=origins, reference=s.reference)


def concat(inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, crossfade: float = 0.0,
           curve: str = dynamics.EQUAL_POWER, gap: float = 0.0, trim_silence: bool = False,
           bit_depth: int | None = None, overwrite: bool = False, timeline_path: str | os.PathLike | None = None,
           loudness: bool | None = None, stems_dir: str | os.PathLike | None = None,
           progress: ProgressFn = None, origins: dict[int, dict] | None = None, **settings) -> Timeline:
    """Join ``inputs`` back to back into ``output`` (crossfade or gap seconds between them)."""
    s = _settings(settings)
    _seconds("crossfade", crossfade)
    _seconds("gap", gap)
    return _run(inputs, output,
                lambda fs: plan_concat(fs, crossfade=crossfade, curve=curve, gap=gap, trim_silence=trim_silence,
                                       settings=s, progress=progress),
                bit_depth=bit_depth, overwrite=overwrite, timeline_path=timeline_path, loudness=loudness,
                stems_dir=stems_dir, progress=progress, origins=origins, reference=s.reference)


def overlay(base: str | os.PathLike, top: str | os.PathLike, output: str | os.PathLike, *, at: float = 0.0,
            loop: bool = False, duck: float | None = None, bit_depth: int | None = None, overwrite: bool = False,
            timeline_path: str | os.PathLike | None = None, loudness: bool | None = None,
            stems_dir: str | os.PathLike | None = None, progress: ProgressFn = None,
            origins: dict[int, dict] | None = None, **settings) -> Timeline:
    """Lay ``top`` over ``base`` from ``at`` seconds into ``output`` (``duck`` dB lowers base under top)."""
    s = _settings(settings)
    _seconds("offset (--at)", at)
    return _run([base, top], output,
                lambda fs: plan_overlay(fs[0], fs[1], at=at, loop=loop, duck_db=duck, settings=s),
                bit_depth=bit_depth, overwrite=overwrite, timeline_path=timeline_path, loudness=loudness,
                stems_dir=stems_dir, progress=progress, origins=origins, reference=s.reference)
