"""The trainer's extension points: dataset builders (from the modality table), the MODELS /
OBJECTIVES registries, a per-example `cond` tensor with its null value (caption dropout), and
the preview it is handed."""

import pytest
import torch

from diffusionforge.core.formulations import FORMULATIONS
from diffusionforge.data.arrays import ArrayDataset
from diffusionforge.errors import ConfigError
from diffusionforge.modalities import DATASETS, build_dataset, make_trainer
from diffusionforge.train import builders
from diffusionforge.train.trainer import Trainer

from trainkit import tiny_cfg


class RecordingObjective:
    """Squared error of a linear map; records every cond batch the trainer hands it."""

    def __init__(self):
        self.seen = []

    def loss(self, net, x, cond=None, *, generator=None):
        self.seen.append(cond.clone())
        return ((net(x, torch.zeros(len(x)), None) - x) ** 2).flatten(1).mean(1)


def test_every_continuous_formulation_is_an_objective():
    assert set(FORMULATIONS) <= set(builders.OBJECTIVES)
    for kind in FORMULATIONS:
        obj = builders.build_formulation(tiny_cfg(f"formulation.kind={kind}"))
        assert isinstance(obj, FORMULATIONS[kind])


def test_registries_name_the_choices_on_a_bad_kind():
    with pytest.raises(ConfigError, match="data.kind: expected one of toy, npy"):
        build_dataset(tiny_cfg("data.kind=nope"))
    with pytest.raises(ConfigError, match="formulation.kind: expected one of edm"):
        builders.build_formulation(tiny_cfg("formulation.kind=nope"))


def test_cond_rows_reach_the_objective_and_dropout_uses_the_null_cond(tmp_path):
    n, length = 256, 5
    x = torch.randn(n, 2)
    cond = torch.arange(n * length).view(n, length) % 97 + 1  # token ids, never 0
    null = torch.zeros(length, dtype=torch.long)  # the "empty caption"
    data = ArrayDataset(x, cond=cond, null_cond=null)
    obj = RecordingObjective()
    cfg = tiny_cfg("train.label_dropout=0.25", "train.steps=8", "data.shuffle=false")
    Trainer(cfg, tmp_path, dataset=data, formulation=obj, log=lambda m: None).fit()
    seen = torch.cat(obj.seen)  # 8 steps x 64 rows, in data order (no shuffle)
    dropped = (seen == 0).all(1)
    kept_rows = torch.cat([cond[(s * 64) % n : (s * 64) % n + 64] for s in range(8)])
    assert 0.15 < dropped.float().mean() < 0.35
    assert torch.equal(seen[~dropped], kept_rows[~dropped])


def test_dataset_rejects_labels_with_cond_and_a_misshapen_null():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="not both"):
        ArrayDataset(x, labels=torch.zeros(4, dtype=torch.long), cond=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="null_cond"):
        ArrayDataset(x, cond=torch.zeros(4, 3), null_cond=torch.zeros(2))


def test_a_data_kind_without_a_preview_trains_without_pictures(tmp_path):
    cfg = tiny_cfg("data.kind=custom", "train.sample_every=5", "train.steps=10")
    Trainer(cfg, tmp_path, build_dataset=DATASETS["toy"], log=lambda m: None).fit()
    assert not (tmp_path / "samples").exists() or not any((tmp_path / "samples").iterdir())


def test_the_trainer_draws_the_preview_it_is_handed(tmp_path):
    calls = []

    def preview(net, objective, dataset, cfg, device):
        calls.append(cfg.data.kind)
        return None  # nothing to save

    cfg = tiny_cfg("train.sample_every=5", "train.steps=10")
    Trainer(cfg, tmp_path, build_dataset=DATASETS["toy"], preview=preview, log=lambda m: None).fit()
    assert calls == ["toy", "toy"]  # steps 5 and 10
    assert make_trainer(cfg, tmp_path).preview is not None  # toy data: the vectors preview


def test_a_trainer_needs_data_or_a_builder(tmp_path):
    with pytest.raises(TypeError, match="dataset= or build_dataset="):
        Trainer(tiny_cfg(), tmp_path)
