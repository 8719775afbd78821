"""Finding, checking and loading diffusers pipelines (hub id or local directory), and choosing a device.

``--model`` forms:
  DIR or OWNER/NAME                 a diffusers pipeline (model_index.json): AnimateDiffPipeline, WanPipeline
  ADAPTER+BASE                      an AnimateDiff motion adapter over a Stable Diffusion 1.5 base; ADAPTER is a
                                    MotionAdapter (dir or hub id) or a .safetensors file (local path or
                                    OWNER/NAME/FILE.safetensors, e.g. AnimateDiff-Lightning's N-step files)
The family is read from model_index.json before any weights load. Weights load only from safetensors,
never with remote code; HF_HUB_OFFLINE=1 means nothing is fetched.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avmix.errors import ModelError, UsageError

FAMILIES = {"AnimateDiffPipeline": "animatediff", "WanPipeline": "wan"}
ADAPTER_BASES = ("StableDiffusionPipeline",)
DEVICES = ("auto", "cuda", "mps", "cpu")
ENV_MODEL = "AVMIX_MODEL"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelInfo:
    spec: str  # what the user passed
    family: str  # "animatediff", "animatediff-lightning" or "wan"
    class_name: str
    location: str  # local dir or hub id of the pipeline (the base for ADAPTER+BASE)
    adapter: str | None = None  # adapter dir / hub id / safetensors file
    revision: str | None = None  # hub commit hash when known
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def quiet_libraries():
    """Silence diffusers/transformers progress bars, info logs and deprecation chatter (avmix reports
    its own progress); restores their settings afterwards."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    saved = (dlog.get_verbosity(), tlog.get_verbosity(), dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message=".*torchvision.*")
            yield
    finally:
        dlog.set_verbosity(saved[0])
        tlog.set_verbosity(saved[1])
        if saved[2]:
            dlog.enable_progress_bar()
        if saved[3]:
            tlog.enable_progress_bar()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def model_spec(model: str | None) -> str:
    """``model`` or $AVMIX_MODEL; ModelError when neither is set."""
    spec = (model or os.environ.get(ENV_MODEL) or "").strip()
    if not spec:
        raise ModelError("no diffusion model given", hint=f"pass --model DIR_OR_HUB_ID or set {ENV_MODEL}")
    return spec


def _not_here(repo: str) -> ModelError:
    why = "HF_HUB_OFFLINE is set" if offline() else "it could not be downloaded"
    return ModelError(f"model {repo} is not on this machine and {why}",
                      hint=f"download it with `huggingface-cli download {repo}` on a connected machine "
                           "(same HF_HOME cache), or pass a local directory")


