"""G, the SPADE generator: warped features (B, 256, 64, 64) -> RGB frame (B, 3, 512, 512) in [0, 1].

Every SPADE layer is modulated by the generator's own input (the warped features), resized to its layer.
The official checkpoint (`liveportrait/base_models/spade_generator.pth`) stores the resblock convolutions with
spectral normalisation (`weight_orig`, `weight_u`, `weight_v`); in eval mode that is a constant rescaling, so
the loader folds it into a plain `weight` once (`fold_spectral_norm`) and this module holds ordinary convs.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class GeneratorConfig:
    input_channels: int = 256  # width of the warping module's output, also the SPADE label channels
    out_channels: int = 64  # width before the final conv
    spade_hidden: int = 128
    num_middle_blocks: int = 6
    pixel_shuffle: int = 2  # 256 -> 512 output


class SPADE(nn.Module):
    """Parameter-free instance norm of x, modulated per pixel by gamma/beta convs of the segmentation map."""

    def __init__(self, norm_nc: int, label_nc: int, hidden: int):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        normalized = F.instance_norm(x, eps=1e-5)
        if segmap.shape[2:] != x.shape[2:]:  # SPADEResnetBlock passes it already at x's size
            segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Two SPADE -> LeakyReLU(0.2) -> conv3x3 steps plus a (learned when widths differ) shortcut."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int):
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = nn.Conv2d(fin, fmiddle, 3, padding=1)
        self.conv_1 = nn.Conv2d(fmiddle, fout, 3, padding=1)
        self.norm_0 = SPADE(fin, label_nc, hidden)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_nc, hidden)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        if seg.shape[2:] != x.shape[2:]:  # resize once for the block's two or three SPADE layers
            seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        c = config
        self.config = c
        wide = 2 * c.input_channels
        self.fc = nn.Conv2d(c.input_channels, wide, 3, padding=1)
        for i in range(c.num_middle_blocks):  # G_middle_0..5, named as in the checkpoint
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(wide, wide, c.input_channels, c.spade_hidden))
        self.up_0 = SPADEResnetBlock(wide, c.input_channels, c.input_channels, c.spade_hidden)
        self.up_1 = SPADEResnetBlock(c.input_channels, c.out_channels, c.input_channels, c.spade_hidden)
        self.conv_img = nn.Sequential(nn.Conv2d(c.out_channels, 3 * c.pixel_shuffle**2, 3, padding=1),
                                      nn.PixelShuffle(c.pixel_shuffle))

    def forward(self, feature: Tensor) -> Tensor:
        seg = feature  # Bx256x64x64 modulates every SPADE layer
        x = self.fc(feature)  # Bx512x64x64
        for i in range(self.config.num_middle_blocks):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2), seg)  # Bx256x128x128
        x = self.up_1(F.interpolate(x, scale_factor=2), seg)  # Bx64x256x256
        x = self.conv_img(F.leaky_relu(x, 0.2))  # Bx3x512x512
        return torch.sigmoid(x)


def fold_spectral_norm(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Replace each (weight_orig, weight_u, weight_v) triple by weight = weight_orig / (u . W v), as eval-mode
    spectral norm computes it (no power iteration). Incomplete triples are left for the strict loader to report.
    """
    out = dict(state)
    for key in [k for k in state if k == "weight_orig" or k.endswith(".weight_orig")]:
        base = key[: -len("_orig")]
        u, v = state.get(base + "_u"), state.get(base + "_v")
        if u is None or v is None:
            continue
        w = state[key]
        sigma = torch.dot(u, torch.mv(w.reshape(w.shape[0], -1), v))
        out[base] = w / sigma
        for suffix in ("_orig", "_u", "_v"):
            del out[base + suffix]
    return out
