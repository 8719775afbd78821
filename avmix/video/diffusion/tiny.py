"""Tiny random-weight pipelines of the supported families, for tests and users' CI smoke renders.

Built entirely in code (no download): a byte-level tokenizer with no merges, a text encoder of width 32,
and denoiser/VAE blocks of 8-16 channels. The pictures are noise; the wiring (schedules, seeds, shapes,
files, loading through ``from_pretrained``) is real.
"""
from __future__ import annotations

import os
from pathlib import Path

FAMILIES = ("animatediff", "animatediff-lightning", "wan", "sd15")
TEXT_WIDTH = 32


def _byte_vocab() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE (GPT-2/CLIP byte-to-unicode table)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def clip_tokenizer():
    """A CLIPTokenizer over single bytes (each byte, and each byte ending a word), no merges."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _byte_vocab():
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def t5_tokenizer():
    """A fast word-level tokenizer standing in for T5's (pad 0, eos 1, unk 2, then a few hundred words)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=64)


def _sd15_parts(seed: int) -> dict:
    """Tiny Stable Diffusion 1.5-shaped parts: UNet (8, 16) channels, 4-level VAE (scale 8), CLIP width 32."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, norm_num_groups=2, attention_head_dim=4)
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        projection_dim=TEXT_WIDTH))
    scheduler = DDIMScheduler(clip_sample=False, steps_offset=1, timestep_spacing="linspace", **SD_BETAS)
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="linear")


def animatediff(*, lightning: bool = False, seed: int = 0):
    """A tiny AnimateDiffPipeline: the tiny SD 1.5 parts plus a motion adapter (8, 16) channels."""
    import torch
    from diffusers import AnimateDiffPipeline, EulerDiscreteScheduler, MotionAdapter

    parts = _sd15_parts(seed)
    torch.manual_seed(seed + 1)
    adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_norm_num_groups=2,
                            motion_num_attention_heads=2, motion_max_seq_length=32)
    if lightning:  # AnimateDiff-Lightning's recipe: Euler, trailing timesteps, no CFG
        parts["scheduler"] = EulerDiscreteScheduler(timestep_spacing="trailing", **SD_BETAS)
    return AnimateDiffPipeline(motion_adapter=adapter, **parts)


def sd15(*, seed: int = 0):
    """A tiny StableDiffusionPipeline (a base for ``--model ADAPTER+BASE``)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                                   **_sd15_parts(seed))


def wan(*, seed: int = 0):
    """A tiny WanPipeline (Wan 2.1 T2V layout): 3-channel-base Wan VAE, 2-layer DiT, T5 encoder of width 32."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import T5Config, UMT5EncoderModel

    tokenizer = t5_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    text_encoder = UMT5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=TEXT_WIDTH, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_WIDTH, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    return WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer)


def write(directory: str | os.PathLike, *, family: str = "animatediff", seed: int = 0) -> Path:
    """Build a tiny pipeline of ``family`` ("animatediff", "animatediff-lightning", "wan" or "sd15") and
    ``save_pretrained`` it (safetensors) into ``directory``; returns the directory."""
    builders = {"animatediff": animatediff, "wan": wan, "sd15": sd15,
                "animatediff-lightning": lambda seed: animatediff(lightning=True, seed=seed)}
    return save(builders, family, directory, seed=seed)


def save(builders: dict, family: str, directory: str | os.PathLike, *, seed: int = 0) -> Path:
    """Build ``builders[family](seed=seed)`` and ``save_pretrained`` it (safetensors) into ``directory``."""
    from avmix.video.diffusion.loading import quiet_libraries

    if family not in builders:
        raise ValueError(f"unknown tiny family {family!r}; choose from {', '.join(builders)}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_libraries():
        builders[family](seed=seed).save_pretrained(out, safe_serialization=True)
    return out


def audio_classifier(directory: str | os.PathLike, *, labels: tuple[str, ...] = ("Dog", "Rain", "Speech"),
                     seed: int = 0) -> Path:
    """A tiny random-weight wav2vec2 audio classifier (for ``--tagger`` tests), saved as safetensors."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        classifier_proj_size=8, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)})
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    Wav2Vec2ForSequenceClassification(config).save_pretrained(out, safe_serialization=True)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(out)
    return out
