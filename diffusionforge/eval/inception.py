"""Inception-v3 pool features (2048-d) from a weights file the user provides; never downloaded.

Accepted files (``.pth``/``.pt`` read with ``weights_only=True``, or ``.safetensors``):

- ``pt_inception-2015-12-05-*.pth``, the TF-FID graph ported by pytorch-fid (1008-way ``fc``):
  the standard for FID numbers comparable with published ones. Its blocks differ slightly from
  torchvision's (average pools exclude padding; the last block max-pools), and we switch to
  that variant automatically when ``fc`` has 1008 outputs.
- torchvision's ImageNet ``inception_v3_google-*.pth`` (1000-way ``fc``; ``AuxLogits`` ignored).

The network is written here in plain torch with torchvision's parameter names (Szegedy et al.
2016, "Rethinking the Inception Architecture", Fig. 5-7 blocks), so torchvision is not needed.
Inputs (B, C, H, W) in [-1, 1] (the range both weight sets expect) are resized bilinearly to
299x299 as pytorch-fid does; 1-channel images are repeated to 3.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Conv(nn.Module):  # torchvision's BasicConv2d: conv (no bias) + batch norm + ReLU
    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], **kw) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor, fid: bool) -> Tensor:
    # TF's graph averages over valid pixels only; torchvision counts the zero padding.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not fid)


class BlockA(nn.Module):  # 35x35, Fig. 5
    def __init__(self, cin: int, pool: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = Conv(cin, 48, 1), Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(cin, pool, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x, self.fid))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class BlockB(nn.Module):  # 35 -> 17 grid reduction
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2 = Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):  # 17x17 with factorised 7x7, Fig. 6
    def __init__(self, cin: int, c7: int, fid: bool) -> None:
        super().__init__()
        self.fid = fid
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1 = Conv(cin, c7, 1)
        self.branch7x7_2 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = Conv(cin, c7, 1)
        self.branch7x7dbl_2 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        bp = self.branch_pool(_avg_pool(x, self.fid))
        return torch.cat([self.branch1x1(x), b7, d, bp], 1)


class BlockD(nn.Module):  # 17 -> 8 grid reduction
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = Conv(cin, 192, 1), Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(cin, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):  # 8x8 with expanded filter banks, Fig. 7
    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool  # "avg" (torchvision), "avg_valid" (FID Mixed_7b), "max" (FID Mixed_7c)
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = Conv(cin, 448, 1)
        self.branch3x3dbl_2 = Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.pool == "max":
            p = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            p = _avg_pool(x, fid=self.pool == "avg_valid")
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(p)], 1)


class InceptionV3(nn.Module):
    """Inception-v3 trunk up to the 2048-d average pool (no classifier head)."""

    def __init__(self, fid_variant: bool = True) -> None:
        super().__init__()
        f = fid_variant
        self.Conv2d_1a_3x3 = Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c = BlockA(192, 32, f), BlockA(256, 64, f)
        self.Mixed_5d, self.Mixed_6a = BlockA(288, 64, f), BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128, f), BlockC(768, 160, f)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160, f), BlockC(768, 192, f)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, "avg_valid" if f else "avg")
        self.Mixed_7c = BlockE(2048, "max" if f else "avg")

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, 299, 299) in [-1, 1] -> (B, 2048)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    return state.get("state_dict", state) if isinstance(state, dict) else state


class InceptionFeatures:
    """FeatureExtractor: Inception-v3 2048-d pool features from a local weights file."""

    name = "inception-v3"

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu") -> None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: Inception weights file not found (give the path to "
                "pt_inception-2015-12-05-6726825d.pth or a torchvision inception_v3 .pth; "
                "diffusionforge never downloads it)"
            )
        try:
            state = _read_state_dict(path)
        except Exception as e:  # any unreadable file gets the same one-line error
            raise ValueError(f"{path}: not a readable .pth/.safetensors state dict ({e})") from e
        fc = state.get("fc.weight")
        self.model = InceptionV3(fid_variant=fc is not None and fc.shape[0] == 1008)
        trunk = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
        missing, unexpected = self.model.load_state_dict(trunk, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: not Inception-v3 weights ({len(missing)} missing keys, e.g. "
                f"{missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})"
            )
        self.device = torch.device(device)
        self.model.eval().to(self.device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        x = images.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.model(x).cpu()
