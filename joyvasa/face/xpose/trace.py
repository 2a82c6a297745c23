"""Opt-in inspection of an X-Pose forward pass (parity tests, debugging); no global state."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Trace:
    """Pass one to `XPose.forward(..., trace=...)`.

    * `arrays`: filled with named intermediates (`backbone_feat0`, `enc_token_logits`, `enc_topk_index`, ...,
      the names of the kit's fixtures without their `mid_` prefix). Selections are recorded as the model chose them.
    * `force`: optional replacements for the two discrete selections (`enc_topk_index` (B, 900),
      `dec1_top50_index` (B, 50)), used downstream instead of the model's own choice. Tests use it to keep
      comparing after a near-tie was resolved differently from the reference.
    """

    arrays: dict[str, Tensor] = field(default_factory=dict)
    force: dict[str, Tensor] = field(default_factory=dict)

    def record(self, name: str, value: Tensor) -> None:
        self.arrays[name] = value.detach()

    def forced(self, name: str, natural: Tensor) -> Tensor:
        chosen = self.force.get(name)
        return natural if chosen is None else chosen.to(natural.device)