def fetch(repo: str, filename: str) -> tuple[Path, str | None]:
    """A file of a local dir or hub repo -> (local path, hub commit or None). Raises ModelError."""
    local = Path(repo).expanduser()
    if local.exists() or not _HUB_ID.match(repo):
        if not local.exists():
            raise ModelError("no such model directory", path=repo,
                             hint="pass a local diffusers pipeline directory or a hub id OWNER/NAME")
        if not local.is_dir():
            raise ModelError("not a directory (a diffusers pipeline is a folder with model_index.json)", path=repo)
        path = local / filename
        if not path.is_file():
            raise FileNotFoundError(path)
        return path, None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HFValidationError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError)
    from huggingface_hub.utils import logging as hlog

    level = hlog.get_verbosity()
    hlog.set_verbosity_error()  # no per-retry chatter; one error line below says it all
    try:
        got = Path(hf_hub_download(repo, filename, local_files_only=offline()))
    except LocalEntryNotFoundError:
        if offline() and _cached(repo):
            raise FileNotFoundError(filename) from None
        raise _not_here(repo) from None
    except GatedRepoError:
        raise ModelError(f"model {repo} is gated on the hub",
                         hint="accept its licence on the hub and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise ModelError(f"no model {repo} on the Hugging Face hub") from None
    except EntryNotFoundError:
        raise FileNotFoundError(filename) from None
    except HFValidationError as e:
        raise ModelError(f"bad model id {repo!r} ({e})") from None
    except OSError as e:  # network trouble with nothing cached
        raise _not_here(repo) from e
    finally:
        hlog.set_verbosity(level)
    revision = got.parent.name if got.parent.parent.name == "snapshots" else None
    return got, revision


def _cached(repo: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir
        return any(r.repo_id == repo for r in scan_cache_dir().repos)
    except Exception:
        return False


def _class_name(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["_class_name"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelError(f"unreadable diffusers config ({path.name})", path=path.parent) from None


def _supported() -> str:
    return ", ".join(list(FAMILIES) + [f"MotionAdapter+{b}" for b in ADAPTER_BASES])


def identify(model: str | None) -> ModelInfo:
    """Resolve ``model`` (or $AVMIX_MODEL) and detect its family from the config files, no weights loaded."""
    spec = model_spec(model)
    if "+" in spec and not Path(spec).expanduser().exists():  # a directory may have '+' in its name
        adapter, base = (s.strip() for s in spec.split("+", 1))
        cls = _pipeline_class(base)
        if cls not in ADAPTER_BASES:
            raise ModelError(f"base {base} is a {cls}; a motion adapter needs a Stable Diffusion 1.5 base "
                             f"({', '.join(ADAPTER_BASES)})")
        family, extra = _adapter_family(adapter)
        info = ModelInfo(spec, family, "AnimateDiffPipeline", base, adapter=adapter, extra=extra)
        info.revision = _revision(base)
        return info
    cls = _pipeline_class(spec)
    if cls not in FAMILIES:
        hint = None
        if cls in ADAPTER_BASES:
            hint = "an image model needs a motion adapter: --model ADAPTER+BASE (see avmix models --help)"
        raise ModelError(f"{spec}: pipeline {cls} is not a family avmix can drive; supported: {_supported()}",
                         hint=hint)
    family = FAMILIES[cls]
    extra: dict[str, Any] = {}
    if family == "animatediff":
        family, extra = _scheduler_family(spec)
    return ModelInfo(spec, family, cls, spec, revision=_revision(spec), extra=extra)


def _pipeline_class(repo: str) -> str:
    try:
        path, _ = fetch(repo, "model_index.json")
    except FileNotFoundError:
        adapter = _try_fetch(repo, "config.json")
        hint = "point --model at a folder written by save_pretrained (or make one: avmix models tiny DIR)"
        if adapter is not None and _class_name(adapter) == "MotionAdapter":
            hint = "a motion adapter alone cannot render: --model ADAPTER+BASE with a Stable Diffusion 1.5 base"
        raise ModelError("not a diffusers pipeline (no model_index.json)", path=repo, hint=hint) from None
    return _class_name(path)


def _try_fetch(repo: str, filename: str) -> Path | None:
    try:
        return fetch(repo, filename)[0]
    except (FileNotFoundError, ModelError):
        return None


def _revision(repo: str) -> str | None:
    try:
        return fetch(repo, "model_index.json")[1]
    except (FileNotFoundError, ModelError):
        return None


def _adapter_family(adapter: str) -> tuple[str, dict[str, Any]]:
    lightning = "lightning" in adapter.lower()
    extra: dict[str, Any] = {}
    m = re.search(r"(\d+)\s*step", adapter.lower())
    if lightning and m:
        extra["steps"] = int(m.group(1))
    family = "animatediff-lightning" if lightning else "animatediff"
    if adapter.endswith(".safetensors"):
        extra["adapter_file"] = str(_adapter_file(adapter))
        return family, extra
    try:
        cfg, _ = fetch(adapter, "config.json")  # ModelError (e.g. not downloaded) passes through
    except FileNotFoundError:
        cfg = None
    if cfg is None or _class_name(cfg) != "MotionAdapter":
        raise ModelError("not a MotionAdapter (no config.json with _class_name MotionAdapter)", path=adapter)
    return family, extra


def _adapter_file(spec: str) -> Path:
    """A single-file adapter: a local .safetensors path or OWNER/NAME/FILE.safetensors on the hub."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    repo, _, filename = spec.rpartition("/")
    if not _HUB_ID.match(repo):
        raise ModelError("no such adapter file", path=spec)
    try:
        return fetch(repo, filename)[0]
    except FileNotFoundError:
        raise ModelError(f"hub repo {repo} has no file {filename}") from None


def _scheduler_family(repo: str) -> tuple[str, dict[str, Any]]:
    """AnimateDiff-Lightning pipelines are recognised by their Euler scheduler with trailing timesteps."""
    path = _try_fetch(repo, "scheduler/scheduler_config.json")
    if path is None:
        return "animatediff", {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "animatediff", {}
    if cfg.get("_class_name") == "EulerDiscreteScheduler" and cfg.get("timestep_spacing") == "trailing":
        return "animatediff-lightning", {}
    return "animatediff", {}


def resolve_device(device: str = "auto") -> tuple[str, Any]:
    """(torch device name, dtype): fp16 on CUDA/MPS, fp32 on the CPU. UsageError for an unknown name,
    ModelError when the requested accelerator is missing."""
    if device not in DEVICES:
        raise UsageError(f"bad device {device!r}: choose one of {', '.join(DEVICES)}")
    import torch

    has_cuda = torch.cuda.is_available()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        device = "cuda" if has_cuda else "mps" if has_mps else "cpu"
    elif device == "cuda" and not has_cuda:
        raise ModelError("--device cuda: torch sees no CUDA GPU on this machine", hint="use --device auto or cpu")
    elif device == "mps" and not has_mps:
        raise ModelError("--device mps: Apple MPS is not available here", hint="use --device auto or cpu")
    return device, (torch.float16 if device in ("cuda", "mps") else torch.float32)


def load(info: ModelInfo, *, device: str, dtype: Any, offload: bool = False):
    """Load the pipeline of ``info`` through diffusers' from_pretrained and place it on ``device``."""
    import torch

    dtype = dtype or torch.float32
    kw = dict(torch_dtype=dtype, use_safetensors=True, local_files_only=offline())
    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype; older ones know only it
            warnings.simplefilter("ignore", FutureWarning)
            pipe = _from_pretrained(info, kw)
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safetensors" in msg.lower():
            raise ModelError(f"model {info.spec}: no safetensors weights ({msg})",
                             hint="avmix loads only .safetensors files") from None
        if offline() and ("offline" in msg.lower() or "local_files_only" in msg.lower() or "cache" in msg.lower()):
            raise _not_here(info.location) from None
        raise ModelError(f"model {info.spec} failed to load: {msg}") from None
    pipe.set_progress_bar_config(disable=True)
    if offload and device == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    for name in ("enable_slicing", "enable_tiling"):
        fn = getattr(vae, name, None)
        if fn is not None and device != "cpu":  # memory savers; on the CPU they only cost time
            try:
                fn()
            except (NotImplementedError, ValueError):
                pass
    return pipe


def _from_pretrained(info: ModelInfo, kw: dict[str, Any]):
    import diffusers

    dtype = kw["torch_dtype"]
    if info.adapter is not None:
        adapter = _load_adapter(info, dtype)
        pipe = diffusers.AnimateDiffPipeline.from_pretrained(info.location, motion_adapter=adapter, **kw)
        if info.family == "animatediff-lightning":
            pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(
                pipe.scheduler.config, timestep_spacing="trailing", beta_schedule="linear")
        else:
            pipe.scheduler = diffusers.DDIMScheduler.from_config(
                pipe.scheduler.config, clip_sample=False, timestep_spacing="linspace", beta_schedule="linear",
                steps_offset=1)
        return pipe
    return getattr(diffusers, info.class_name).from_pretrained(info.location, **kw)


def _load_adapter(info: ModelInfo, dtype: Any):
    import diffusers

    spec = info.adapter
    if spec.endswith(".safetensors"):
        from safetensors.torch import load_file

        path = Path(info.extra.get("adapter_file") or _adapter_file(spec))
        try:  # skip the random init of ~450M parameters that the file replaces anyway
            from accelerate import init_empty_weights
        except ImportError:
            init_empty_weights = contextlib.nullcontext
        with init_empty_weights():
            adapter = diffusers.MotionAdapter()
        missing, unexpected = adapter.load_state_dict(load_file(str(path)), strict=False,
                                                      assign=init_empty_weights is not contextlib.nullcontext)
        if unexpected or len(missing) > 0:
            raise ModelError(f"{spec}: not a diffusers-format motion adapter "
                             f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
        return adapter.to(dtype)
    return diffusers.MotionAdapter.from_pretrained(spec, torch_dtype=dtype, use_safetensors=True,
                                                   local_files_only=offline())
