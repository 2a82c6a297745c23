"""S, the stitching and retargeting MLPs (LivePortrait §3.3).

- stitching: [x_s, x_d] (126) -> 65 corrections that keep the animated face aligned with the pasted-back body;
- lip: [x_s, lip ratios] (65) -> expression delta (63) that opens or closes the mouth;
- eye: [x_s, eye ratios] (66) -> expression delta (63) that opens or closes the eyes.

The official file holds three sub-dicts named `retarget_shoulder`, `retarget_mouth`, `retarget_eye`; each MLP
here is named after its role and keeps the inner `mlp.<i>` names.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass(frozen=True)
class MLPConfig:
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


@dataclass(frozen=True)
class StitchingConfig:
    stitching: MLPConfig = field(default_factory=lambda: MLPConfig(126, (128, 128, 64), 65))
    lip: MLPConfig = field(default_factory=lambda: MLPConfig(65, (128, 128, 64), 63))
    eye: MLPConfig = field(default_factory=lambda: MLPConfig(66, (256, 256, 128, 128, 64), 63))


class RetargetingMLP(nn.Module):
    """Linear -> ReLU per hidden size, then a final Linear (keys mlp.0, mlp.2, ...)."""

    def __init__(self, c: MLPConfig):
        super().__init__()
        layers: list[nn.Module] = []
        width = c.input_size
        for hidden in c.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, c.output_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class StitchingRetargeting(nn.Module):
    def __init__(self, config: StitchingConfig = StitchingConfig()):
        super().__init__()
        self.stitching = RetargetingMLP(config.stitching)
        self.lip = RetargetingMLP(config.lip)
        self.eye = RetargetingMLP(config.eye)
