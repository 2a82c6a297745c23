"""X-Pose's deformable transformer: encoder, two-stage query selection, decoder.

The 4 feature levels are flattened into one token sequence; after the encoder every image token proposes a box
around its own pixel (size 0.05 * 2^level), gets a class logit against the text memory, and the `num_queries`
best tokens become the decoder's reference boxes. The decoder's content queries are the learned `tgt_embed`
rows, paired by rank: slot i gets `tgt_embed[i]` and the i-th best token's box.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .blocks import MLP
from .decoder import Decoder, DecoderConfig, contrastive_logits
from .encoder import Encoder, EncoderConfig
from .trace import Trace


@dataclass(frozen=True)
class TransformerConfig:
    d_model: int = 256
    num_levels: int = 4
    num_queries: int = 900
    proposal_size: float = 0.05  # side of a level-0 proposal box (normalised), doubled per level
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


def encoder_proposals(spatial_shapes: Sequence[tuple[int, int]], size: float = 0.05,
                      device=None) -> tuple[Tensor, Tensor]:
    """One box per image token, centred on its pixel: (cx, cy, size * 2^level, same).

    Returns (inverse-sigmoid boxes (1, S, 4), valid (1, S, 1)); a box is valid when all four values lie in
    (0.01, 0.99); invalid boxes are +inf (sigmoid 1).
    """
    proposals = []
    for level, (h, w) in enumerate(spatial_shapes):
        grid_y, grid_x = torch.meshgrid(torch.linspace(0, h - 1, h, dtype=torch.float32, device=device),
                                        torch.linspace(0, w - 1, w, dtype=torch.float32, device=device),
                                        indexing="ij")
        centre = (torch.stack((grid_x, grid_y), -1) + 0.5) / torch.tensor([w, h], device=device)  # (h, w, 2)
        wh = torch.ones_like(centre) * size * (2.0 ** level)
        proposals.append(torch.cat((centre, wh), -1).view(1, -1, 4))
    boxes = torch.cat(proposals, 1)
    valid = ((boxes > 0.01) & (boxes < 0.99)).all(-1, keepdim=True)
    unsig = torch.log(boxes / (1 - boxes)).masked_fill(~valid, float("inf"))
    return unsig, valid


class DeformableTransformer(nn.Module):
    def __init__(self, c: TransformerConfig = TransformerConfig()):
        super().__init__()
        self.config = c
        d = c.d_model
        self.level_embed = nn.Parameter(torch.zeros(c.num_levels, d))
        self.encoder = Encoder(c.encoder)
        self.decoder = Decoder(c.decoder)
        self.tgt_embed = nn.Embedding(c.num_queries, d)
        self.enc_output = nn.Linear(d, d)
        self.enc_output_norm = nn.LayerNorm(d)
        self.enc_out_bbox_embed = MLP(d, d, 4, 3)  # its own copy, not tied to the decoder's box head

    def forward(self, srcs: list[Tensor], pos_embeds: list[Tensor], text: Tensor, text_padding: Tensor,
                text_position_ids: Tensor, text_self_mask: Tensor, keypoint_embed: Tensor, keypoint_valid: Tensor,
                trace: Trace | None = None) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """srcs, pos_embeds: per level (B, C, H_l, W_l); text (B, N, C) projected prompt; text_padding (B, N);
        text_position_ids (B, N); text_self_mask (B, N, N) True = may attend; keypoint_embed (B, K, C);
        keypoint_valid (K,). Returns (decoder normed outputs per layer, reference boxes, text memory)."""
        spatial_shapes = [tuple(s.shape[-2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)  # (B, S, C)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                         for lvl, p in enumerate(pos_embeds)], 1)  # (B, S, C)

        memory, text = self.encoder(src, pos, spatial_shapes, text, text_padding, text_position_ids, text_self_mask)

        # two-stage selection: proposals of the valid tokens, ranked by their class logit
        B = memory.shape[0]
        proposals, valid = encoder_proposals(spatial_shapes, self.config.proposal_size, memory.device)
        proposals = proposals.to(memory.dtype)
        tokens = self.enc_output_norm(self.enc_output(memory.masked_fill(~valid, 0.0)))  # (B, S, C)
        token_logits = contrastive_logits(tokens, text, text_padding).max(-1)[0]  # (B, S)
        token_boxes = self.enc_out_bbox_embed(tokens) + proposals  # (B, S, 4) inverse sigmoid
        top = token_logits.topk(self.config.num_queries, dim=1)[1]  # (B, Q) best first
        if trace is not None:
            trace.record("memory_text", text)
            trace.record("memory_level3", memory[:, -spatial_shapes[-1][0] * spatial_shapes[-1][1]:])
            trace.record("spatial_shapes", torch.tensor(spatial_shapes))
            trace.record("enc_token_logits", token_logits)
            trace.record("enc_topk_index", top)
            top = trace.forced("enc_topk_index", top)
        reference_boxes = token_boxes.gather(1, top[..., None].expand(-1, -1, 4)).sigmoid()  # (B, Q, 4)
        if trace is not None:
            selected = tokens.gather(1, top[..., None].expand(-1, -1, tokens.shape[-1]))
            trace.record("enc_selected_memory", selected)
            trace.record("enc_ref_boxes", reference_boxes)
            trace.record("init_box_proposal", proposals.expand(B, -1, -1).gather(
                1, top[..., None].expand(-1, -1, 4)).sigmoid())

        tgt = self.tgt_embed.weight[None].expand(B, -1, -1)  # (B, Q, C): slot i <- tgt_embed[i]
        hs, refs = self.decoder(tgt, reference_boxes, memory, spatial_shapes, text, text_padding, keypoint_embed,
                                keypoint_valid, trace=trace)
        return hs, refs, text
