"""Small building blocks shared by the X-Pose networks: the MLP head, multi-head attention, inverse sigmoid."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """logit(x) with x clamped to [0, 1] and both x and 1 - x clamped to >= eps (so 1.0 maps to log(999))."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """Linear -> ReLU -> ... -> Linear, `num_layers` linears (keys `layers.<i>`)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)


class MultiheadAttention(nn.Module):
    """Multi-head attention with `nn.MultiheadAttention`'s parameter names (`in_proj_weight`, `in_proj_bias`,
    `out_proj`), batch first, and a boolean `blocked` mask (True = may not attend) that broadcasts to
    (B, heads, L, S). The arithmetic follows PyTorch's reference path: q scaled by 1/sqrt(head_dim) before
    q @ k^T, masked logits set to -inf, softmax, then the weighted sum of v."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(3 * dim, dim)))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, blocked: Tensor | None = None) -> Tensor:
        B, L, C = query.shape
        S = key.shape[1]
        nh, hd = self.num_heads, C // self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q).view(B, L, nh, hd).transpose(1, 2)  # (B, nh, L, hd)
        k = F.linear(key, w_k, b_k).view(B, S, nh, hd).transpose(1, 2)  # (B, nh, S, hd)
        v = F.linear(value, w_v, b_v).view(B, S, nh, hd).transpose(1, 2)  # (B, nh, S, hd)
        logits = (q * math.sqrt(1.0 / hd)) @ k.transpose(-2, -1)  # (B, nh, L, S)
        if blocked is not None:
            logits = logits.masked_fill(blocked, float("-inf"))
        out = logits.softmax(-1) @ v  # (B, nh, L, hd)
        return self.out_proj(out.transpose(1, 2).reshape(B, L, C))
