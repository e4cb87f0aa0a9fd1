import json
from itertools import pairwise

import pytest

from diffusionforge.errors import ConfigError
from diffusionforge.modalities import build_dataset
from diffusionforge.train.builders import build_model, lr_at
from diffusionforge.train.config import (
    Config,
    apply_overrides,
    from_dict,
    load_config_file,
    load_preset,
    parse_duration,
    preset_names,
    to_dict,
)


def test_every_preset_loads_and_builds():
    names = preset_names()
    assert {"moons", "swissroll", "ring", "checkerboard"} <= set(names)
    for name in names:
        cfg = load_preset(name)
        assert cfg.preset == name
        if cfg.data.kind == "toy":
            ds = build_dataset(apply_overrides(cfg, ["data.size=64"]))
            assert build_model(cfg, ds.shape)(ds.data[:4], ds.data[:4, 0], None).shape == (4, 2)


def test_overrides_are_typed():
    cfg = apply_overrides(
        Config(),
        [
            "optim.lr=2e-4",
            "train.steps=7",
            "ema.stds=[0.05, 0.2]",
            "data.name=ring",
            "train.tensorboard=false",
            "formulation.min_snr_gamma=5",
            "optim.decay=linear",
        ],
    )
    assert cfg.optim.lr == 2e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.train.steps == 7
    assert cfg.ema.stds == [0.05, 0.2]
    assert cfg.data.name == "ring"
    assert cfg.train.tensorboard is False
    assert cfg.formulation.min_snr_gamma == 5.0
    assert (
        apply_overrides(cfg, ["formulation.min_snr_gamma=none"]).formulation.min_snr_gamma is None
    )
    cfg2 = apply_overrides(Config(), ["optim.lr=1"])  # an int widens to float
    assert cfg2.optim.lr == 1.0 and isinstance(cfg2.optim.lr, float)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lrr=1", "optim.lrr"),
        ("optimx.lr=1", "optimx"),
        ("optim.lr=fast", "optim.lr"),
        ("train.steps=1.5", "train.steps"),
        ("train.tensorboard=maybe", "train.tensorboard"),
        ("optim=1", "section"),
        ("noequals", "key=value"),
        ("ema.kind=sometimes", "ema.kind"),
        ("train.steps=0", "train.steps"),
        ("optim.betas=[0.9]", "optim.betas"),
    ],
)
def test_bad_override_names_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Config(), [override])
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_config_file_unknown_key_and_wrong_type(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[optim]\nlr = 3e-4\n[data]\nname = "ring"\n')
    cfg = load_config_file(good)
    assert cfg.optim.lr == 3e-4 and cfg.data.name == "ring"
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlearning_rate = 3e-4\n")
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config_file(bad)
    bad.write_text('[train]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match="train.steps expected an integer"):
        load_config_file(bad)
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_preset("nope")


def test_round_trip_through_json():
    cfg = apply_overrides(load_preset("ring"), ["optim.lr=5e-4", "ema.kind=power"])
    again = from_dict(json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg


def test_durations():
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    for bad in ["", "ten minutes", "5x", "m"]:
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_lr_schedule_warms_up_then_decays():
    cfg = apply_overrides(Config(), ["optim.lr=1e-3", "optim.warmup_steps=10", "train.steps=100"])
    lrs = [lr_at(cfg, s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a <= b for a, b in pairwise(lrs[:10]))
    assert all(a >= b for a, b in pairwise(lrs[10:]))
    assert lrs[-1] < 1e-5
    const = apply_overrides(cfg, ["optim.decay=constant"])
    assert lr_at(const, 99) == 1e-3
