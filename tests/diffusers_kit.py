"""Tiny random diffusers models saved with save_pretrained (no hub access), for the import tests.

Each builder returns the diffusers object and writes its folder; seeds are fixed, so the
models are the same on every run. They are sized to run a few sampling steps in well under a
second on one CPU thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def tiny_unet(channels: int = 3, size: int = 8, num_class_embeds: int | None = None):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
        num_class_embeds=num_class_embeds,
    )


def tiny_sd3_transformer():
    """A one-layer SD3 transformer on 8x8x4 latents (seeded)."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    return SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=8,
        pos_embed_max_size=8,
    )


def scheduler(cls_name: str = "DDIMScheduler", **kw):
    import diffusers

    return getattr(diffusers, cls_name)(num_train_timesteps=1000, **kw)


def save_ddpm(folder: Path, sched, unet=None):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline(unet=unet or tiny_unet(), scheduler=sched)
    pipe.save_pretrained(folder)
    return pipe


def tiny_tokenizer(folder: Path, max_length: int = 12):
    """A byte-level CLIP BPE with no merges: every byte is a token (vocab 514)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # GPT-2's byte -> printable character table (Radford et al. 2019's encoder.py)
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = [chr(b) for b in keep] + [chr(256 + i) for i in range(256 - len(keep))]
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length
    )


def tiny_sd(folder: Path, sched, in_channels: int = 4):
    """A StableDiffusionPipeline of tiny random parts (16x16 images, 8x8x4 latents)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=4,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=520,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=12,
            bos_token_id=512,
            eos_token_id=513,
        )
    ).eval()
    tok = tiny_tokenizer(folder / "_tok")
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(folder)
    return pipe


def seeded(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]
