import math

import pytest
import torch

from diffusionforge.errors import ConfigError, TrainingDiverged
from diffusionforge.modalities import build_dataset, make_trainer
from diffusionforge.train import checkpoint as io
from diffusionforge.train.builders import build_formulation

from trainkit import tiny_cfg


class FlakyFormulation:
    """Wraps a real formulation; its loss is NaN on the chosen (1-based) optimizer steps."""

    def __init__(self, inner, bad_steps):
        self.inner, self.bad_steps, self.step = inner, set(bad_steps), 0
        self.sigma_min, self.sigma_max = inner.sigma_min, inner.sigma_max

    def precondition(self, net):
        return self.inner.precondition(net)

    def loss(self, net, x0, cond=None, *, generator=None):
        self.step += 1
        loss = self.inner.loss(net, x0, cond, generator=generator)
        return loss * math.nan if self.step in self.bad_steps else loss


def _fixed_loss(cfg, net) -> float:
    form, data = build_formulation(cfg), build_dataset(cfg).data
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        return sum(form.loss(net, data, generator=g).mean().item() for _ in range(8)) / 8


def test_loss_goes_down(tmp_path):
    cfg = tiny_cfg("train.steps=300", "model.mlp.hidden=64", "optim.lr=3e-3")
    trainer = make_trainer(cfg, tmp_path, log=lambda m: None)
    trainer._setup()
    before = _fixed_loss(cfg, trainer.net)
    result = make_trainer(cfg, tmp_path / "b", log=lambda m: None).fit()
    from diffusionforge.pipelines.pipeline import load_pipeline

    after = _fixed_loss(cfg, load_pipeline(result.checkpoint, use_ema=False).net)
    assert result.status == "done" and result.step == 300
    assert after < 0.9 * before, (before, after)  # EDM loss has a large irreducible floor


def test_nan_steps_leave_weights_unchanged(tmp_path):
    cfg = tiny_cfg()
    clean = make_trainer(cfg, tmp_path / "clean", until_step=4, log=lambda m: None)
    clean.fit()
    flaky = make_trainer(
        cfg,
        tmp_path / "flaky",
        until_step=6,
        log=lambda m: None,
        formulation=FlakyFormulation(build_formulation(cfg), {5, 6}),
    )
    result = flaky.fit()
    assert result.step == 6 and result.skipped_steps == 2
    for name, value in clean.net.state_dict().items():
        assert torch.equal(value, flaky.net.state_dict()[name]), name
    for name, value in clean.ema.avg.items():
        assert torch.equal(value, flaky.ema.avg[name]), name


def test_nan_streak_stops_with_intact_checkpoint(tmp_path):
    cfg = tiny_cfg("train.nan_limit=3", "train.steps=50")
    good = make_trainer(cfg, tmp_path / "good", until_step=3, log=lambda m: None)
    good.fit()
    bad = make_trainer(
        cfg,
        tmp_path / "bad",
        log=lambda m: None,
        formulation=FlakyFormulation(build_formulation(cfg), range(4, 100)),
    )
    with pytest.raises(TrainingDiverged, match="3 non-finite losses in a row"):
        bad.fit()
    ckpt, skipped = io.latest_checkpoint(tmp_path / "bad")
    assert ckpt is not None and not skipped and ckpt.step == 6
    weights = ckpt.tensors("model.safetensors")
    for name, value in good.net.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_batch_must_split_over_accumulation(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size"):
        make_trainer(tiny_cfg("train.grad_accum=3"), tmp_path, log=lambda m: None).fit()
    with pytest.raises(ConfigError, match="larger than the dataset"):
        make_trainer(tiny_cfg("train.batch_size=1024"), tmp_path, log=lambda m: None).fit()


def test_training_is_deterministic(tmp_path):
    a = make_trainer(tiny_cfg("train.grad_accum=2"), tmp_path / "a", log=lambda m: None)
    a.fit()
    b = make_trainer(tiny_cfg("train.grad_accum=2"), tmp_path / "b", log=lambda m: None)
    b.fit()
    for name, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[name])  # deterministic


def test_power_ema_snapshots_and_sampling_grid(tmp_path):
    cfg = tiny_cfg(
        "ema.kind=power", "ema.snapshot_every=5", "train.sample_every=20", "train.tensorboard=true"
    )
    result = make_trainer(cfg, tmp_path, log=lambda m: None).fit()
    assert sorted(p.name for p in (tmp_path / "phema").iterdir()) == [
        f"phema-{s:09d}.safetensors" for s in (5, 10, 15, 20)
    ]
    assert (tmp_path / "samples" / "step-000000020.png").stat().st_size > 1000
    ckpt = io.load_checkpoint(result.checkpoint, need_training_state=True)
    assert ckpt.has("ema.safetensors") and ckpt.has("training_state/ema_all.safetensors")
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and the sample image


@pytest.mark.slow
def test_moons_preset_learns_the_distribution(tmp_path):
    """A short run of the real preset lands far closer to the data than a Gaussian does."""
    from diffusionforge.data.toy import make_toy
    from diffusionforge.eval.swd import sliced_wasserstein
    from diffusionforge.pipelines.pipeline import load_pipeline
    from diffusionforge.train.config import apply_overrides, load_preset

    cfg = apply_overrides(
        load_preset("moons"),
        ["train.steps=600", "train.tensorboard=false", "train.sample_every=0"],
    )
    cfg.train.progress = False
    result = make_trainer(cfg, tmp_path, log=lambda m: None).fit()
    samples = load_pipeline(result.checkpoint).generate(3000, seed=0)
    fresh = make_toy("moons", 3000, seed=99)
    gaussian = torch.randn(3000, 2) * fresh.std(0) + fresh.mean(0)
    swd, base = sliced_wasserstein(samples, fresh), sliced_wasserstein(gaussian, fresh)
    assert swd < 0.08 and swd < base / 2.5, (swd, base)


def test_bf16_mixed_precision_trains(tmp_path):
    cfg = tiny_cfg("train.mixed_precision=bf16", "train.steps=30")
    result = make_trainer(cfg, tmp_path, log=lambda m: None).fit()
    assert result.status == "done" and math.isfinite(result.loss) and result.skipped_steps == 0
    weights = io.latest_checkpoint(tmp_path)[0].tensors("model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values())  # master weights stay fp32


@pytest.mark.parametrize(
    "form",
    [
        ["formulation.kind=vp", "formulation.prediction=v", "formulation.schedule=cosine"],
        ["formulation.kind=vp", "formulation.min_snr_gamma=5"],
        ["formulation.kind=flow", "formulation.shift=2"],
    ],
    ids=["vp-v-cosine", "vp-eps-minsnr", "flow"],
)
def test_every_formulation_trains_and_samples(tmp_path, form):
    from diffusionforge.pipelines.pipeline import load_pipeline

    result = make_trainer(tiny_cfg(*form), tmp_path, log=lambda m: None).fit()
    assert result.status == "done" and math.isfinite(result.loss)
    pipe = load_pipeline(result.checkpoint)
    assert type(pipe.formulation).__name__.lower() == form[0].split("=")[1]
    samples = pipe.generate(64, nfe=8, seed=0)
    assert samples.shape == (64, 2) and torch.isfinite(samples).all()
