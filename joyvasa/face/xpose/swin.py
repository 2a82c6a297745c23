"""Swin Transformer backbone (Liu et al. 2021, "Hierarchical Vision Transformer using Shifted Windows").

Image (B, 3, H, W) -> feature maps of the stages in `out_indices`, each through its own LayerNorm
(X-Pose uses Swin-T and stages 1-3: (B, 192, H/8, W/8), (B, 384, H/16, W/16), (B, 768, H/32, W/32)).
Attention runs inside non-overlapping windows of 7 x 7 tokens, every second block on windows shifted by 3.

Behaviours of the original kept on purpose: the input is zero-padded on the right/bottom to a multiple of the
patch size; inside each block the (normalised) tokens are zero-padded to a multiple of the window size and the
padded zeros take part in window attention; odd maps are zero-padded before patch merging; the shifted-window
mask adds -100 (not -inf) between tokens from different regions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    patch_size: int = 4
    mlp_ratio: float = 4.0
    in_channels: int = 3
    out_indices: tuple[int, ...] = (1, 2, 3)  # stages returned (strides 8, 16, 32)

    def stage_dim(self, i: int) -> int:
        return self.embed_dim * 2 ** i


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of `window` -> (B * nW, window, window, C), windows row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, C)


def window_reverse(windows: Tensor, window: int, H: int, W: int) -> Tensor:
    """Inverse of `window_partition`: (B * nW, window, window, C) -> (B, H, W, C)."""
    B = windows.shape[0] // ((H // window) * (W // window))
    x = windows.view(B, H // window, W // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)


def relative_position_index(window: int) -> Tensor:
    """(window^2, window^2) int64: row of the (2*window-1)^2 bias table for every pair of tokens in a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2), each in [0, 2w-2]
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def shifted_window_mask(Hp: int, Wp: int, window: int, shift: int, device=None) -> Tensor:
    """(nW, window^2, window^2) additive mask for shifted windows: -100 between tokens that came from
    different regions of the (padded) map before the cyclic shift, 0 otherwise."""
    region = torch.zeros(1, Hp, Wp, 1, device=device)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for hs in bands:
        for ws in bands:
            region[:, hs, ws, :] = label
            label += 1
    labels = window_partition(region, window).view(-1, window * window)  # (nW, N)
    diff = labels[:, None, :] - labels[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Self-attention inside each window, plus a learned bias per relative offset and head."""

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.window, self.num_heads = window, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B*nW, N, C) with N = window^2; mask (nW, N, N) additive or None."""
        Bw, N, C = x.shape
        nh = self.num_heads
        qkv = self.qkv(x).reshape(Bw, N, 3, nh, C // nh).permute(2, 0, 3, 1, 4)  # (3, B*nW, nh, N, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*nW, nh, N, N)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, nh)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = (attn.view(Bw // nW, nW, nh, N, N) + mask.unsqueeze(1).unsqueeze(0)).view(-1, nh, N, N)
        attn = attn.softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(Bw, N, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """(Shifted-)window attention and MLP, each pre-normed with a residual."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, H: int, W: int, shift_mask: Tensor) -> Tensor:
        """x (B, H*W, C) -> (B, H*W, C); shift_mask from `shifted_window_mask` (used by shifted blocks)."""
        B, _, C = x.shape
        ws = self.window
        h = self.norm1(x).view(B, H, W, C)
        pad_r, pad_b = (ws - W % ws) % ws, (ws - H % ws) % ws
        h = F.pad(h, (0, 0, 0, pad_r, 0, pad_b))  # zeros join the attention
        Hp, Wp = H + pad_b, W + pad_r
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(h, ws).view(-1, ws * ws, C)  # (B*nW, ws*ws, C)
        windows = self.attn(windows, mask=shift_mask if self.shift else None)
        h = window_reverse(windows.view(-1, ws, ws, C), ws, Hp, Wp)  # (B, Hp, Wp, C)
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        if pad_r or pad_b:
            h = h[:, :H, :W, :].contiguous()
        x = x + h.view(B, H * W, C)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), normed and projected to 2C: halves H and W."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        """(B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C)."""
        B, _, C = x.shape
        x = x.view(B, H, W, C)
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class SwinStage(nn.Module):
    """`depth` blocks alternating plain and shifted windows, then (except the last stage) a patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, downsample: bool):
        super().__init__()
        self.window, self.shift = window, window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else self.shift, mlp_ratio) for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, H: int, W: int) -> tuple[Tensor, Tensor, int, int]:
        """x (B, H*W, C) -> (stage output (B, H*W, C), next stage input, its H, its W)."""
        ws = self.window
        Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
        mask = shifted_window_mask(Hp, Wp, ws, self.shift, device=x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, H, W, mask)
        if self.downsample is None:
            return x, x, H, W
        return x, self.downsample(x, H, W), (H + 1) // 2, (W + 1) // 2


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch convolution, then LayerNorm over channels."""

    def __init__(self, patch: int, in_channels: int, dim: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        """(B, 3, H, W) -> ((B, H/p * W/p, C) tokens, H/p, W/p)."""
        H, W = x.shape[-2:]
        p = self.patch
        x = F.pad(x, (0, (p - W % p) % p, 0, (p - H % p) % p))
        x = self.proj(x)  # (B, C, H/p, W/p)
        Hp, Wp = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), Hp, Wp


class SwinTransformer(nn.Module):
    """Patch embedding, four stages; stages in `out_indices` pass through `norm<i>` and are returned."""

    def __init__(self, config: SwinConfig = SwinConfig()):
        super().__init__()
        c = self.config = config
        self.patch_embed = PatchEmbed(c.patch_size, c.in_channels, c.embed_dim)
        n = len(c.depths)
        self.layers = nn.ModuleList(
            SwinStage(c.stage_dim(i), c.depths[i], c.num_heads[i], c.window_size, c.mlp_ratio, i < n - 1)
            for i in range(n))
        for i in c.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(c.stage_dim(i)))

    @property
    def out_channels(self) -> list[int]:
        return [self.config.stage_dim(i) for i in self.config.out_indices]

    def forward(self, image: Tensor) -> list[Tensor]:
        """(B, 3, H, W) normalised image -> [(B, C_i, H_i, W_i) for each returned stage]."""
        x, H, W = self.patch_embed(image)
        outs = []
        for i, stage in enumerate(self.layers):
            y, x, H_next, W_next = stage(x, H, W)
            if i in self.config.out_indices:
                y = getattr(self, f"norm{i}")(y)
                outs.append(y.view(-1, H, W, y.shape[-1]).permute(0, 3, 1, 2).contiguous())
            H, W = H_next, W_next
        return outs
