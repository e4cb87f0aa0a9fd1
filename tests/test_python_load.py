"""diffusionforge.load (#18 point 8): one loader for every kind of our checkpoints, each
pipeline callable, returning what the matching CLI verb writes: PIL images, strings,
waveforms. Bundled models, few NFE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import diffusionforge as df
from diffusionforge.cli.main import main


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_text_model_returns_the_strings_generate_text_prints(capsys):
    prompt = "the old cat [____:3] sleeps."
    got = df.load("grammar")(2, prompt=prompt, nfe=8, seed=4)
    assert main(["generate-text", "grammar", "--prompt", prompt, "--nfe", "8", "--n", "2",
                 "--seed", "4"]) == 0  # fmt: skip
    printed = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("---")]
    assert got == printed and all(t.startswith("the old cat ") for t in got)


def test_audio_model_returns_waveforms(tmp_path):
    pipe = df.load("audio-digits")
    waves = pipe(2, labels="seven", nfe=4, seed=1)
    assert len(waves) == 2 and all(isinstance(w, np.ndarray) for w in waves)
    assert waves[0].shape == (pipe.length,) and waves[0].dtype == np.float32
    assert np.isfinite(waves[0]).all() and not np.array_equal(waves[0], waves[1])
    # clip i depends on its own seed only, the phase search included (batching: ~1e-4)
    again = pipe(1, labels=["seven"], nfe=4, seed=2)
    assert np.abs(again[0] - waves[1]).max() < 1e-3


def test_griffin_lim_phases_per_row_come_from_each_rows_seed():
    from diffusionforge.core.spectral import initial_phases

    rows = initial_phases((3, 4, 5), [7, 8, 9])
    for i, s in enumerate([7, 8, 9]):
        alone = torch.rand((4, 5), generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        assert torch.equal(rows[i], alone)
    batch = initial_phases((3, 4, 5), 7)  # one seed: one generator for the batch, as before
    assert torch.equal(batch[0], rows[0]) and not torch.equal(batch[1], rows[1])


def test_text_to_image_and_image_models_return_pil_images():
    images = df.load("t2i-scenes")(["a red circle", "two blue squares"], 2, nfe=4)
    assert len(images) == 4 and all(isinstance(im, Image.Image) for im in images)
    assert images[0].size == (32, 32) and images[0].mode == "RGB"
    digits = df.load("digits")(2, labels=[3, 7], nfe=4)
    assert [im.size for im in digits] == [(8, 8), (8, 8)]
