"""X-Pose encoder: 6 x [image<->text fusion, text self-attention, deformable self-attention over the image].

Image tokens: the 4 feature levels flattened and concatenated (B, S, 256), S = sum H_l * W_l. Text tokens: the
projected prompt (B, 350, 256), of which only the first rows are real. Returns both updated streams.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import MultiheadAttention
from .deformable_attention import MSDeformAttn
from .fusion import BiAttentionBlock
from .position import sine_embed_positions


@dataclass(frozen=True)
class EncoderConfig:
    num_layers: int = 6
    d_model: int = 256
    num_heads: int = 8  # deformable attention; the text and fusion layers use half as many
    ffn_dim: int = 2048  # the text layers and the fusion embedding use half of it
    num_levels: int = 4
    num_points: int = 4


class TextSelfAttentionLayer(nn.Module):
    """Post-norm transformer layer on the text tokens. X-Pose's mask is the identity (each text token sees only
    itself), so the attention reduces to the value path; the full attention is kept for clarity."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, num_heads)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, text: Tensor, pos: Tensor, blocked: Tensor) -> Tensor:
        """text, pos (B, N, C); blocked (B, N, N) True = may not attend."""
        q = text + pos
        text = self.norm1(text + self.self_attn(q, q, text, blocked=blocked[:, None]))
        return self.norm2(text + self.linear2(F.relu(self.linear1(text))))


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention of the image tokens (query = token + position), then FFN; post-norm."""

    def __init__(self, c: EncoderConfig):
        super().__init__()
        self.self_attn = MSDeformAttn(c.d_model, c.num_levels, c.num_heads, c.num_points)
        self.norm1 = nn.LayerNorm(c.d_model)
        self.linear1 = nn.Linear(c.d_model, c.ffn_dim)
        self.linear2 = nn.Linear(c.ffn_dim, c.d_model)
        self.norm2 = nn.LayerNorm(c.d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor,
                spatial_shapes: Sequence[tuple[int, int]]) -> Tensor:
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


def encoder_reference_points(spatial_shapes: Sequence[tuple[int, int]], device=None) -> Tensor:
    """(1, S, L, 2): the pixel centre (x, y) of every token of every level, normalised to [0, 1], repeated for
    each of the L levels (unpadded images: the same normalised point on every level)."""
    refs = []
    for h, w in spatial_shapes:
        ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                                      torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                                      indexing="ij")
        refs.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
    ref = torch.cat(refs, 0)[None]  # (1, S, 2)
    return ref[:, :, None].expand(-1, -1, len(spatial_shapes), -1)


class Encoder(nn.Module):
    def __init__(self, c: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.layers = nn.ModuleList(DeformableEncoderLayer(c) for _ in range(c.num_layers))
        self.text_layers = nn.ModuleList(
            TextSelfAttentionLayer(c.d_model, c.num_heads // 2, c.ffn_dim // 2) for _ in range(c.num_layers))
        self.fusion_layers = nn.ModuleList(
            BiAttentionBlock(c.d_model, c.d_model, c.ffn_dim // 2, c.num_heads // 2) for _ in range(c.num_layers))

    def forward(self, src: Tensor, pos: Tensor, spatial_shapes: Sequence[tuple[int, int]], text: Tensor,
                text_padding: Tensor, text_position_ids: Tensor, text_self_mask: Tensor) -> tuple[Tensor, Tensor]:
        """src, pos (B, S, C) image tokens and their (level) position encodings; text (B, N, C);
        text_padding (B, N) True = padded; text_position_ids (B, N); text_self_mask (B, N, N) True = may attend.
        Returns (image memory (B, S, C), text memory (B, N, C))."""
        reference_points = encoder_reference_points(spatial_shapes, src.device).to(src.dtype)
        text_pos = sine_embed_positions(text_position_ids, num_feats=text.shape[-1]).to(src.dtype)
        for fusion, text_layer, layer in zip(self.fusion_layers, self.text_layers, self.layers):
            src, text = fusion(src, text, text_padding)
            text = text_layer(text, text_pos, blocked=~text_self_mask)
            src = layer(src, pos, reference_points, spatial_shapes)
        return src, text
