"""JoyVASA's denoising transformer: noisy motion + audio features + diffusion step -> clean-motion estimate.

A stack of post-LN transformer decoder layers (arXiv 2411.09209, adapted from DiffPoseTalk). The target
sequence is 25 context frames followed by the 100 frames being denoised, each a 70-d motion vector projected
to d = 256; the memory is the matching 125 audio features. Cross-attention is masked so that token i sees only
audio frame i (`alignment_mask`), there is no self-attention mask, and the network predicts x0 directly.

Positional encoding, two behaviours (`pe_mode`):
- "legacy": the code the released weights were trained with (before 2025-12-09) added one row of the table,
  row L = 125, to every token: a constant offset, no positional information. Default, because that is what
  the released checkpoint saw in training.
- "main": the later fix, rows 0..124, one per token.

Attribute names follow the checkpoint keys (`TE`, `PE`, `diff_step_map`, `feature_proj`, `transformer`,
`motion_dec`, `alignment_mask`), so loading is a name-for-name copy of `denoising_net.*`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .constants import CONTEXT_FRAMES, MOTION_DIM, WINDOW_FRAMES

PEMode = Literal["legacy", "main"]
PE_MODES: tuple[str, ...] = ("legacy", "main")


@dataclass
class DenoiserConfig:
    motion_dim: int = MOTION_DIM
    d_model: int = 256
    n_layers: int = 8  # DenoisingNetwork's own default; train.py's n_layers=6 never reached it
    n_heads: int = 8  # not recoverable from weights; the loader always builds 8, like the original
    ffn_dim: int = 1024  # mlp_ratio 4
    n_motions: int = WINDOW_FRAMES
    n_prev_motions: int = CONTEXT_FRAMES
    pe_rows: int = 600  # positional-encoding table
    step_rows: int = 501  # diffusion-step table: the network's default of 500 steps + 1, whatever the schedule
    pe_mode: PEMode = "legacy"

    @property
    def n_tokens(self) -> int:
        return self.n_prev_motions + self.n_motions


def sinusoidal_table(rows: int, dim: int) -> Tensor:
    """(1, rows, dim) float32: [p, 2i] = sin(p w_i), [p, 2i+1] = cos(p w_i), w_i = 10000^(-2i/dim)."""
    position = torch.arange(rows, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(rows, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)
    return table[None]


def alignment_mask(n_tokens: int) -> Tensor:
    """(n, n) bool, True = blocked: motion token i may attend only to audio frame i."""
    return ~torch.eye(n_tokens, dtype=torch.bool)


class SinusoidalTable(nn.Module):
    """Holds a sinusoidal table as buffer `pe` (the checkpoint's `TE.pe` / `PE.pe`)."""

    def __init__(self, rows: int, dim: int, persistent: bool = True):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(rows, dim), persistent=persistent)


class DenoisingNetwork(nn.Module):
    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        # The step table is rebuilt, never loaded: the original drops `TE.pe` from the checkpoint.
        self.TE = SinusoidalTable(config.step_rows, d, persistent=False)
        self.diff_step_map = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.PE = SinusoidalTable(config.pe_rows, d)
        self.feature_proj = nn.Linear(config.motion_dim, d)
        layer = nn.TransformerDecoderLayer(d, config.n_heads, dim_feedforward=config.ffn_dim, dropout=0.1,
                                           activation="gelu", batch_first=True)
        self.transformer = nn.TransformerDecoder(layer, num_layers=config.n_layers)
        self.register_buffer("alignment_mask", alignment_mask(config.n_tokens))
        self.motion_dec = nn.Sequential(nn.Linear(d, d // 2), nn.GELU(), nn.Linear(d // 2, config.motion_dim))

    def step_embedding(self, step: Tensor) -> Tensor:
        """(N,) integer steps -> (N, 1, d): MLP of the step's sinusoidal row."""
        return self.diff_step_map(self.TE.pe[0, step])[:, None]

    def positional_encoding(self, n_tokens: int, pe_mode: PEMode | None = None) -> Tensor:
        """(1, n_tokens, d) for "main"; (1, d) broadcast to every token for "legacy" (row n_tokens).
        pe_mode None = the configured one."""
        pe_mode = self.config.pe_mode if pe_mode is None else pe_mode
        if pe_mode == "legacy":
            return self.PE.pe[:, n_tokens]
        if pe_mode == "main":
            return self.PE.pe[:, :n_tokens]
        raise ValueError(f"pe_mode must be one of {PE_MODES}, got {pe_mode!r}")

    def tokens(self, x_t: Tensor, prev_motion: Tensor, step: Tensor, pe_mode: PEMode | None = None) -> Tensor:
        """Transformer input: feature_proj([context; x_t]) + positional encoding + step embedding."""
        x = self.feature_proj(torch.cat([prev_motion, x_t], dim=1))  # (N, Lp + L, d)
        x = x + self.positional_encoding(x.shape[1], pe_mode)
        return x + self.step_embedding(step)

    def audio_attention(self, audio: Tensor, prev_audio: Tensor) -> list[Tensor] | None:
        """The cross-attention output of every layer, or None when it depends on the motion tokens.

        With the alignment mask, token i attends to audio frame i alone: its softmax weight is exactly 1, so the
        output is out_proj(V audio_i) whatever the query. It depends only on the window's audio, so the sampler
        computes it once per window instead of at each of the 50 steps. (Equal to the full attention up to float
        rounding: the V projection runs as its own matmul; 1.6e-6 on the kit's denoiser fixture.)
        """
        n = prev_audio.shape[1] + audio.shape[1]
        if self.alignment_mask.shape != (n, n) or not torch.equal(self.alignment_mask, alignment_mask(n).to(
                self.alignment_mask.device)):
            return None
        memory = torch.cat([prev_audio, audio], dim=1)  # (N, Lp + L, d)
        out = []
        for layer in self.transformer.layers:
            attn = layer.multihead_attn
            d = attn.embed_dim
            w_v = attn.in_proj_weight[2 * d :]
            b_v = attn.in_proj_bias[2 * d :] if attn.in_proj_bias is not None else None
            out.append(attn.out_proj(nn.functional.linear(memory, w_v, b_v)))
        return out

    def forward(self, x_t: Tensor, step: Tensor, audio: Tensor, prev_motion: Tensor, prev_audio: Tensor,
                audio_attention: list[Tensor] | None = None, pe_mode: PEMode | None = None) -> Tensor:
        """x_t (N, L, D), step (N,), audio (N, L, d), prev_motion (N, Lp, D), prev_audio (N, Lp, d)
        -> x0 estimate for all Lp + L tokens (N, Lp + L, D); the sampler keeps the last L.
        `audio_attention`: this window's `audio_attention(audio, prev_audio)`, to skip recomputing it.
        `pe_mode`: positional encoding for this call (None = the configured one)."""
        x = self.tokens(x_t, prev_motion, step, pe_mode)  # (N, Lp + L, d)
        if audio_attention is None:
            audio_attention = self.audio_attention(audio, prev_audio)
        if audio_attention is None or self.training:
            memory = torch.cat([prev_audio, audio], dim=1)  # (N, Lp + L, d)
            return self.motion_dec(self.transformer(x, memory, memory_mask=self.alignment_mask))
        for layer, cross in zip(self.transformer.layers, audio_attention, strict=True):  # post-LN decoder layers
            x = layer.norm1(x + layer.self_attn(x, x, x, need_weights=False)[0])
            x = layer.norm2(x + cross)
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        return self.motion_dec(x)  # (N, Lp + L, D)
