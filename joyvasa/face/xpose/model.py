"""X-Pose (UniPose, Yang et al. 2024, "X-Pose: Detecting Any Keypoints"): prompted multi-keypoint detection.

Image (B, 3, H, W), ImageNet-normalised, + a text prompt given as cached CLIP text embeddings (one row per
instance name, one per keypoint name) -> `num_groups` (50) candidate instances, each with a class logit per
text token, a box (cx, cy, w, h) and K keypoints, all normalised to [0, 1] of the image.

Pipeline: Swin-T backbone (stages 1-3) -> `input_proj` to 4 levels of 256 channels (+ a stride-2 conv for the
fourth) with sine position encodings -> deformable transformer (`transformer.py`) -> heads on the last decoder
layer. Module names follow the official checkpoint `liveportrait_animals/xpose.pth`, including its oddities:
the backbone sits at `backbone.0` (the original pairs it with a parameter-free position encoder), and the box /
keypoint heads are registered both inside the decoder and at the top level (tied keys). `label_enc`, `pos_proj`
and `padding` are stored in the checkpoint but only ever enter the original's outputs multiplied by 0.0; they
are kept so the file loads strictly, and are not used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .blocks import MLP, inverse_sigmoid
from .decoder import contrastive_logits
from .position import sine_position_map
from .swin import SwinConfig, SwinTransformer
from .trace import Trace
from .transformer import DeformableTransformer, TransformerConfig


@dataclass(frozen=True)
class XPoseConfig:
    swin: SwinConfig = field(default_factory=SwinConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    prompt_dim: int = 512  # CLIP text-embedding width
    text_len: int = 350  # instance prompt rows after zero padding
    position_temperature: float = 20.0  # of the image position encoding (d_model / 2 sine features per axis)
    num_groupnorm_groups: int = 32
    # unused parameters kept for strict loading
    label_book_size: int = 2001
    unused_pos_dim: int = 768

    @property
    def d_model(self) -> int:
        return self.transformer.d_model

    @property
    def num_keypoints(self) -> int:
        return self.transformer.decoder.num_keypoints


class Prompt(NamedTuple):
    """Cached CLIP text embeddings: `instance` (n_instance, 512) names, `keypoints` (n_keypoints, 512)."""

    instance: Tensor
    keypoints: Tensor


class TextInputs(NamedTuple):
    """A prompt padded as the original pads it (see `XPose._text`)."""

    instance: Tensor  # (B, N, 512) instance rows, zero-padded to N = text_len
    keypoints: Tensor  # (B, K, 512) keypoint rows, zero-padded to K
    text_padding: Tensor  # (B, N) bool, True = padded token
    position_ids: Tensor  # (B, N) 1 for real tokens, 0 for padded ones
    self_mask: Tensor  # (B, N, N) bool, True = may attend (identity: each text token sees only itself)
    keypoint_valid: Tensor  # (K,) 1 for real keypoints, 0 for padding


class XPoseOutput(NamedTuple):
    """Per candidate instance (best first after the decoder's selection), all normalised to [0, 1]:

    * `logits` (B, G, text_len): class logit per text token (-inf on padded tokens);
    * `boxes` (B, G, 4): (cx, cy, w, h);
    * `keypoints` (B, G, 3K): x1, y1, ..., xK, yK, then K visibilities (the constant sigmoid(1)).
    """

    logits: Tensor
    boxes: Tensor
    keypoints: Tensor


class XPose(nn.Module):
    def __init__(self, config: XPoseConfig = XPoseConfig()):
        super().__init__()
        c = self.config = config
        d = c.d_model
        self.backbone = nn.ModuleList([SwinTransformer(c.swin)])
        channels = self.backbone[0].out_channels
        projections = [nn.Sequential(nn.Conv2d(ch, d, kernel_size=1), nn.GroupNorm(c.num_groupnorm_groups, d))
                       for ch in channels]
        for _ in range(c.transformer.num_levels - len(channels)):  # extra levels: stride-2 convs
            projections.append(nn.Sequential(nn.Conv2d(channels[-1], d, kernel_size=3, stride=2, padding=1),
                                             nn.GroupNorm(c.num_groupnorm_groups, d)))
        self.input_proj = nn.ModuleList(projections)
        self.transformer = DeformableTransformer(c.transformer)
        self.projection = MLP(c.prompt_dim, d, d, 3)  # instance prompt -> text tokens
        self.projection_kpt = MLP(c.prompt_dim, d, d, 3)  # keypoint prompts -> keypoint query content
        # the same head modules again under their top-level names (tied keys in the checkpoint)
        self.bbox_embed = self.transformer.decoder.bbox_embed
        self.pose_embed = self.transformer.decoder.pose_embed
        self.pose_hw_embed = self.transformer.decoder.pose_hw_embed
        self.label_enc = nn.Embedding(c.label_book_size, d)  # unused (see module docstring)
        self.pos_proj = nn.Linear(d, c.unused_pos_dim)  # unused
        self.padding = nn.Embedding(1, c.unused_pos_dim)  # unused

    def _levels(self, image: Tensor, trace: Trace | None) -> tuple[list[Tensor], list[Tensor]]:
        """Backbone stages -> projected levels (B, 256, H_l, W_l) and their sine position encodings."""
        feats = self.backbone[0](image)
        srcs = [proj(f) for proj, f in zip(self.input_proj, feats)]
        for proj in self.input_proj[len(feats):]:
            srcs.append(proj(feats[-1] if len(srcs) == len(feats) else srcs[-1]))
        c = self.config
        pos = [sine_position_map(s.shape[-2], s.shape[-1], c.d_model // 2, c.position_temperature,
                                 device=s.device).to(s.dtype).expand(s.shape[0], -1, -1, -1) for s in srcs]
        if trace is not None:
            for i, f in enumerate(feats):
                trace.record(f"backbone_feat{i}", f)
            for i, (s, p) in enumerate(zip(srcs, pos)):
                trace.record(f"src{i}", s)
                trace.record(f"pos{i}", p)
        return srcs, pos

    def _text(self, prompt: Prompt, batch: int, ref: Tensor) -> TextInputs:
        """Pad the prompt as the original does: instance rows to `text_len` tokens (only the real ones
        unmasked, position id 1; padded rows position id 0), keypoint rows to K (validity 1 / 0)."""
        c = self.config
        n_inst, n_kpt = prompt.instance.shape[0], prompt.keypoints.shape[0]
        if not 0 < n_inst <= c.text_len or not 0 < n_kpt <= c.num_keypoints:
            raise ValueError(f"X-Pose takes 1..{c.text_len} instance and 1..{c.num_keypoints} keypoint embeddings, "
                             f"got {n_inst} and {n_kpt}")
        opts = dict(device=ref.device, dtype=ref.dtype)
        instance = torch.zeros(batch, c.text_len, c.prompt_dim, **opts)
        instance[:, :n_inst] = prompt.instance.to(**opts)
        keypoints = torch.zeros(batch, c.num_keypoints, c.prompt_dim, **opts)
        keypoints[:, :n_kpt] = prompt.keypoints.to(**opts)
        real = torch.arange(c.text_len, device=ref.device) < n_inst  # (N,)
        text_padding = (~real)[None].expand(batch, -1)  # (B, N) True = padded
        position_ids = real.to(ref.dtype)[None].expand(batch, -1)  # (B, N)
        self_mask = torch.eye(c.text_len, dtype=torch.bool, device=ref.device)[None].expand(batch, -1, -1)
        keypoint_valid = (torch.arange(c.num_keypoints, device=ref.device) < n_kpt).to(ref.dtype)  # (K,)
        return TextInputs(instance, keypoints, text_padding, position_ids, self_mask, keypoint_valid)

    def forward(self, image: Tensor, prompt: Prompt, trace: Trace | None = None) -> XPoseOutput:
        """image (B, 3, H, W) normalised; prompt: cached text embeddings (see `Prompt`)."""
        t = self._text(prompt, image.shape[0], image)
        text = self.projection(t.instance)  # (B, N, C)
        keypoint_embed = self.projection_kpt(t.keypoints)  # (B, K, C)
        if trace is not None:
            trace.record("encoded_text", text)
            trace.record("kpt_embeddings_specific", keypoint_embed)

        srcs, pos = self._levels(image, trace)
        hs, refs, text = self.transformer(srcs, pos, text, t.text_padding, t.position_ids, t.self_mask,
                                          keypoint_embed, t.keypoint_valid, trace=trace)
        out = self._heads(hs[-1], refs[-2], text, t.text_padding)
        if trace is not None:
            self._record_decoder(trace, hs, refs)
            for name, value in zip(("pred_logits", "pred_boxes", "pred_keypoints"), out):
                trace.record(name, value)
        return out

    def _heads(self, hs: Tensor, ref: Tensor, text: Tensor, text_padding: Tensor) -> XPoseOutput:
        """Predictions from the last decoder layer's normed output hs (B, G*(K+1), C) and the reference boxes
        that layer started from, ref (B, G*(K+1), 4)."""
        B = hs.shape[0]
        K = self.config.num_keypoints
        group = K + 1
        box_hs, box_ref = hs[:, 0::group], ref[:, 0::group]  # (B, G, C), (B, G, 4)
        boxes = (self.bbox_embed[-1](box_hs) + inverse_sigmoid(box_ref)).sigmoid()
        logits = contrastive_logits(box_hs, text, text_padding)  # (B, G, N)

        G = box_hs.shape[1]
        offset_head = self.pose_embed[-2]  # the last refinement layer's (pose_embed[-1] seeds the keypoints)
        kpt_hs = hs.view(B, G, group, -1)[:, :, 1:]  # (B, G, K, C)
        kpt_ref = ref.view(B, G, group, 4)[:, :, 1:]
        xy = (offset_head(kpt_hs) + inverse_sigmoid(kpt_ref[..., :2])).sigmoid()  # (B, G, K, 2)
        visibility = torch.ones_like(xy[..., :1]).sigmoid()  # the original's constant sigmoid(1)
        keypoints = torch.cat((xy.reshape(B, G, 2 * K), visibility.reshape(B, G, K)), -1)
        return XPoseOutput(logits=logits, boxes=boxes, keypoints=keypoints)

    def _record_decoder(self, trace: Trace, hs: list[Tensor], refs: list[Tensor]) -> None:
        group = self.config.num_keypoints + 1
        num_box_layers = self.config.transformer.decoder.num_box_layers
        for i, h in enumerate(hs):
            if i < num_box_layers:
                trace.record(f"dec_hs{i}", h)
            else:
                trace.record(f"dec_hs{i}_box", h[:, 0::group])
        for i, r in enumerate(refs):
            trace.record(f"dec_ref{i}", r)
