"""Head control: per-axis gain and offset, keyframed offsets, head distance and framing (VASA-1's head distance).

The renderer pins motion frame 0 to the source's own pose: rotation, scale and translation drive the source
*relative to frame 0* (`joyvasa.pipeline.driving`). So every edit here leaves frame 0 exactly as it was and
acts on how later frames differ from it:

- gain g per angle: a_i <- a_0 + g (a_i - a_0)  (0 = the head held at the first frame's pose, 1 = as generated);
- constant offsets (degrees), distance (a factor on `scale`, > 1 = closer) and framing (added to t_x, t_y in
  keypoint units: the crop spans -1..1, + x = right, + y = down) ease in from frame 0 over `ramp_s` seconds
  (smoothstep). An offset applied to frame 0 as well would be cancelled by the relative driving;
- keyframed offsets (degrees) from a text track, added as written (see `parse_keyframes` for the syntax).

R is recomputed from the edited angles with `rotation_matrix`. Neutral options return the input object itself.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from ..motion.constants import FPS
from ..motion.decode import MotionSequence
from ..renderer.keypoints import rotation_matrix
from .curves import ramp_in, smoothstep

AXES = ("pitch", "yaw", "roll")
EASINGS = ("linear", "ease", "hold")

KEYFRAME_SYNTAX = ("keys separated by ';' or new lines, each TIME [EASING]: AXIS=DEGREES[, AXIS=DEGREES...]; "
                   "TIME in seconds (2.5 or 2.5s) or frames (50f); EASING linear (default), ease (ease-in-out) "
                   "or hold; AXIS pitch, yaw or roll. Example: 0:yaw=0; 2.5s ease: yaw=15, pitch=-5; 4s: yaw=0")

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_TIME = re.compile(r"(?P<value>\d+(?:\.\d*)?|\.\d+)(?P<unit>[sf]?)")
_ASSIGN = re.compile(rf"(?P<axis>[A-Za-z]+)\s*=\s*(?P<value>{_NUMBER})")


@dataclass(frozen=True)
class Keyframe:
    """One key of a head track: at `time` (seconds or frames, per `unit`), the listed axes reach their degrees,
    travelling from the axis's previous key with `easing`."""

    time: float
    unit: str  # "s" or "f"
    values: tuple[tuple[str, float], ...]  # ((axis, degrees), ...)
    easing: str = "linear"
    text: str = ""  # the key as typed, for error messages

    def __post_init__(self):
        if self.unit not in ("s", "f"):
            raise ValueError(f"keyframe unit must be 's' or 'f', got {self.unit!r}")
        if self.easing not in EASINGS:
            raise ValueError(f"keyframe easing must be one of {EASINGS}, got {self.easing!r}")
        if not math.isfinite(self.time) or self.time < 0:
            raise ValueError(f"keyframe time must be a finite number >= 0, got {self.time}")
        for axis, value in self.values:
            if axis not in AXES or not math.isfinite(value):
                raise ValueError(f"keyframe values must be finite degrees of {AXES}, got {axis}={value}")

    def seconds(self, fps: float) -> float:
        return self.time / fps if self.unit == "f" else self.time


def _parse_key(text: str) -> Keyframe:
    head, colon, body = text.partition(":")
    if not colon:
        raise ValueError(f"head keyframes: key {text!r} has no ':'. Write {KEYFRAME_SYNTAX}")
    words = head.split()
    if not words or len(words) > 2:
        raise ValueError(f"head keyframes: {head.strip()!r} in key {text!r} should be a time and an optional "
                         f"easing, e.g. '2.5s ease'")
    match = _TIME.fullmatch(words[0])
    if match is None:
        raise ValueError(f"head keyframes: bad time {words[0]!r} in key {text!r}; use seconds (2.5 or 2.5s) or "
                         f"frames (50f)")
    unit = match["unit"] or "s"
    if unit == "f" and not match["value"].isdigit():
        raise ValueError(f"head keyframes: bad time {words[0]!r} in key {text!r}; frames are whole numbers (50f)")
    easing = words[1].lower() if len(words) == 2 else "linear"
    easing = "ease" if easing == "ease-in-out" else easing
    if easing not in EASINGS:
        raise ValueError(f"head keyframes: unknown easing {words[1]!r} in key {text!r}; use one of {EASINGS}")
    values: dict[str, float] = {}
    for token in body.split(","):
        token = token.strip()
        assign = _ASSIGN.fullmatch(token)
        if assign is None:
            raise ValueError(f"head keyframes: bad value {token!r} in key {text!r}; write AXIS=DEGREES, e.g. yaw=15")
        axis = assign["axis"].lower()
        if axis not in AXES:
            raise ValueError(f"head keyframes: unknown axis {assign['axis']!r} in key {text!r}; use one of {AXES}")
        if axis in values:
            raise ValueError(f"head keyframes: {axis} is given twice in key {text!r}")
        values[axis] = float(assign["value"])
    return Keyframe(float(match["value"]), unit, tuple(values.items()), easing, text)


def parse_keyframes(text: str) -> tuple[Keyframe, ...]:
    """Parse a head track. Syntax: keys separated by ';' or new lines, each `TIME [EASING]: AXIS=DEG, ...`.

    - TIME: seconds (`2.5` or `2.5s`) or whole frames (`50f`);
    - EASING (optional, default `linear`): how each listed axis travels from its previous key to this one:
      `linear`, `ease` (ease-in-out, smoothstep; `ease-in-out` is accepted too) or `hold` (stay at the previous
      value, then jump at this key's time);
    - AXIS: pitch, yaw or roll; DEGREES: an offset added to the generated angle.
    Each axis is its own track. An axis starts from 0 at time 0 (implicit key) unless it has a key at time 0,
    and holds its last value after its last key; axes never listed stay at 0. An empty text is no track.
    Raises ValueError naming the bad token."""
    keys = []
    for part in re.split(r"[;\n]", text):
        if part.strip():
            keys.append(_parse_key(part.strip()))
    return tuple(keys)


