"""Helpers for the server tests: a tiny image model folder and a real uvicorn server in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import uvicorn

from diffusionforge.server.app import create_app
from diffusionforge.server.protocol import uvicorn_config
from diffusionforge.server.settings import Limits, ServerSettings
from diffusionforge.train.builders import build_model
from diffusionforge.train.checkpoint import tensors_to_bytes, write_folder
from diffusionforge.train.config import apply_overrides, load_preset, to_dict

from trainkit import TWO_STEPS

CLASSES = [str(k) for k in range(10)]


def write_tiny_image_model(folder: Path, seed: int = 0) -> Path:
    """A 10-class 8x8 UNet with random weights (~15k parameters): milliseconds per step."""
    cfg = apply_overrides(
        load_preset("digits"),
        [
            "model.num_classes=10",
            "model.unet.preset=tiny",
            "model.unet.channels=8",
            "model.unet.channel_mult=[1,2]",
            "model.unet.attn_resolutions=[]",
            "sample.nfe=4",
            "sample.guidance=2.0",
        ],
    )
    torch.manual_seed(seed)
    net = build_model(cfg, (1, 8, 8))
    header = {
        "format": 1,
        "example_shape": [1, 8, 8],
        "parameters": sum(p.numel() for p in net.parameters()),
        "examples": 0,
        "classes": CLASSES,
    }
    files = {
        "model.safetensors": tensors_to_bytes(net.state_dict(), {"step": 0}),
        "config.json": json.dumps({"diffusionforge": header, **to_dict(cfg)}).encode(),
    }
    return write_folder(folder, files, step=0)


def models_folder(root: Path) -> Path:
    models = root / "models"
    write_tiny_image_model(models / "tiny")
    return models


def settings(models: Path | None, **limits) -> ServerSettings:
    return ServerSettings(models_dir=models, limits=Limits(**limits))


@contextmanager
def running_server(server_settings: ServerSettings):
    """A real uvicorn server on a free loopback port; yields (base_url, app)."""
    app = create_app(server_settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


TINY_T2I = [
    "data.size=64",
    "model.dit.dim=32",
    "model.dit.depth=1",
    "model.dit.heads=2",
    "model.text_encoder.dim=16",
    "model.text_encoder.depth=1",
    "model.text_encoder.heads=2",
    "model.text_encoder.max_tokens=12",
    *TWO_STEPS,
]


def write_tiny_t2i_model(run: Path) -> Path:
    """A 2-step text-to-image DiT on the procedural scenes (the t2i tests' tiny settings)."""
    from diffusionforge.modalities import make_trainer

    cfg = apply_overrides(load_preset("t2i-scenes"), TINY_T2I)
    return make_trainer(cfg, run, log=lambda m: None).fit().checkpoint


def write_tiny_audio_model(root: Path) -> Path:
    """A 4-step mel-route audio UNet on two classes of tones (the audio tests' tiny settings)."""
    import math

    import numpy as np
    import soundfile as sf

    from diffusionforge.modalities import make_trainer

    rng, rate, n = np.random.default_rng(0), 8000, 2000
    for k, freq in enumerate([300.0, 1200.0]):
        (root / "tones" / f"{k}-tone").mkdir(parents=True)
        for i in range(6):
            t = np.arange(n) / rate
            wave = rng.uniform(0.3, 0.8) * np.sin(2 * math.pi * freq * t + rng.uniform(0, 6))
            sf.write(root / "tones" / f"{k}-tone" / f"{i}.wav", wave.astype(np.float32), rate)
    overrides = [
        "data.kind=audio",
        f"data.path={root / 'tones'}",
        "data.audio.seconds=0.25",
        "data.audio.n_mels=8",
        "model.unet.channels=8",
        "model.unet.channel_mult=[1,2]",
        "model.unet.attn_resolutions=[]",
        "train.steps=2",
        "train.batch_size=4",
        "train.ckpt_every=2",
        "train.sample_every=0",
        "train.tensorboard=false",
        "train.progress=false",
        "optim.warmup_steps=1",
    ]
    cfg = apply_overrides(load_preset("spoken-digits"), overrides)
    return make_trainer(cfg, root / "run", log=lambda m: None).fit().checkpoint


def write_tiny_text_model(run: Path) -> Path:
    """A 2-step masked-diffusion transformer on the built-in grammar (32-character windows)."""
    from diffusionforge.modalities import make_trainer

    overrides = [
        "model.transformer.preset=tiny",
        "data.text.tokenizer=char",  # holes of k characters, whatever the preset's tokenizer
        "data.text.length=32",
        "data.text.sentences=300",
        "train.batch_size=8",
        "train.steps=2",
        "train.ckpt_every=2",
        "train.tensorboard=false",
        "train.progress=false",
        "sample.nfe=8",
    ]
    cfg = apply_overrides(load_preset("grammar"), overrides)
    return make_trainer(cfg, run, log=lambda m: None).fit().checkpoint
