"""AV-Align: how well the motion in a video lines up with the onsets in its audio.

The metric of Yariv et al., "Diverse and Aligned Audio-to-Video Generation via Text-to-Video Model
Adaptation" (AAAI 2024), as defined in the paper and its reference implementation, with the later fix:

* audio peaks: librosa onset detection (``onset_strength`` + ``onset_detect`` with librosa's defaults)
  on the mono audio at 22050 Hz, as times in seconds;
* video peaks: the mean Farneback optical-flow magnitude between consecutive frames is a trajectory
  with one value per frame (value ``i`` is the flow from frame ``i-1`` to frame ``i``, placed at time
  ``i / fps``; value 0 repeats value 1, as in the reference). Peaks are the strict local maxima that
  reach :data:`MIN_FLOW`, so a static scene (whose flow is only coding noise) has no peaks;
* matching: an audio peak and a video peak match when they are at most one frame apart; each peak
  is used at most once (the fix: the original let one video peak match several audio peaks);
* score: intersection over union, ``matches / (audio_peaks + video_peaks - matches)``.

Empty cases: no peaks on either side gives 0.0 (there is no evidence of alignment, as in the fixed
reference, which returns 0 when the union is empty); peaks on one side only also give 0.0.

Flow is measured on the grayscale frames at the video's own size, as the reference does, and peaks
must reach :data:`MIN_FLOW` pixels there (frames decoded by our own ffmpeg and streamed through a
pipe: memory stays flat in the video's length). ``flow_width`` asks for frames scaled down to that
width instead: several times faster, but not the published number; the minimum is then scaled with the
frames (``MIN_FLOW * flow_width / width``) so that it still means 0.1 px of the video as it is. The
audio is cut to the video's length (and held whole, mono at 22050 Hz: about 5 MB per minute).

Per track (with a generate work directory): each track's onsets (librosa on the source as it sits in
the composed audio, rebuilt from ``timeline.json``; else the onsets in ``analysis.json``) against the
flow peaks inside the track's box from the layout the backend recorded in ``manifest.json``. A work
directory whose manifest records another output (duration, fps, size), or whose stage files changed
since, is refused; so are a still image, a video of fewer than 4 frames and audio (or video) shorter
than one librosa onset window (2048 samples at 22050 Hz, 0.093 s).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from avmix import ffmpeg
from avmix.errors import AvmixError, InputError, UsageError
from avmix.paths import check_input, same_path
from avmix.progress import ProgressFn, report

MIN_FLOW = 0.1  # pixels per frame of the video as it is: weaker flow maxima are not motion peaks
AUDIO_RATE = 22050  # Hz, librosa's default rate, as in the reference
# cv2.calcOpticalFlowFarneback(prev, next, flow, pyr_scale, levels, winsize, iterations, poly_n,
# poly_sigma, flags): the reference's settings.
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)
DECODE_TIMEOUT = 3600.0  # seconds for ffmpeg to decode a whole video
# librosa's onset strength takes a mel spectrogram with n_fft=2048: audio shorter than one such window
# gives librosa nothing to measure (it warns and pads), so that is the least audio (and video) scored.
N_FFT = 2048
MIN_SECONDS = N_FFT / AUDIO_RATE  # 0.093 s
# Flow value i is the motion from frame i-1 to i, and value 0 repeats value 1, so the first value that can
# be a peak (a strict local maximum) is value 2, and it needs value 3 beside it: four frames.
MIN_FRAMES = 4
INSTALL_HINT = "pip install 'avmix[score]'"


# ------------------------------------------------------------------------------------------ pure


def peak_frames(trajectory: Sequence[float] | np.ndarray, *, min_value: float = MIN_FLOW) -> np.ndarray:
    """Indices of the strict local maxima of ``trajectory`` that are >= ``min_value``.

    The first and last values are never peaks (they have only one neighbour).
    """
    x = np.asarray(trajectory, dtype=np.float64)
    if x.size < 3:
        return np.zeros(0, dtype=int)
    mid = x[1:-1]
    is_peak = (mid > x[:-2]) & (mid > x[2:]) & (mid >= min_value)
    return np.flatnonzero(is_peak) + 1


def match_peaks(audio_times: Sequence[float], video_times: Sequence[float], window: float) -> int:
    """Size of a largest one-to-one matching of peaks at most ``window`` seconds apart.

    Both lists sorted, each audio peak takes the earliest unused video peak in its window: for
    points on a line with a fixed window this greedy matching is a maximum one.
    """
    a = np.sort(np.asarray(audio_times, dtype=np.float64))
    v = np.sort(np.asarray(video_times, dtype=np.float64))
    tol = window + 1e-9  # frame times are i / fps; do not lose a match to rounding
    matches, j = 0, 0
    for t in a:
        while j < len(v) and v[j] < t - tol:
            j += 1
        if j < len(v) and v[j] <= t + tol:
            matches += 1
            j += 1
    return matches


def iou(n_audio: int, n_video: int, matches: int) -> float:
    """Intersection over union of two peak sets; 0.0 when both are empty."""
    union = n_audio + n_video - matches
    return matches / union if union > 0 else 0.0


def av_align(audio_times: Sequence[float], video_times: Sequence[float], fps: float) -> dict[str, Any]:
    """AV-Align of peak times (seconds) matched within one frame at ``fps``."""
    m = match_peaks(audio_times, video_times, 1.0 / fps)
    return {"av_align": iou(len(audio_times), len(video_times), m), "audio_peaks": len(audio_times),
            "video_peaks": len(video_times), "matches": m}


def video_peak_times(trajectory: Sequence[float] | np.ndarray, fps: float, *,
                     min_value: float = MIN_FLOW) -> list[float]:
    return [float(i / fps) for i in peak_frames(trajectory, min_value=min_value)]


def onset_envelope(y: np.ndarray, sr: int) -> np.ndarray:
    """librosa's onset strength (spectral flux, one value per 512-sample hop) of mono ``y`` (n,)."""
    librosa = _require("librosa")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.size == 0 or not np.any(y):
        return np.zeros(0, dtype=np.float32)
    with warnings.catch_warnings():
        # score() refuses audio shorter than N_FFT; a shorter piece here (a caller's own) is padded by
        # librosa as documented, and its warning would only be noise on the CLI's stderr
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large", category=UserWarning)
        return librosa.onset.onset_strength(y=y, sr=sr, n_fft=N_FFT)


