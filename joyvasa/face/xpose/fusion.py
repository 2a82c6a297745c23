"""Image <-> text fusion block of the X-Pose encoder (bi-directional cross-attention, as in GLIP / Grounding DINO).

Both streams are LayerNorm-ed; image tokens attend to the (unmasked) text tokens and text tokens attend to all
image tokens, through one shared logit matrix; each stream adds its update scaled by a learned per-channel
factor (`gamma_v`, `gamma_l`) to its *normed* input.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

# The original clamps attention logits to this range (a float16 guard; a no-op in float32 at these magnitudes).
LOGIT_CLAMP = 50000.0


class BiMultiHeadAttention(nn.Module):
    def __init__(self, v_dim: int = 256, l_dim: int = 256, embed_dim: int = 1024, num_heads: int = 4):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.v_proj = nn.Linear(v_dim, embed_dim)  # image queries
        self.l_proj = nn.Linear(l_dim, embed_dim)  # text keys
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)

    def _heads(self, x: Tensor) -> Tensor:
        """(B, N, E) -> (B*heads, N, head_dim)."""
        B, N, _ = x.shape
        return x.view(B, N, self.num_heads, self.head_dim).transpose(1, 2).reshape(B * self.num_heads, N, -1)

    def _merge(self, x: Tensor, B: int) -> Tensor:
        """(B*heads, N, head_dim) -> (B, N, E)."""
        N = x.shape[1]
        return x.view(B, self.num_heads, N, self.head_dim).transpose(1, 2).reshape(B, N, -1)

    def forward(self, v: Tensor, l: Tensor, text_padding: Tensor) -> tuple[Tensor, Tensor]:
        """v (B, Nv, Cv) image tokens, l (B, Nl, Cl) text tokens, text_padding (B, Nl) True = padded.
        Returns the updates (delta_v (B, Nv, Cv), delta_l (B, Nl, Cl))."""
        B = v.shape[0]
        q = self._heads(self.v_proj(v) * self.scale)  # (B*h, Nv, hd)
        k = self._heads(self.l_proj(l))  # (B*h, Nl, hd)
        values_v = self._heads(self.values_v_proj(v))
        values_l = self._heads(self.values_l_proj(l))

        logits = q @ k.transpose(1, 2)  # (B*h, Nv, Nl)
        logits = (logits - logits.max()).clamp(-LOGIT_CLAMP, LOGIT_CLAMP)  # shifted by the global max first

        # text -> image: each text token's softmax over all image tokens
        logits_l = logits.transpose(1, 2)  # (B*h, Nl, Nv)
        logits_l = (logits_l - logits_l.max(dim=-1, keepdim=True)[0]).clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
        attn_l = logits_l.softmax(-1)

        # image -> text: padded text tokens are masked out. Tokens padded in every prompt of the batch get weight
        # exactly 0, so they are dropped before the softmax (same result; X-Pose pads 349 of its 350 tokens).
        used = ~text_padding.all(0)  # (Nl,)
        masked = text_padding[:, None, None, used].expand(-1, self.num_heads, 1, -1).flatten(0, 1)  # (B*h, 1, n)
        attn_v = logits[..., used].masked_fill(masked, float("-inf")).softmax(-1)  # (B*h, Nv, n)

        delta_v = self.out_v_proj(self._merge(attn_v @ values_l[:, used], B))
        delta_l = self.out_l_proj(self._merge(attn_l @ values_v, B))
        return delta_v, delta_l


class BiAttentionBlock(nn.Module):
    """Pre-norm fusion: returns (LN(v) + gamma_v * delta_v, LN(l) + gamma_l * delta_l)."""

    def __init__(self, v_dim: int = 256, l_dim: int = 256, embed_dim: int = 1024, num_heads: int = 4):
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim, l_dim, embed_dim, num_heads)
        self.gamma_v = nn.Parameter(torch.ones(v_dim))
        self.gamma_l = nn.Parameter(torch.ones(l_dim))

    def forward(self, v: Tensor, l: Tensor, text_padding: Tensor) -> tuple[Tensor, Tensor]:
        v = self.layer_norm_v(v)
        l = self.layer_norm_l(l)
        delta_v, delta_l = self.attn(v, l, text_padding)
        return v + self.gamma_v * delta_v, l + self.gamma_l * delta_l
