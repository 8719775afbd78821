"""Tiny random-weight text-to-audio pipelines (``avmix models tiny DIR --family stable-audio|audioldm2``).

Every component is of the class the real checkpoint's ``model_index.json`` names (Stable Audio Open:
T5EncoderModel, StableAudioProjectionModel, StableAudioDiTModel, AutoencoderOobleck,
CosineDPMSolverMultistepScheduler; AudioLDM 2: ClapModel, T5EncoderModel, AudioLDM2ProjectionModel,
GPT2LMHeadModel, AudioLDM2UNet2DConditionModel, AutoencoderKL, SpeechT5HifiGan, DDIMScheduler), at the
real sample rates and channel counts, so the tiny model breaks where the real one would. Tokenizers are
built here from small vocabularies (no download). The sound is noise; the wiring is real.

Sizes are chosen so that one call covers well under a second: windowed tracks are cheap to test.
"""
from __future__ import annotations

import os
from pathlib import Path

FAMILIES = ("stable-audio", "audioldm2")
T5_WIDTH = 32
STABLE_AUDIO_LATENTS = 64  # latent frames per call; x256 samples = 0.37 s at 44.1 kHz
AUDIOLDM2_MELS = 16


def t5_tokenizer(max_length: int = 32):
    """A T5Tokenizer (SentencePiece-style unigram) over single letters, digits and word starts."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces += [("\u2581" + c, -3.0) for c in chars] + [(c, -4.0) for c in chars]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def roberta_tokenizer(max_length: int = 32):
    """A byte-level RobertaTokenizer with no merges (one token per byte), as CLAP's text side expects."""
    from transformers import RobertaTokenizer

    from avmix.video.diffusion.tiny import _byte_vocab

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in _byte_vocab():
        vocab.setdefault(c, len(vocab))
    vocab["<mask>"] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=T5_WIDTH, d_kv=8, d_ff=37, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, decoder_start_token_id=0,
                                   pad_token_id=0, eos_token_id=1))


def stable_audio(*, seed: int = 0):
    """A tiny StableAudioPipeline: stereo 44.1 kHz, 64 latent frames (0.37 s) per call."""
    import torch
    from diffusers import (AutoencoderOobleck, CosineDPMSolverMultistepScheduler, StableAudioDiTModel,
                           StableAudioPipeline, StableAudioProjectionModel)

    tokenizer = t5_tokenizer()
    torch.manual_seed(seed)
    text_encoder = _t5_encoder(len(tokenizer))
    projection = StableAudioProjectionModel(text_encoder_dim=T5_WIDTH, conditioning_dim=T5_WIDTH, min_value=0,
                                            max_value=512)
    transformer = StableAudioDiTModel(
        sample_size=STABLE_AUDIO_LATENTS, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, num_key_value_attention_heads=1, cross_attention_dim=16, time_proj_dim=8,
        global_states_input_dim=2 * T5_WIDTH, cross_attention_input_dim=T5_WIDTH)
    vae = AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4, 4, 8], channel_multiples=[1, 2, 2, 2],
                             decoder_channels=8, decoder_input_channels=4, audio_channels=2, sampling_rate=44100)
    # the real checkpoint's scheduler settings (v-prediction, exponential sigmas)
    scheduler = CosineDPMSolverMultistepScheduler(sigma_min=0.3, sigma_max=500, sigma_data=1.0,
                                                  sigma_schedule="exponential", solver_order=2,
                                                  prediction_type="v_prediction")
    return StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection, tokenizer=tokenizer,
                               transformer=transformer, scheduler=scheduler)


def audioldm2(*, seed: int = 0):
    """A tiny AudioLDM2Pipeline: mono 16 kHz, 100 mel frames a second, a 0.64 s default length."""
    import torch
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, AutoencoderKL
    from diffusers import DDIMScheduler
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig,
                              GPT2Config, GPT2LMHeadModel, SpeechT5HifiGan, SpeechT5HifiGanConfig)

    tokenizer, tokenizer_2 = roberta_tokenizer(), t5_tokenizer()
    torch.manual_seed(seed)
    clap_dim, lm_dim = 16, 16
    text_config = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=37, num_attention_heads=2,
                                 num_hidden_layers=2, max_position_embeddings=40, bos_token_id=0, pad_token_id=1,
                                 eos_token_id=2, projection_dim=clap_dim)
    audio_config = ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=37, depths=[1, 1],
                                   num_attention_heads=[2, 2], num_hidden_layers=2, hidden_size=16,
                                   patch_embeds_hidden_size=8, projection_dim=clap_dim, patch_size=2, patch_stride=2,
                                   patch_embed_input_channels=4)
    text_encoder = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(),
                                        projection_dim=clap_dim))
    text_encoder_2 = _t5_encoder(len(tokenizer_2))
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=lm_dim, n_head=2, n_layer=2, vocab_size=64, n_positions=64))
    language_model.config.max_new_tokens = 8  # as the real checkpoint's config
    projection = AudioLDM2ProjectionModel(text_encoder_dim=clap_dim, text_encoder_1_dim=T5_WIDTH,
                                          langauge_model_dim=lm_dim)
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        norm_num_groups=4, attention_head_dim=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=([None, lm_dim, T5_WIDTH],) * 2)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, latent_channels=4,
                        norm_num_groups=4, layers_per_block=1, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=AUDIOLDM2_MELS, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[5, 4, 8],
        upsample_kernel_sizes=[10, 8, 16], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    feature_extractor = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, hop_length=480)
    return AudioLDM2Pipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                             projection_model=projection, language_model=language_model, tokenizer=tokenizer,
                             tokenizer_2=tokenizer_2, feature_extractor=feature_extractor, unet=unet,
                             scheduler=scheduler, vocoder=vocoder)


def write(directory: str | os.PathLike, *, family: str = "stable-audio", seed: int = 0) -> Path:
    """Build a tiny text-to-audio pipeline of ``family`` and ``save_pretrained`` it (safetensors) into
    ``directory``; returns the directory."""
    from avmix.video.diffusion.tiny import save

    return save({"stable-audio": stable_audio, "audioldm2": audioldm2}, family, directory, seed=seed)
