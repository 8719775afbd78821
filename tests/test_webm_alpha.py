"""A VP8/VP9 WebM with alpha keeps its transparency in its tile, like a PNG: ffmpeg's own decoders
drop the alpha layer, so avmix names the libvpx decoder for such a stream. Run on each ffmpeg build."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from avmix import ffmpeg
from avmix.video import composite, pictures
from conftest import ffmpeg_builds

BUILDS = ffmpeg_builds()
W, H, FPS = 48, 32, 10


def _rgb(frame: np.ndarray) -> np.ndarray:
    """The centre pixel of a yuv420p tile (BT.709, limited range) as 0..255 RGB."""
    f = frame.astype(np.float32).reshape(-1)
    y = f[:H * W].reshape(H, W)[H // 2, W // 2] - 16
    u = f[H * W:H * W * 5 // 4].reshape(H // 2, W // 2)[H // 4, W // 4] - 128
    v = f[H * W * 5 // 4:].reshape(H // 2, W // 2)[H // 4, W // 4] - 128
    y, u, v = y * 255 / 219, u * 255 / 224, v * 255 / 224
    return np.array([y + 1.5748 * v, y - 0.1873 * u - 0.4681 * v, y + 1.8556 * u])


@pytest.mark.parametrize("ffmpeg_build", list(BUILDS.values()), ids=list(BUILDS), indirect=True)
@pytest.mark.parametrize("encoder", ["libvpx-vp9", "libvpx"])
def test_webm_alpha_is_kept_over_the_background(tmp_path, ffmpeg_build, encoder):
    clip = tmp_path / "clear.webm"
    # 5 s of red at 40 % opacity, then (from 4 s) blue at 40 %, with sound
    subprocess.run([ffmpeg.executable(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"color=c=red@0.4:s={W}x{H}:r={FPS}:d=4,format=yuva420p[a];"
                    f"color=c=blue@0.4:s={W}x{H}:r={FPS}:d=1,format=yuva420p[b];[a][b]concat",
                    "-f", "lavfi", "-i", "sine=f=440:d=5", "-c:v", encoder, "-pix_fmt", "yuva420p",
                    "-auto-alt-ref", "0", "-b:v", "1M", "-c:a", "libopus", "-shortest", str(clip)], check=True)
    pic = pictures.probe(clip)
    assert pic.alpha and pic.decoder == encoder
    bg = np.array(composite.BG_RGB) * 255
    with pictures.Reader(pic, W, H, FPS) as r:
        first = _rgb(r.get(2))
        late = _rgb(r.get(45))  # 4.5 s: a new decoder, started with a seek
    assert np.all(np.abs(first - (0.4 * np.array([255, 0, 0]) + 0.6 * bg)) < 14), first
    assert np.all(np.abs(late - (0.4 * np.array([0, 0, 255]) + 0.6 * bg)) < 14), late


def test_without_libvpx_the_alpha_is_dropped_with_one_line(tmp_path, monkeypatch, capsys):
    clip = tmp_path / "clear.webm"
    subprocess.run([ffmpeg.executable(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"color=c=red@0.4:s={W}x{H}:r={FPS}:d=1,format=yuva420p", "-c:v", "libvpx-vp9",
                    "-pix_fmt", "yuva420p", str(clip)], check=True)
    build = ffmpeg.build(pictures.DECODE_NEEDS)
    monkeypatch.setattr(ffmpeg, "build", lambda needs=(): type(build)(**{
        **build.__dict__, "encoders": build.encoders - {"libvpx", "libvpx-vp9"}}))
    capsys.readouterr()
    pic = pictures.probe(clip)
    assert not pic.alpha and not pic.decoder
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(clip) in lines[0] and "transparency" in lines[0]
    with pictures.Reader(pic, W, H, FPS) as r:  # the picture still shows, opaque
        red, green, blue = _rgb(r.get(2))
    assert red > 200 and green < 50 and blue < 50
