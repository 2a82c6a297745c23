"""X-Pose output -> instances: score filter, non-maximum suppression, keypoints in pixels.

As in LivePortrait's runner: score = sigmoid of the best class logit; keep scores > `min_score` (0 in the
original); NMS on the boxes with IoU threshold 0 (any overlap suppresses); the first kept candidate (highest
score) is the answer.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .model import XPoseOutput


class Candidates(NamedTuple):
    """Candidate instances of one image. `passed` (G,) bool marks rows with score > min_score; the other fields
    hold those rows only: `scores` (n,), `boxes_xyxy` (n, 4) normalised corners, `keypoints` (n, 2P) normalised
    x1, y1, ..., xP, yP; `keep` (m,) indices into them that survive NMS, best first."""

    passed: Tensor
    scores: Tensor
    boxes_xyxy: Tensor
    keypoints: Tensor
    keep: Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), -1)


def nms(boxes_xyxy: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression (torchvision's rule: drop boxes with IoU > threshold against a kept,
    higher-scoring box; ties in score keep the original order). Returns kept indices, best first."""
    order = scores.sort(descending=True, stable=True)[1]
    x1, y1, x2, y2 = boxes_xyxy.unbind(-1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = w * h
        suppressed |= (inter / (areas[i] + areas - inter) > iou_threshold).cpu()
    return torch.tensor(keep, dtype=torch.long)


def candidates(output: XPoseOutput, num_points: int, index: int = 0, min_score: float = 0.0,
               iou_threshold: float = 0.0) -> Candidates:
    """Filter and rank the candidates of image `index` of a batch; keypoints cut to the first `num_points`."""
    scores = output.logits[index].float().sigmoid().max(-1)[0].cpu()  # (G,)
    boxes = output.boxes[index].float().cpu()
    keypoints = output.keypoints[index, :, : 2 * num_points].float().cpu()
    passed = scores > min_score
    scores, boxes, keypoints = scores[passed], box_cxcywh_to_xyxy(boxes[passed]), keypoints[passed]
    keep = nms(boxes, scores, iou_threshold) if len(scores) else torch.zeros(0, dtype=torch.long)
    return Candidates(passed=passed, scores=scores, boxes_xyxy=boxes, keypoints=keypoints, keep=keep)


def to_pixels(normalised_xy: Tensor | np.ndarray, width: int, height: int) -> np.ndarray:
    """(2P,) normalised x1, y1, ... -> (P, 2) float64 pixels (x * width, y * height), as the original does."""
    xy = np.asarray(normalised_xy, dtype=np.float64).reshape(-1, 2)
    return xy * np.array([width, height], dtype=np.float64)
