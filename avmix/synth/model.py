"""Finding and loading a text-to-audio pipeline, through the same helpers as the video models.

``--audio-model`` (or $AVMIX_AUDIO_MODEL) is a local diffusers directory or a hub id. The family is read
from model_index.json before any weights load; weights load only from safetensors, never with remote
code, and HF_HUB_OFFLINE=1 means nothing is fetched (all of it is avmix.video.diffusion.loading's).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from avmix.errors import ModelError
from avmix.video.diffusion import loading

ENV_MODEL = "AVMIX_AUDIO_MODEL"
FAMILIES = {"StableAudioPipeline": "stable-audio", "AudioLDM2Pipeline": "audioldm2"}
# per family: (steps, guidance) when not given, the length of one call when the model has no hard limit
DEFAULTS = {"stable-audio": (100, 7.0), "audioldm2": (200, 3.5)}
_SAMPLE = 1 << 20  # bytes hashed from each end of a local weights file


@dataclass(frozen=True)
class AudioModel:
    spec: str
    family: str  # "stable-audio" or "audioldm2"
    class_name: str
    location: str
    revision: str | None  # hub commit, or None for a local directory
    fingerprint: str  # what the cache key holds for "which weights"

    def info(self) -> loading.ModelInfo:
        return loading.ModelInfo(self.spec, self.family, self.class_name, self.location, revision=self.revision)


def model_spec(model: str | None) -> str:
    spec = (model or os.environ.get(ENV_MODEL) or "").strip()
    if not spec:
        raise ModelError("a text track needs a text-to-audio model and none was given",
                         hint=f"pass --audio-model DIR_OR_HUB_ID (e.g. stabilityai/stable-audio-open-1.0) or set "
                              f"{ENV_MODEL}; for a CPU smoke test: avmix models tiny DIR --family stable-audio")
    return spec


def identify(model: str | None) -> AudioModel:
    """Resolve ``model`` (or $AVMIX_AUDIO_MODEL) and check its family, no weights loaded. ModelError if not usable."""
    spec = model_spec(model)
    try:
        path, revision = loading.fetch(spec, "model_index.json")
    except FileNotFoundError:
        raise ModelError("not a diffusers pipeline (no model_index.json)", path=spec,
                         hint="pass a folder written by save_pretrained (or make one: avmix models tiny DIR "
                              "--family stable-audio)") from None
    cls = loading._class_name(path)
    if cls not in FAMILIES:
        raise ModelError(f"{spec}: pipeline {cls} is not a text-to-audio family avmix can drive; supported: "
                         f"{', '.join(FAMILIES)}", hint="pass --audio-model with a Stable Audio Open or AudioLDM 2 model")
    location = spec
    fingerprint = f"{spec}@{revision}" if revision else _local_fingerprint(path.parent)
    return AudioModel(spec, FAMILIES[cls], cls, location, revision, fingerprint)


def _local_fingerprint(directory: Path) -> str:
    """A hash of a local pipeline's configs and weights (each file's size and first and last MiB), so that
    a directory rewritten with other weights gives other cache keys, without reading gigabytes."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if path.suffix not in (".json", ".txt", ".model", ".safetensors"):
            continue
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with open(path, "rb") as f:
            h.update(f.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                f.seek(-_SAMPLE, os.SEEK_END)
                h.update(f.read(_SAMPLE))
            elif size > _SAMPLE:
                h.update(f.read())
    return "local:" + h.hexdigest()[:32]


_kept: dict[tuple, tuple[Any, str, str]] | None = None  # the last pipeline, inside keep_loaded()


@contextlib.contextmanager
def keep_loaded() -> Iterator[None]:
    """Within this block the last loaded pipeline is reused (many jobs, one model); outside it every
    synthesis loads its own and frees it, so a text-to-audio model never holds memory the video stage needs."""
    global _kept
    outer = _kept
    _kept = {} if outer is None else outer
    try:
        yield
    finally:
        _kept = outer


def dtype_name(dtype: Any) -> str:
    """The name the cache key and the origin record give a torch dtype ("float32")."""
    return str(dtype).replace("torch.", "")


def load(model: AudioModel, device: str = "auto", dtype: Any = None) -> tuple[Any, str, str]:
    """(pipeline, device, dtype name) loaded through loading.load on ``device`` (fp16 on CUDA/MPS). A
    ``dtype`` given means ``device`` is already resolved (``loading.resolve_device``) and is not again."""
    name, dtype = (device, dtype) if dtype is not None else loading.resolve_device(device)
    memo = (model.fingerprint, name, str(dtype))
    if _kept is not None and memo in _kept:
        return _kept[memo]
    with loading.quiet_libraries():
        pipe = loading.load(model.info(), device=name, dtype=dtype)
    vae = getattr(pipe, "vae", None)
    if hasattr(vae, "disable_tiling"):  # loading.load tiles VAEs on accelerators; mel tiles would seam
        vae.disable_tiling()
    _upgrade_language_model(pipe)
    result = pipe, name, dtype_name(dtype)
    if _kept is not None:
        _kept.clear()
        _kept[memo] = result
    return result


def _upgrade_language_model(pipe: Any) -> None:
    """AudioLDM 2 checkpoints saved with a bare GPT2Model cannot generate under transformers >= 4.50
    (no GenerationMixin; diffusers issue #12630); only hidden states are used, so wrap it in the LM-head class."""
    lm = getattr(pipe, "language_model", None)
    if lm is None or type(lm).__name__ != "GPT2Model":
        return
    from transformers import GPT2LMHeadModel

    with loading.quiet_libraries():
        head = GPT2LMHeadModel(lm.config)
    head.transformer = lm
    head.lm_head.weight = lm.wte.weight
    pipe.language_model = head.to(device=lm.device, dtype=lm.dtype)
