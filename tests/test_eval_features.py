import pytest
import torch
from safetensors.torch import save_file

from diffusionforge.eval.features import cached_classifier, extract_features, train_classifier
from diffusionforge.eval.inception import InceptionFeatures, InceptionV3


def _bars(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 8x8 images: a horizontal or a vertical bar at a random position."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(1, 7, (n,), generator=g)
    images = -torch.ones(n, 1, 8, 8)
    for i in range(n):
        if labels[i]:
            images[i, 0, :, pos[i]] = 1.0
        else:
            images[i, 0, pos[i], :] = 1.0
    return images, labels


def test_classifier_learns_and_reports_held_out_accuracy():
    images, labels = _bars(300)
    ext = train_classifier(images, labels, epochs=15, batch_size=32, width=8, seed=0)
    assert ext.val_accuracy >= 0.95
    test_x, test_y = _bars(100, seed=1)
    assert (ext.predict(test_x) == test_y).double().mean() >= 0.95
    feats = extract_features(ext, test_x, batch_size=32)
    assert feats.shape == (100, 32)


def test_cached_classifier_round_trips(tmp_path):
    images, labels = _bars(200)
    first = cached_classifier(images, labels, tmp_path, epochs=1, width=8)
    assert len(list(tmp_path.glob("classifier-*.safetensors"))) == 1
    again = cached_classifier(images, labels, tmp_path, epochs=1, width=8)  # loaded, not trained
    assert again.val_accuracy == first.val_accuracy
    torch.testing.assert_close(again(images[:10]), first(images[:10]))
    cached_classifier(images, labels, tmp_path, epochs=2, width=8)  # new settings, new entry
    assert len(list(tmp_path.glob("classifier-*.safetensors"))) == 2


@pytest.mark.slow
def test_digits_classifier_meets_the_97_percent_bar():
    from diffusionforge.data import load_digits

    ds = load_digits()
    ext = train_classifier(ds.images, ds.labels, seed=0)
    assert ext.val_accuracy >= 0.97


def test_inception_loads_user_weights_and_gives_2048_features(tmp_path):
    net = InceptionV3(fid_variant=True)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)
    save_file(state, tmp_path / "pt_inception.safetensors")
    torch.save(state, tmp_path / "pt_inception.pth")
    for name in ("pt_inception.safetensors", "pt_inception.pth"):
        ext = InceptionFeatures(tmp_path / name)
        assert ext.model.Mixed_7c.pool == "max"  # 1008-way fc selects the TF-FID variant
        feats = ext(torch.zeros(1, 1, 8, 8))  # grayscale, any size: repeated and resized
        assert feats.shape == (1, 2048) and torch.isfinite(feats).all()
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    torch.save(state, tmp_path / "torchvision.pth")
    assert InceptionFeatures(tmp_path / "torchvision.pth").model.Mixed_7c.pool == "avg"


def test_inception_errors_are_one_line_and_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        InceptionFeatures(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth"):
        InceptionFeatures(tmp_path / "junk.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not Inception-v3 weights") as err:
        InceptionFeatures(tmp_path / "other.pth")
    assert "\n" not in str(err.value)