def onset_times(env: np.ndarray, sr: int, *, scale: float | None = None) -> list[float]:
    """Onset times (s) picked from an onset envelope with librosa's defaults.

    librosa scales the envelope to 0..1 by its own range (``scale=None``, the published metric). A
    track scored on its own passes the whole mix's range as ``scale`` instead: its onsets must then
    stand out against the mix, so a steady or quiet track does not turn its noise into onsets.
    """
    librosa = _require("librosa")
    if env.size == 0 or not np.any(env > env.min()):
        return []
    if scale is None:
        times = librosa.onset.onset_detect(onset_envelope=env, sr=sr, units="time")
    else:
        times = librosa.onset.onset_detect(onset_envelope=(env - env.min()) / max(scale, 1e-12), sr=sr,
                                           units="time", normalize=False)
    return [float(t) for t in times]


def audio_onsets(y: np.ndarray, sr: int) -> list[float]:
    """Onset times (seconds) of mono audio ``y`` (float, shape (n,)) with librosa's defaults."""
    return onset_times(onset_envelope(y, sr), sr)


def flow_trajectories(frames: Iterator[np.ndarray], boxes: Sequence[tuple[int, int, int, int]] = (), *,
                      total: int | None = None, progress: ProgressFn = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean optical-flow magnitude per frame, over the whole frame and inside each box.

    ``frames`` yields uint8 grayscale arrays (h, w); ``boxes`` are (x0, y0, x1, y1) in those pixels.
    Returns (whole (n,), per_box (len(boxes), n)); value ``i`` is the flow from frame i-1 to frame i
    and value 0 repeats value 1.
    """
    cv2 = _require("cv2")
    whole: list[float] = []
    parts: list[list[float]] = [[] for _ in boxes]
    prev = None
    for i, frame in enumerate(frames):
        if prev is not None:
            flow = cv2.calcOpticalFlowFarneback(prev, frame, None, *FARNEBACK)
            mag = cv2.magnitude(flow[..., 0], flow[..., 1])
            whole.append(float(mag.mean()))
            for k, (x0, y0, x1, y1) in enumerate(boxes):
                region = mag[y0:y1, x0:x1]
                parts[k].append(float(region.mean()) if region.size else 0.0)
        prev = frame
        if total:
            report(progress, "flow", i + 1, total)
    if whole:
        whole.insert(0, whole[0])
        for p in parts:
            p.insert(0, p[0])
    elif prev is not None:  # a single frame: no motion
        whole = [0.0]
        parts = [[0.0] for _ in boxes]
    n = len(whole)
    return np.asarray(whole), np.asarray(parts, dtype=np.float64).reshape(len(boxes), n)


# ------------------------------------------------------------------------------------------- I/O


def _require(name: str):
    try:
        if name == "cv2":
            import cv2 as mod
        elif name == "librosa":
            import librosa as mod
        else:  # pragma: no cover
            raise ImportError(name)
    except ImportError:
        raise AvmixError(f"avmix score needs {'opencv-python-headless' if name == 'cv2' else name}, "
                         "which is not installed", hint=INSTALL_HINT) from None
    return mod


def flow_size(width: int, height: int, flow_width: int | None = None) -> tuple[int, int]:
    """Frame size for optical flow: the video's own size, or ``flow_width`` wide with the aspect kept
    (even height) when that is smaller."""
    if flow_width is None or flow_width >= width:
        return width, height
    h = max(2, int(round(height * flow_width / width / 2)) * 2)
    return flow_width, h


def gray_frames(video: str | os.PathLike, width: int, height: int) -> Iterator[np.ndarray]:
    """Decode the first video stream as uint8 grayscale frames (height, width), streamed from ffmpeg
    (scaled with area averaging when that is not the video's own size)."""
    args = ["-i", ffmpeg.url(video), "-map", "0:v:0", "-an", "-sn", "-dn",
            "-vf", f"scale={width}:{height}:flags=area", "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1"]
    import subprocess

    proc = ffmpeg.popen(args, stdout=subprocess.PIPE)
    size = width * height
    ok = False
    try:
        while True:
            buf = proc.stdout.read(size)
            if len(buf) < size:
                break
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width)
        proc.stdout.close()
        ok = True
    finally:
        if not ok:
            ffmpeg.kill(proc)
    ffmpeg.finish(proc, what=f"decoding {video}", timeout=DECODE_TIMEOUT)


def _open_audio(path: str | os.PathLike):
    """The audio to score, refused when it is too short for librosa's onset window."""
    from avmix.audio.io import open_audio

    f = open_audio(path)
    if f.target_frames(AUDIO_RATE) < N_FFT:
        raise InputError(f"audio too short to score: {f.duration:.3f} s, at least {MIN_SECONDS:.3f} s needed "
                         f"(one {N_FFT}-sample onset window at {AUDIO_RATE} Hz)", path=path)
    return f


def _read_audio(f, seconds: float) -> np.ndarray:
    """Mono float32 (n,) at AUDIO_RATE of the opened audio ``f``, cut to ``seconds``."""
    frames = min(f.target_frames(AUDIO_RATE), int(round(seconds * AUDIO_RATE)))
    parts = list(f.blocks(sample_rate=AUDIO_RATE, channels=1, frames=frames))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts)[:, 0]