def keyframe_offsets(keys: tuple[Keyframe, ...], n_frames: int, fps: float = FPS) -> Tensor:
    """(T, 3) float64 offsets in degrees [pitch, yaw, roll] at each frame time i / fps."""
    t = torch.arange(n_frames, dtype=torch.float64) / fps
    out = torch.zeros(n_frames, len(AXES), dtype=torch.float64)
    for a, axis in enumerate(AXES):
        track = sorted(((k.seconds(fps), value, k) for k in keys for name, value in k.values if name == axis),
                       key=lambda item: item[0])
        if not track:
            continue
        for (t0, _, k0), (t1, _, k1) in zip(track, track[1:]):
            if t1 - t0 < 0.5 / fps:  # two keys on one frame: which value the frame shows would be arbitrary
                raise ValueError(f"head keyframes: keys {k0.text!r} and {k1.text!r} set {axis} on the same frame")
        if track[0][0] > 0:
            track.insert(0, (0.0, 0.0, None))
        curve = torch.full_like(t, track[-1][1])  # after the last key: hold it
        for (t0, v0, _), (t1, v1, key) in zip(track, track[1:]):
            inside = (t >= t0) & (t < t1)
            x = (t[inside] - t0) / (t1 - t0)
            if key.easing == "hold":
                curve[inside] = v0
            else:
                w = smoothstep(x) if key.easing == "ease" else x
                curve[inside] = v0 + (v1 - v0) * w
        out[:, a] = curve
    return out


def _triple(name: str, value) -> tuple[float, float, float]:
    values = tuple(float(v) for v in value)
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be three finite numbers (pitch, yaw, roll), got {value!r}")
    return values


@dataclass(frozen=True)
class HeadOptions:
    """Head edits; the defaults change nothing."""

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  # pitch, yaw, roll: 0 still, 1 as generated, > 1 livelier
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # pitch, yaw, roll degrees, eased in over ramp_s
    keyframes: str = ""  # a head track, see parse_keyframes
    distance: float = 1.0  # factor on scale: > 1 = closer (bigger face), < 1 = further away
    shift_x: float = 0.0  # framing, keypoint units (crop spans -1..1): + moves the face right
    shift_y: float = 0.0  # + moves the face down
    ramp_s: float = 0.5  # seconds over which offset, distance and framing ease in from frame 0

    def __post_init__(self):
        object.__setattr__(self, "gain", _triple("head gain", self.gain))
        object.__setattr__(self, "offset", _triple("head offset", self.offset))
        if any(g < 0 for g in self.gain):
            raise ValueError(f"head gain must be >= 0 per axis (0 = still head), got {self.gain}")
        if not isinstance(self.keyframes, str):
            raise ValueError(f"head keyframes must be text, got {type(self.keyframes).__name__}")
        parse_keyframes(self.keyframes)  # refuse a bad track now, before any work
        if not math.isfinite(self.distance) or self.distance <= 0:
            raise ValueError(f"head distance must be a finite number > 0 (1 = unchanged), got {self.distance}")
        for name in ("shift_x", "shift_y", "ramp_s"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"head {name} must be finite, got {getattr(self, name)}")
        if self.ramp_s < 0:
            raise ValueError(f"head ramp_s must be >= 0 seconds, got {self.ramp_s}")

    @property
    def is_neutral(self) -> bool:
        return (self.gain == (1.0, 1.0, 1.0) and self.offset == (0.0, 0.0, 0.0) and not self.keyframes.strip()
                and self.distance == 1.0 and self.shift_x == 0.0 and self.shift_y == 0.0)


def direct_head(motion: MotionSequence, options: HeadOptions = HeadOptions(), fps: float = FPS) -> MotionSequence:
    """The motion with its head edited by `options` (frame 0 kept); the input itself if the options are neutral."""
    T = len(motion)
    if options.is_neutral or T == 0:
        return motion
    w = ramp_in(T, fps, options.ramp_s)
    offsets = keyframe_offsets(parse_keyframes(options.keyframes), T, fps)  # (T, 3)
    offsets += torch.tensor(options.offset, dtype=torch.float64) * w[:, None]
    edits: dict[str, Tensor] = {}
    for i, axis in enumerate(AXES):
        angle = getattr(motion, axis)  # (T, 1)
        out = angle
        if options.gain[i] != 1.0:
            out = angle[:1] + options.gain[i] * (angle - angle[:1])
        if bool(offsets[:, i].ne(0).any()):
            out = out + offsets[:, i:i + 1].to(angle.device, angle.dtype)
        if out is not angle:
            edits[axis] = out
    if edits:
        angles = {axis: edits.get(axis, getattr(motion, axis)) for axis in AXES}
        edits["R"] = rotation_matrix(angles["pitch"], angles["yaw"], angles["roll"]).to(motion.R.dtype)
    if options.distance != 1.0:
        # geometric blend: exactly 1 at frame 0 and exactly `distance` once ramped in
        factor = torch.pow(torch.tensor(options.distance, dtype=torch.float64), w)
        edits["scale"] = motion.scale * factor[:, None].to(motion.scale.device, motion.scale.dtype)
    if options.shift_x != 0.0 or options.shift_y != 0.0:
        shift = torch.zeros(T, motion.t.shape[1], dtype=torch.float64)
        shift[:, 0], shift[:, 1] = options.shift_x * w, options.shift_y * w
        edits["t"] = motion.t + shift.to(motion.t.device, motion.t.dtype)
    return replace(motion, **edits) if edits else motion
