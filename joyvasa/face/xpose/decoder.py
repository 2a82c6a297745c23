"""X-Pose decoder: box queries refined into instance boxes, then each kept box grows keypoint queries.

Each of the 6 layers: self-attention, cross-attention to the text memory, deformable cross-attention to the image
memory around each query's 4-d reference box, FFN (all post-norm). Query positions come from a sine encoding of
the reference box through `ref_point_head`. After every layer the reference boxes are refined by the (shared)
heads from the layer's *un-normed* output; the normed outputs (`norm`) are what the prediction heads read.

Layers 0..1 run on the 900 box queries. After layer 1 the `num_groups` (50) queries with the highest class logit
are kept, and each becomes a group of 1 box query + K (68) keypoint queries: keypoint content = the projected
keypoint prompts, keypoint position = box centre moved by `pose_embed`, keypoint size = sigmoid of a learned
K x 2 table (`hw`, `hw_append`) times the box size. Layers 2..5 run on the 50 * 69 queries; queries never attend
across groups, and inside a group the box and the real keypoints attend to each other while the padding
keypoints attend only to each other.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import MLP, MultiheadAttention, inverse_sigmoid
from .deformable_attention import MSDeformAttn
from .position import sine_embed_boxes
from .trace import Trace


@dataclass(frozen=True)
class DecoderConfig:
    num_layers: int = 6
    d_model: int = 256
    num_heads: int = 8
    ffn_dim: int = 2048
    num_levels: int = 4
    num_points: int = 4
    num_box_layers: int = 2  # layers on box queries only; the rest also carry keypoint queries
    num_groups: int = 50  # boxes kept after the box layers
    num_keypoints: int = 68  # keypoint queries per box (padded prompt rows included)
    num_hw_rows: int = 17  # keypoint-size table split as in the checkpoint: `hw` (17 rows) + `hw_append` (rest)


def contrastive_logits(queries: Tensor, text: Tensor, text_padding: Tensor) -> Tensor:
    """Class logits as in X-Pose's ContrastiveAssign: query . text token, -inf on padded tokens.
    queries (B, Q, C), text (B, N, C), text_padding (B, N) -> (B, Q, N)."""
    logits = queries @ text.transpose(-1, -2)
    return logits.masked_fill(text_padding[:, None, :], float("-inf"))


def group_attention_mask(keypoint_valid: Tensor) -> Tensor:
    """(K+1, K+1) bool, True = may not attend, inside one group [box, K keypoints]: the box and the real
    keypoints see each other, the padding keypoints see each other. keypoint_valid: (K,) 1 for real points."""
    member = torch.cat((keypoint_valid.new_ones(1), keypoint_valid))
    return member[:, None] != member[None, :]


class DecoderLayer(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        d = c.d_model
        self.self_attn = MultiheadAttention(d, c.num_heads)
        self.norm2 = nn.LayerNorm(d)
        self.ca_text = MultiheadAttention(d, c.num_heads)
        self.catext_norm = nn.LayerNorm(d)
        self.cross_attn = MSDeformAttn(d, c.num_levels, c.num_heads, c.num_points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, c.ffn_dim)
        self.linear2 = nn.Linear(c.ffn_dim, d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_boxes: Tensor, memory: Tensor,
                spatial_shapes: Sequence[tuple[int, int]], text: Tensor, text_padding: Tensor,
                group_size: int | None = None, group_mask: Tensor | None = None) -> Tensor:
        """tgt, query_pos (B, Q, C); reference_boxes (B, Q, L, 4); memory (B, S, C); text (B, N, C).
        With `group_size`, self-attention stays inside consecutive groups of that many queries, masked inside a
        group by `group_mask` (group_size, group_size)."""
        B, Q, C = tgt.shape
        q = tgt + query_pos
        if group_size is None:
            attended = self.self_attn(q, q, tgt)
        else:
            G = Q // group_size
            qg = q.reshape(B * G, group_size, C)
            attended = self.self_attn(qg, qg, tgt.reshape(B * G, group_size, C), blocked=group_mask)
            attended = attended.reshape(B, Q, C)
        tgt = self.norm2(tgt + attended)

        q = tgt + query_pos
        tgt = self.catext_norm(tgt + self.ca_text(q, text, text, blocked=text_padding[:, None, None, :]))

        tgt = self.norm1(tgt + self.cross_attn(tgt + query_pos, reference_boxes, memory, spatial_shapes))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Decoder(nn.Module):
    def __init__(self, c: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.config = c
        d = c.d_model
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_layers))
        self.norm = nn.LayerNorm(d)
        self.ref_point_head = MLP(2 * d, d, d, 2)
        self.hw = nn.Embedding(c.num_hw_rows, 2)
        self.hw_append = nn.Embedding(c.num_keypoints - c.num_hw_rows, 2)
        # One box head, one keypoint-offset head and one keypoint-size head, each registered once per layer that
        # uses it, as in the original: the checkpoint stores identical copies under every name.
        box_head, offset_head, size_head = MLP(d, d, 4, 3), MLP(d, d, 2, 3), MLP(d, d, 2, 3)
        n_kpt_layers = c.num_layers - c.num_box_layers
        self.bbox_embed = nn.ModuleList([box_head] * c.num_layers)
        self.pose_embed = nn.ModuleList([offset_head] * (n_kpt_layers + 1))  # the extra one seeds the keypoints
        self.pose_hw_embed = nn.ModuleList([size_head] * n_kpt_layers)

    def _query_pos(self, boxes: Tensor) -> Tensor:
        return self.ref_point_head(sine_embed_boxes(boxes, self.config.d_model // 2))

    def _spawn_keypoints(self, output: Tensor, boxes: Tensor, keypoint_embed: Tensor) -> tuple[Tensor, Tensor]:
        """Kept box queries -> groups [box, K keypoints]. output (B, G, C), boxes (B, G, 4) sigmoid,
        keypoint_embed (B, K, C). Returns (queries (B, G*(K+1), C), boxes (B, G*(K+1), 4))."""
        B, G, C = output.shape
        K = keypoint_embed.shape[1]
        kpt_content = keypoint_embed[:, None].expand(B, G, K, C)  # (B, G, K, C)
        delta_xy = self.pose_embed[-1](kpt_content)[..., :2]
        kpt_xy = (inverse_sigmoid(boxes[:, :, None, :2]) + delta_xy).sigmoid()  # (B, G, K, 2)
        size_table = torch.cat((self.hw.weight, self.hw_append.weight), 0).sigmoid()  # (K, 2)
        kpt_wh = size_table[None, None] * boxes[:, :, None, 2:]  # (B, G, K, 2)
        group_boxes = torch.cat((boxes[:, :, None], torch.cat((kpt_xy, kpt_wh), -1)), 2)  # (B, G, K+1, 4)
        group_queries = torch.cat((output[:, :, None], kpt_content), 2)  # (B, G, K+1, C)
        return group_queries.flatten(1, 2), group_boxes.flatten(1, 2)

    def _refine_groups(self, layer_id: int, output: Tensor, boxes: Tensor, group_size: int) -> Tensor:
        """New reference boxes of the grouped queries (B, G*(K+1), 4): boxes by `bbox_embed`, keypoint centres by
        `pose_embed` and keypoint sizes by `pose_hw_embed`, all as updates of the inverse sigmoid."""
        B, Q, C = output.shape
        k = layer_id - self.config.num_box_layers
        unsig = inverse_sigmoid(boxes).view(B, -1, group_size, 4)
        out = output.view(B, -1, group_size, C)
        new_box = (self.bbox_embed[layer_id](out[:, :, 0]) + unsig[:, :, 0]).sigmoid()  # (B, G, 4)
        kpt_out = out[:, :, 1:]
        kpt_xy = unsig[:, :, 1:, :2] + self.pose_embed[k](kpt_out)[..., :2]
        kpt_wh = unsig[:, :, 1:, 2:] + self.pose_hw_embed[k](kpt_out)
        new_kpt = torch.cat((kpt_xy, kpt_wh), -1).sigmoid()  # (B, G, K, 4)
        return torch.cat((new_box[:, :, None], new_kpt), 2).view(B, Q, 4)

    def forward(self, tgt: Tensor, reference_boxes: Tensor, memory: Tensor, spatial_shapes: Sequence[tuple[int, int]],
                text: Tensor, text_padding: Tensor, keypoint_embed: Tensor, keypoint_valid: Tensor,
                trace: Trace | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """tgt (B, Q, C) content queries; reference_boxes (B, Q, 4) sigmoid (cx, cy, w, h); memory (B, S, C);
        text (B, N, C) text memory; keypoint_embed (B, K, C) projected keypoint prompts; keypoint_valid (K,).

        Returns (normed outputs of every layer, reference boxes before layer 0 and after every layer); from
        layer `num_box_layers` on, queries are grouped: row g*(K+1) is box g, the next K rows its keypoints.
        """
        c = self.config
        L = len(spatial_shapes)
        group_size = keypoint_embed.shape[1] + 1
        group_mask = None
        output, boxes = tgt, reference_boxes
        hs, refs = [], [boxes]
        for layer_id, layer in enumerate(self.layers):
            grouped = layer_id >= c.num_box_layers
            output = layer(output, self._query_pos(boxes), boxes[:, :, None].expand(-1, -1, L, -1), memory,
                           spatial_shapes, text, text_padding,
                           group_size=group_size if grouped else None, group_mask=group_mask)
            hs.append(self.norm(output))

            if grouped:
                boxes = self._refine_groups(layer_id, output, boxes, group_size)
            else:
                boxes = (self.bbox_embed[layer_id](output) + inverse_sigmoid(boxes)).sigmoid()
            if layer_id == c.num_box_layers - 1:
                logits = contrastive_logits(output, text, text_padding).max(-1)[0]  # (B, Q)
                keep = logits.topk(c.num_groups, dim=1)[1]  # (B, G) best first
                if trace is not None:
                    trace.record("dec1_class_max", logits)
                    trace.record("dec1_top50_index", keep)
                    keep = trace.forced("dec1_top50_index", keep)
                output = output.gather(1, keep[..., None].expand(-1, -1, output.shape[-1]))
                boxes = boxes.gather(1, keep[..., None].expand(-1, -1, 4))
                output, boxes = self._spawn_keypoints(output, boxes, keypoint_embed)
                group_mask = group_attention_mask(keypoint_valid)
            refs.append(boxes)
        return hs, refs
