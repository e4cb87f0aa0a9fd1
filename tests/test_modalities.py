"""The modality table (diffusionforge/modalities.py) is the one place that says what each kind
of checkpoint is: the trainer is handed its row's dataset builder and preview, and the server's
handlers and the CLI follow it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from diffusionforge.assets import bundled_path
from diffusionforge.modalities import DATASETS, MODALITIES, make_trainer, modality_at, modality_of
from diffusionforge.pipelines.pipeline import load_pipeline
from diffusionforge.server.handlers import HANDLERS
from diffusionforge.train.config import load_preset


def test_every_data_kind_belongs_to_exactly_one_modality():
    owners = {}
    for m in MODALITIES.values():
        for kind in m.data_kinds:
            assert kind not in owners, f"{kind} in {owners.get(kind)} and {m.name}"
            owners[kind] = m.name
    assert list(owners) == list(DATASETS)  # no row's kind hides another's builder


def test_the_trainer_and_the_server_follow_the_table(tmp_path):
    cfg = load_preset("moons")
    for m in MODALITIES.values():
        for kind, build in m.datasets.items():
            cfg.data.kind = kind
            assert make_trainer(cfg, tmp_path).preview is m.preview, kind
            assert DATASETS[kind] is build, kind
            assert HANDLERS.get(kind) is m.handler, kind
    assert set(HANDLERS) - {k for m in MODALITIES.values() for k in m.data_kinds} == {"diffusers"}


@pytest.mark.parametrize(
    "name, expected",
    [("digits", "image"), ("audio-digits", "audio"), ("grammar", "text"),
     ("vae-scenes", "autoencoder")],
)  # fmt: skip
def test_bundled_checkpoints_have_their_modality(name, expected):
    config = json.loads((bundled_path(name) / "config.json").read_text())
    assert modality_of(config).name == expected
    assert modality_at(bundled_path(name)).name == expected


def test_unknown_kinds_and_missing_folders_have_none(tmp_path):
    assert modality_of({"model": {"kind": "unet"}, "data": {"kind": "nope"}}) is None
    assert modality_of({}) is None
    assert modality_at(tmp_path / "absent") is None


def test_a_pipeline_says_whether_it_makes_images():
    pipe = load_pipeline(bundled_path("digits"))
    assert pipe.makes_images and pipe.image_shape == pipe.shape
    assert not dataclasses.replace(pipe, shape=(2,)).makes_images  # a toy set's points