# ---------------------------------------------------------------------------------- work directory


def _regions(manifest: Any) -> list[dict[str, Any]]:
    """The per-track boxes a backend recorded in ``manifest["video"]["layout"]`` (the procedural one
    does), as [{"index", "label", "box": [x0, y0, x1, y1]}]; entries without a 4-number box are skipped."""
    video = manifest.get("video") if isinstance(manifest, dict) else None
    layout = video.get("layout") if isinstance(video, dict) else None
    out = []
    for pos, r in enumerate(layout if isinstance(layout, list) else []):
        box = r.get("box") if isinstance(r, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            continue
        idx = r.get("index", pos)
        out.append({"index": idx if isinstance(idx, int) else pos, "label": str(r.get("label", "")),
                    "box": [float(v) for v in box]})
    return out


def _scale_box(box: Sequence[float], src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box in source pixels as a box in flow-frame pixels, clipped."""
    sw, sh = src
    dw, dh = dst
    x0, y0, x1, y1 = box
    fx, fy = dw / sw, dh / sh
    bx0 = int(np.clip(np.floor(min(x0, x1) * fx), 0, dw))
    bx1 = int(np.clip(np.ceil(max(x0, x1) * fx), 0, dw))
    by0 = int(np.clip(np.floor(min(y0, y1) * fy), 0, dh))
    by1 = int(np.clip(np.ceil(max(y0, y1) * fy), 0, dh))
    return bx0, by0, bx1, by1


def _workdir_tracks(workdir: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Per-track regions and analysis.json onsets from a generate work directory, or ([], why not)."""
    from avmix.timeline import Analysis, read_json

    analysis_path, manifest_path = workdir / "analysis.json", workdir / "manifest.json"
    if not analysis_path.is_file():
        return [], "no analysis.json in the work directory"
    analysis = Analysis.load(analysis_path)
    regions = _regions(read_json(manifest_path)) if manifest_path.is_file() else []
    if not regions:
        return [], "the work directory records no per-track layout"
    by_index = {t.index: t for t in analysis.tracks}
    tracks = []
    for pos, r in enumerate(regions):
        t = by_index.get(r["index"]) or (analysis.tracks[pos] if pos < len(analysis.tracks) else None)
        if t is None:
            continue
        tracks.append({"index": r["index"], "label": r["label"] or t.label, "box": r["box"],
                       "onsets": [float(x) for x in t.onsets]})
    if not tracks:
        return [], "the layout matches no track of analysis.json"
    return tracks, None


def _stem_onsets(workdir: Path, indices: Sequence[int], seconds: float, scale: float) -> list[list[float]] | None:
    """librosa onsets of each source as it sits in the composed audio (rebuilt from timeline.json and
    the inputs), so tracks are scored with the same detector as the whole; None if not possible."""
    try:
        import soxr

        from avmix.audio import compose
        from avmix.timeline import Timeline

        tl = Timeline.load(workdir / "timeline.json")
        frames = int(round(seconds * tl.sample_rate))
        out = []
        for i in indices:
            parts, n = [], 0
            for block in compose.source_blocks(tl, i):
                parts.append(block[: frames - n].mean(axis=1))
                n += len(parts[-1])
                if n >= frames:
                    break
            y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
            if tl.sample_rate != AUDIO_RATE and y.size:
                y = soxr.resample(y, tl.sample_rate, AUDIO_RATE, quality="HQ")
            out.append(onset_times(onset_envelope(y, AUDIO_RATE), AUDIO_RATE, scale=scale))
        return out
    except (AvmixError, OSError, IndexError, ValueError, ImportError):
        return None


def _check_workdir(workdir: Path, video: Path, info: Any, fps: float, uses: list[str]) -> None:
    """Refuse a work directory whose manifest says it made another video than ``video`` (its mux record:
    duration, fps, picture size), or whose stage files in ``uses`` changed since. A manifest without a
    mux record is taken as it is. The recorded output path is not compared: it is stored as typed
    (relative to where generate ran), and a renamed or moved copy is still the same video."""
    from avmix.manifest import Manifest

    if not workdir.exists():
        raise InputError("work directory does not exist", path=workdir)
    if not workdir.is_dir():
        raise InputError("is not a directory (--workdir takes a generate work directory)", path=workdir)
    man = Manifest.load(workdir)
    man.check_files([n for n in uses if (workdir / n).exists()])
    run = man.data.get("run")
    mux = run.get("mux") if isinstance(run, dict) else None
    if not isinstance(mux, dict):
        return
    w, h = info.video.width, info.video.height
    seconds = info.duration  # None: the container does not say (then only fps and size are compared)
    try:
        r_sec, r_fps, r_w, r_h = float(mux["duration"]), float(mux["fps"]), int(mux["width"]), int(mux["height"])
    except (KeyError, TypeError, ValueError):
        return
    same = (abs(r_fps - fps) <= 1e-3 * fps and (r_w, r_h) == (w - w % 2, h - h % 2)  # the mux evens sizes
            and (seconds is None or abs(r_sec - seconds) <= 1.5 / fps + 0.025))  # a frame + AAC rounding
    if not same:
        seconds = seconds or 0.0
        made = mux.get("output") or man.data.get("output") or "its output"
        raise InputError(f"this work directory made {made} ({r_sec:.2f} s, {r_fps:g} fps, {r_w}x{r_h}), not "
                         f"{video} ({seconds:.2f} s, {fps:g} fps, {w}x{h}); pass that run's work directory",
                         path=workdir)


# ------------------------------------------------------------------------------------------ entry


def score(video: str | os.PathLike, *, audio: str | os.PathLike | None = None,
          workdir: str | os.PathLike | None = None, flow_width: int | None = None,
          progress: ProgressFn = None) -> dict[str, Any]:
    """AV-Align of ``video`` against ``audio`` (default: the video's own audio stream, else the work
    directory's ``audio.wav``), plus a per-track score when ``workdir`` records a layout.

    Optical flow runs on the frames as they are (the published definition) unless ``flow_width``
    asks for frames scaled to that width (faster; a different number, labelled so in the result).

    Returns {"video", "audio", "fps", "frames", "av_align", "audio_peaks", "video_peaks", "matches",
    "min_flow", "flow_width" (None: full size), "flow_size" [w, h], "per_track": [{"index", "label", "box", "av_align", "audio_peaks",
    "video_peaks", "matches"}] or None, "per_track_onsets" (where the track onsets came from),
    "per_track_note" (why there is no per-track score)}.
    """
    video = check_input(video)
    if flow_width is not None and (not isinstance(flow_width, int) or flow_width < 16):
        raise UsageError(f"bad flow width {flow_width}: must be an integer of at least 16 pixels")
    info = ffmpeg.probe(video)
    if info.video is None:
        raise InputError("has no video stream", path=video)
    fps = info.video.fps
    if not fps or fps <= 0:
        raise InputError("video frame rate unknown (ffmpeg reports none)", path=video)
    if info.video.width <= 0 or info.video.height <= 0:
        raise InputError("video has no picture size", path=video)
    if info.still:
        raise InputError(f"is a still image: AV-Align needs a video of at least {MIN_FRAMES} frames "
                         "(it measures motion between frames)", path=video)
    wd = Path(workdir) if workdir is not None else None
    if audio is None:
        if info.audio is not None:
            audio = video
        elif wd is not None and (wd / "audio.wav").is_file():
            audio = wd / "audio.wav"
        else:
            raise InputError("has no audio stream", path=video, hint="pass the audio with --audio FILE")
    else:
        audio = check_input(audio)
    # Imported first so a missing extra fails before any decoding.
    _require("cv2")
    _require("librosa")

    if wd is not None:
        uses = ["analysis.json", "timeline.json"] + (["audio.wav"] if same_path(audio, wd / "audio.wav") else [])
        _check_workdir(wd, video, info, fps, uses)
    audio_file = _open_audio(audio)  # before the flow: a too-short audio is refused at once
    tracks, note = _workdir_tracks(wd) if wd is not None else ([], None)
    fsize = flow_size(info.video.width, info.video.height, flow_width)
    min_flow = MIN_FLOW * fsize[0] / info.video.width
    boxes = [_scale_box(t["box"], (info.video.width, info.video.height), fsize) for t in tracks]
    total = int(round(info.duration * fps)) if info.duration else None
    whole, parts = flow_trajectories(gray_frames(video, *fsize), boxes, total=total, progress=progress)
    if whole.size == 0:
        raise InputError("no video frames could be decoded", path=video)
    if whole.size < MIN_FRAMES:
        raise InputError(f"has {whole.size} frame(s): AV-Align needs at least {MIN_FRAMES} "
                         "(a motion peak needs a frame to frame change on each side)", path=video)
    seconds = whole.size / fps
    if seconds < MIN_SECONDS:  # the audio is cut to the video's length
        raise InputError(f"video too short to score: {seconds:.3f} s, at least {MIN_SECONDS:.3f} s needed "
                         f"(one {N_FFT}-sample onset window at {AUDIO_RATE} Hz)", path=video)

    report(progress, "onsets", 0, 1)
    env = onset_envelope(_read_audio(audio_file, seconds), AUDIO_RATE)
    onsets = onset_times(env, AUDIO_RATE)
    report(progress, "onsets", 1, 1)

    result: dict[str, Any] = {"video": os.fspath(video), "audio": os.fspath(audio), "fps": fps,
                              "frames": int(whole.size)}
    result.update(av_align(onsets, video_peak_times(whole, fps, min_value=min_flow), fps))
    scaled = fsize[0] != info.video.width
    result.update(min_flow=min_flow, flow_width=fsize[0] if scaled else None, flow_size=list(fsize),
                  per_track=None, per_track_onsets=None,
                  per_track_note=note)
    if tracks:
        per = []
        scale = float(env.max() - env.min()) if env.size else 0.0
        stems = _stem_onsets(wd, [t["index"] for t in tracks], seconds, scale) if scale > 0 else None
        result["per_track_onsets"] = "librosa on each source (timeline.json)" if stems else "analysis.json"
        for k, (t, traj) in enumerate(zip(tracks, parts)):
            onset_t = stems[k] if stems else [x for x in t["onsets"] if 0 <= x < seconds]
            row = {"index": t["index"], "label": t["label"], "box": t["box"]}
            row.update(av_align(onset_t, video_peak_times(traj, fps, min_value=min_flow), fps))
            per.append(row)
        result["per_track"] = per
    return result
