"""Synthetic sounding clips for the composite tests: a solid colour that flashes to its complement on
known frames, with a click (a short tone burst of the clip's own pitch) at the same instants."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from avmix import ffmpeg

SR = 48000
CLICK_S = 0.004


def click_track(seconds: float, times: list[float], freq: float, sr: int = SR) -> np.ndarray:
    x = np.zeros(int(round(seconds * sr)), np.float32)
    n = int(CLICK_S * sr)
    t = np.arange(n) / sr
    burst = (0.8 * np.sin(2 * np.pi * freq * t) * np.hanning(n)).astype(np.float32)
    for s in times:
        i = int(round(s * sr))
        x[i:i + n] += burst[:len(x) - i]
    return x


def make_clip(path: Path, *, color, fps: float = 25, size=(64, 48), seconds: float = 3.0,
              flash_frames=(), freq: float = 1000.0, pix_fmt: str = "yuv420p", codec: str = "libx264",
              audio_codec: str = "aac", pts_jitter_ms: float = 0.0, extra: list[str] | None = None,
              audio: bool = True, frame_fn=None, hum: tuple[float, float] | None = None) -> dict:
    """Write a clip; returns {"path", "flash_times" (s, on the audio clock), "color", "freq"}. ``hum``: a
    quiet low tone over (start, end) seconds, so that trimming silence keeps the clicks inside."""
    w, h = size
    n = int(round(seconds * fps))
    base = np.array(color, np.uint8)
    comp = (255 - base).astype(np.uint8)  # the complement: opposite chroma, whatever the brightness
    times = []
    frames = np.empty((n, h, w, 3), np.uint8)
    for k in range(n):
        frames[k] = comp if k in flash_frames else base
        if frame_fn is not None:
            frame_fn(frames[k], k)
    pts = [k / fps + (pts_jitter_ms / 1000.0) * np.sin(1.7 * k) * (k > 0) for k in range(n)]
    times = [pts[k] for k in flash_frames if k - 1 not in flash_frames]  # a click where a flash starts
    wav = path.with_suffix(".src.wav")
    x = click_track(seconds, times, freq)
    if hum:
        a, b = (int(round(v * SR)) for v in hum)
        x[a:b] += 0.01 * np.sin(2 * np.pi * 150 * np.arange(b - a) / SR)
    sf.write(wav, x, SR, subtype="FLOAT")
    raw = path.with_suffix(".rgb")
    raw.write_bytes(frames.tobytes())
    vin = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", str(raw)]
    # BT.709 colours, tagged so (as phones and cameras tag them)
    chain = ["scale=out_color_matrix=bt709:out_range=tv"]
    vsync = []
    if pts_jitter_ms:
        chain.append(f"setpts='(N/{fps}+{pts_jitter_ms / 1000.0}*sin(1.7*N)*gt(N,0))/TB'")
        vsync = ["-fps_mode", "passthrough"]
    vf = ["-vf", ",".join(chain), *vsync, "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    ain = ["-i", str(wav)] if audio else []
    cmd = [ffmpeg.executable(), "-hide_banner", "-loglevel", "error", "-y"] + vin + ain + vf + \
          ["-c:v", codec, "-pix_fmt", pix_fmt] + (["-c:a", audio_codec] if audio else []) + (extra or []) + [str(path)]
    subprocess.run(cmd, check=True)
    raw.unlink()
    wav.unlink()
    return {"path": path, "flash_times": times, "color": tuple(int(c) for c in base), "freq": freq}


def decode_yuv(path: Path, width: int, height: int) -> np.ndarray:
    out = subprocess.run([ffmpeg.executable(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p",
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, height * 3 // 2, width)


def chroma(frames: np.ndarray, box, width: int, height: int, inset: float = 0.25) -> np.ndarray:
    """Mean (U - 128, V - 128) per frame over the middle of ``box``."""
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * inset, (y1 - y0) * inset
    a, b, c, d = int(x0 + dx) // 2, int(y0 + dy) // 2, int(x1 - dx) // 2, int(y1 - dy) // 2
    flat, n, q = frames.reshape(len(frames), -1), width * height, width * height // 4
    u = flat[:, n:n + q].reshape(-1, height // 2, width // 2)[:, b:d, a:c]
    v = flat[:, n + q:].reshape(-1, height // 2, width // 2)[:, b:d, a:c]
    return np.stack([u.mean(axis=(1, 2)) - 128, v.mean(axis=(1, 2)) - 128], axis=1)


def rgb_uv(color) -> np.ndarray:
    r, g, b = (c / 255 for c in color)
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return np.array([(b - y) / 1.8556, (r - y) / 1.5748])


def click_times(x: np.ndarray, sr: int, freq: float, threshold: float = 0.03) -> list[float]:
    """Start times of the clip's clicks in a mix: bursts whose energy at ``freq`` passes ``threshold``."""
    n = int(CLICK_S * sr)
    t = np.arange(len(x)) / sr
    z = x * np.exp(-2j * np.pi * freq * t)
    env = np.abs(np.convolve(z, np.ones(n) / n, "same"))
    above = np.r_[False, env > threshold]
    starts = np.flatnonzero(above[1:] & ~above[:-1])
    peaks = []
    starts = [s for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] > 0.03 * sr]  # one per burst (codec ringing)
    for s in starts:
        e = s + 2 * n
        peaks.append((s + int(np.argmax(env[s:e]))) / sr - CLICK_S / 2)
    return peaks
