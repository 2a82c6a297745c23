"""Motion Preview: one picture of a motion over time, to see what a control did before rendering any frame.

`motion_preview(motion, ...)` draws stacked panels sharing a time axis in seconds: head yaw, pitch and roll
(degrees), mouth and eye openness proxies read from the expression, and, when audio is given, its loudness per
frame (RMS) with detected silences shaded across every panel. A second motion (`before=`) is drawn faintly under
the first, so a before/after pair shows where a control changed the motion. Drawn with OpenCV and NumPy only;
the same inputs give the same pixels.

Openness proxies. The 203-point lip/eye ratios of LivePortrait's retargeting need landmarks a motion does not
have, so the preview reads the expression deltas (T, 21, 3) directly, on the keypoints LivePortrait's own
expression editors move to open the mouth and to close the eyes (spec `liveportrait.md` §2.7; LIP_KP and EYE_KP
in `joyvasa.renderer.keypoints`). Keypoint y grows downwards, like image rows.
- Mouth: the editors open the mouth ("aaa", lip close<->open) by moving keypoint 19 down (+y, with a little z)
  and keypoint 17 slightly up: 19 sits on the lower lip/jaw, 17 on the upper lip. Their vertical gap
  exp[19].y - exp[17].y therefore grows as the jaw drops and shrinks as the lips press together. It is the
  lip-gap analogue of the 203-point ratio ||p90 - p102|| / mouth width.
- Eyes: the editors blink by moving keypoints 11 and 15 (on the upper lids, with the pupils) down and 13 and 16
  (the lower lids of the same two eyes) up; a wink moves only 11 and 13, so 11/13 are one eye and 15/16 the
  other. The mean of the two vertical gaps, exp[13].y - exp[11].y and exp[16].y - exp[15].y, shrinks when the
  eyes close, like the 203-point eyelid-gap ratio. Vertical gaze also moves 11 and 15, so looking down reads as
  slightly more closed.
Both are plotted relative to frame 0 of `motion` (also for `before`, so a constant offset a control adds stays
visible). Frame 0 is the renderer's neutral anchor (the eyes are driven relative to it) and, with JoyVASA's
original timing, a silent, closed-mouth frame; the values are in LivePortrait's normalised keypoint units
(the 512-pixel crop spans about 2 units, so 0.01 is roughly 2.5 pixels).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "PANELS",
    "PreviewLayout",
    "audio_envelope",
    "eye_openness",
    "motion_preview",
    "mouth_openness",
    "preview_layout",
]

# Keypoints of the proxies (see the module docstring).
MOUTH_UPPER, MOUTH_LOWER = 17, 19
EYES_UPPER_LOWER = ((11, 13), (15, 16))

# Colours (RGB).
WHITE = (255, 255, 255)
TEXT = (30, 30, 30)
AXIS = (120, 120, 120)
GRID = (228, 228, 228)
ZERO = (150, 150, 150)
PLOT_BG = (250, 250, 250)
SILENCE = (214, 222, 240)


@dataclass(frozen=True)
class _Panel:
    title: str
    short: str  # the title when the long one does not fit
    unit: str
    colour: tuple[int, int, int]
    min_span: float  # the smallest y range shown (a flat curve is drawn at mid height, not blown up)


PANELS: dict[str, _Panel] = {
    "yaw": _Panel("head yaw", "yaw", "deg", (31, 119, 180), 2.0),
    "pitch": _Panel("head pitch", "pitch", "deg", (230, 120, 20), 2.0),
    "roll": _Panel("head roll", "roll", "deg", (44, 160, 44), 2.0),
    "mouth": _Panel("mouth openness (lip gap kp19-kp17 vs frame 0)", "mouth open", "", (214, 39, 40), 0.004),
    "eyes": _Panel("eye openness (lid gaps kp13-kp11, kp16-kp15 vs frame 0)", "eyes open", "", (148, 103, 189),
                   0.004),
    "audio": _Panel("audio loudness (RMS per frame, peak = 1)", "audio RMS", "", (23, 150, 160), 0.1),
}
DEFAULT_PANELS = ("yaw", "pitch", "roll", "mouth", "eyes", "audio")

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45
TITLE_SCALE = 0.5
MARGIN_LEFT, MARGIN_RIGHT = 78, 18
HEADER_H, TITLE_H, AXIS_H = 30, 22, 40


# ----------------------------------------------------------------------------------------------- the curves


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _mouth_gap(motion) -> np.ndarray:
    exp = _np(motion.exp)
    return exp[:, MOUTH_LOWER, 1] - exp[:, MOUTH_UPPER, 1]


def _eye_gap(motion) -> np.ndarray:
    exp = _np(motion.exp)
    return np.mean([exp[:, lower, 1] - exp[:, upper, 1] for upper, lower in EYES_UPPER_LOWER], axis=0)


def mouth_openness(motion, reference=None) -> np.ndarray:
    """(T,) float64: how much more open the mouth is than at frame 0 of `reference` (default: `motion`),
    as the vertical gap between lower-lip keypoint 19 and upper-lip keypoint 17 (positive = more open)."""
    return _mouth_gap(motion) - _mouth_gap(motion if reference is None else reference)[0]


def eye_openness(motion, reference=None) -> np.ndarray:
    """(T,) float64: how much more open the eyes are than at frame 0 of `reference` (default: `motion`), as the
    mean vertical lid gap of keypoints 11-13 and 15-16 (negative = closing, e.g. a blink)."""
    return _eye_gap(motion) - _eye_gap(motion if reference is None else reference)[0]


def audio_envelope(waveform, sample_rate: int, frames: int, fps: float = 25.0, audio_delay: float = 0.0) -> np.ndarray:
    """(frames,) float64 RMS of the (downmixed) waveform over each frame's time slot [k/fps, (k+1)/fps), the audio
    delayed by `audio_delay` seconds as it is played with the frames (audio before its start or past its end
    counts as silence). waveform: (N,), (C, N) or a ComfyUI batch (1, C, N)."""
    w = _np(waveform)
    if w.ndim == 3:
        w = w[0]
    if w.ndim == 2:
        w = w.mean(axis=0)
    if w.ndim != 1:
        raise ValueError(f"waveform must be (N,), (C, N) or (1, C, N), got shape {w.shape}")
    if not sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    # sample index of each frame boundary in the (undelayed) waveform
    edges = np.round((np.arange(frames + 1) / fps - audio_delay) * sample_rate).astype(np.int64)
    edges = np.clip(edges, 0, len(w))
    csum = np.concatenate([[0.0], np.cumsum(w * w)])
    counts = np.diff(edges)
    energy = csum[edges[1:]] - csum[edges[:-1]]
    # a frame slot's mean square over its whole length (the part outside the audio is silence)
    slot = max(sample_rate / fps, 1.0)
    return np.sqrt(np.maximum(energy, 0.0) / np.maximum(counts, slot))


# ----------------------------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class PreviewLayout:
    """Where things are in a preview image: `panels[name]` = (x0, y0, x1, y1) of the plot area (inclusive
    pixels); frame k is drawn at column `frame_x(k)`, and its time slot spans [slot_x(k), slot_x(k + 1))."""

    width: int
    height: int
    frames: int
    fps: float
    panels: dict[str, tuple[int, int, int, int]]

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    def time_x(self, seconds: float) -> float:
        x0, _, x1, _ = next(iter(self.panels.values()))
        return x0 + (x1 - x0) * seconds / self.duration

    def slot_x(self, k: float) -> float:
        return self.time_x(k / self.fps)

    def frame_x(self, k: float) -> float:
        """The column of frame k's point: the middle of its time slot."""
        return self.slot_x(k + 0.5)


def preview_layout(frames: int, fps: float = 25.0, width: int = 1024, panels: Sequence[str] = DEFAULT_PANELS,
                   panel_height: int = 104) -> PreviewLayout:
    if frames < 1:
        raise ValueError("the motion has no frames to preview")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if width < 256:
        raise ValueError(f"the preview must be at least 256 pixels wide, got {width}")
    if panel_height < 40:
        raise ValueError(f"panel_height must be at least 40 pixels, got {panel_height}")
    unknown = [p for p in panels if p not in PANELS]
    if unknown or not panels:
        raise ValueError(f"unknown panels {unknown}; choose from {list(PANELS)}")
    rects, y = {}, HEADER_H
    for name in panels:
        y += TITLE_H
        rects[name] = (MARGIN_LEFT, y, width - 1 - MARGIN_RIGHT, y + panel_height - 1)
        y += panel_height
    return PreviewLayout(width, y + AXIS_H, frames, float(fps), rects)


# ------------------------------------------------------------------------------------------------ drawing


def _nice_step(raw: float) -> float:
    exp = math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * 10**exp >= raw * (1 - 1e-9):
            return m * 10**exp
    return 10.0 ** (exp + 1)


def _decimals(step: float) -> int:
    d = max(0, -math.floor(math.log10(step) + 1e-9))
    return d + 1 if abs(step / 10 ** -d - 2.5) < 1e-6 or abs(step / 10 ** -d - 25) < 1e-6 else d


def _y_axis(curves: Sequence[np.ndarray], min_span: float, fixed: tuple[float, float] | None = None):
    """(lo, hi, ticks, decimals): a range holding every curve, snapped to nice ticks. Zero is included (and its
    line drawn) unless the curves stay far from it (e.g. a head turned 30 degrees that moves by 5): then the
    range follows the curves, so their motion is not squashed against one edge."""
    if fixed is not None:
        lo, hi = fixed
    else:
        values = np.concatenate([c[np.isfinite(c)] for c in curves] + [np.zeros(0)])
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if min(abs(lo), abs(hi)) <= max(hi - lo, min_span) or lo <= 0 <= hi:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi - lo < min_span:
            mid = (hi + lo) / 2
            lo, hi = mid - min_span / 2, mid + min_span / 2
    step = _nice_step((hi - lo) / 4)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    ticks = [lo + i * step for i in range(int(round((hi - lo) / step)) + 1)]
    return lo, hi, ticks, _decimals(step)


def _time_step(duration: float, plot_width: int) -> float:
    """Seconds between x ticks: at least ~70 pixels apart."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if plot_width * step / duration >= 70:
            return float(step)
    return 3600.0 * math.ceil(duration / 3600)


def _fmt_time(t: float, step: float) -> str:
    if step < 1:
        return f"{t:.1f}"
    if t >= 60 and step >= 5:
        return f"{int(t // 60)}:{int(round(t % 60)):02d}"
    return f"{t:.0f}"


def _text(img, s: str, org, colour=TEXT, scale=FONT_SCALE, align: str = "left", valign: str = "baseline"):
    (w, h), base = cv2.getTextSize(s, FONT, scale, 1)
    x, y = org
    if align == "right":
        x -= w
    elif align == "center":
        x -= w // 2
    if valign == "middle":
        y += h // 2
    x = min(max(x, 1), img.shape[1] - 1 - w)  # keep labels inside the picture
    cv2.putText(img, s, (int(round(x)), int(round(y))), FONT, scale, colour, 1, cv2.LINE_AA)
    return w


def _faint(colour, amount: float = 0.6):
    return tuple(int(round(c + (255 - c) * amount)) for c in colour)


def _polyline(img, xs: np.ndarray, ys: np.ndarray, colour, thickness: int):
    ok = np.isfinite(ys)
    if not ok.any():
        return
    # sub-pixel coordinates (4 fractional bits) so dense curves stay smooth
    shift = 4
    pts = np.stack([xs[ok], ys[ok]], axis=1) * (1 << shift)
    pts = np.round(pts).astype(np.int32).reshape(-1, 1, 2)
    if len(pts) == 1:
        cv2.circle(img, tuple(int(v) for v in pts[0, 0]), 2 << shift, colour, -1, cv2.LINE_AA, shift)
    else:
        cv2.polylines(img, [pts], False, colour, thickness, cv2.LINE_AA, shift)


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of True in a 1-D bool array."""
    m = np.concatenate([[False], mask.astype(bool), [False]])
    d = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(d[0::2].tolist(), d[1::2].tolist()))


def _curves(name: str, motion, reference) -> np.ndarray:
    if name == "mouth":
        return mouth_openness(motion, reference)
    if name == "eyes":
        return eye_openness(motion, reference)
    return _np(getattr(motion, name)).reshape(-1)


def motion_preview(motion, fps: float = 25.0, waveform=None, sample_rate: int | None = None,
                   audio_delay: float = 0.0, silences=None, width: int = 1024, before=None,
                   panels: Sequence[str] | None = None, panel_height: int = 104,
                   title: str | None = None) -> np.ndarray:
    """A plot of `motion` over time as an (H, W, 3) uint8 RGB image, W = `width`.

    motion: a `joyvasa.motion.MotionSequence` (or anything with per-frame yaw, pitch, roll (T, 1) and exp
        (T, 21, 3)), at `fps` frames per second.
    waveform, sample_rate, audio_delay: the audio played with the frames ((N,), (C, N) or (1, C, N)), delayed by
        `audio_delay` seconds (a MotionClip's fields); adds the loudness panel.
    silences: optional per-frame bools (length T), True where the audio is silent; shaded on every panel.
    before: an optional second motion at the same fps, drawn faintly under `motion` (what a control changed).
    panels: which panels, in order (default: yaw, pitch, roll, mouth, eyes, and audio when a waveform is given).
    """
    frames = len(motion)
    total = max(frames, len(before)) if before is not None else frames
    if panels is None:
        panels = DEFAULT_PANELS if waveform is not None else tuple(p for p in DEFAULT_PANELS if p != "audio")
    panels = tuple(panels)
    if "audio" in panels and waveform is None:
        raise ValueError("the audio panel needs a waveform")
    if waveform is not None and sample_rate is None:
        raise ValueError("a waveform needs its sample_rate")
    if silences is not None:
        silences = _np(silences).astype(bool).reshape(-1)
        if len(silences) != frames:
            raise ValueError(f"silences has {len(silences)} values for {frames} frames")
    layout = preview_layout(total, fps, width, panels, panel_height)
    img = np.full((layout.height, layout.width, 3), 255, np.uint8)

    envelope = None
    if waveform is not None:
        envelope = audio_envelope(waveform, int(sample_rate), frames, fps, audio_delay)
        peak = envelope.max()
        envelope = envelope / peak if peak > 0 else envelope

    xs_main = np.array([layout.frame_x(k) for k in range(frames)])
    xs_before = np.array([layout.frame_x(k) for k in range(len(before))]) if before is not None else None
    t_step = _time_step(layout.duration, next(iter(layout.panels.values()))[2] - MARGIN_LEFT)
    t_ticks = np.arange(0.0, layout.duration + 1e-9, t_step)

    for name in panels:
        spec = PANELS[name]
        x0, y0, x1, y1 = layout.panels[name]
        cv2.rectangle(img, (x0, y0), (x1, y1), PLOT_BG, -1)
        if silences is not None:
            for a, b in _spans(silences):
                sa, sb = int(round(layout.slot_x(a))), int(round(layout.slot_x(b))) - 1
                cv2.rectangle(img, (max(sa, x0), y0), (min(sb, x1), y1), SILENCE, -1)
        if name == "audio":
            main, other = envelope, None
            lo, hi, ticks, dec = _y_axis([main], spec.min_span, fixed=(0.0, 1.0))
        else:
            main = _curves(name, motion, None)
            other = _curves(name, before, motion) if before is not None else None
            lo, hi, ticks, dec = _y_axis([main] + ([other] if other is not None else []), spec.min_span)

        def to_y(v, lo=lo, hi=hi, y0=y0, y1=y1):
            return y1 - (np.asarray(v) - lo) / (hi - lo) * (y1 - y0)

        for t in t_ticks:
            x = int(round(layout.time_x(t)))
            cv2.line(img, (x, y0), (x, y1), GRID, 1)
        for v in ticks:
            y = int(round(float(to_y(v))))
            is_zero = abs(v) < 1e-12
            cv2.line(img, (x0, y), (x1, y), ZERO if is_zero else GRID, 1)
            cv2.line(img, (x0 - 4, y), (x0, y), AXIS, 1)
            label = f"{0.0 if is_zero else v:.{dec}f}"
            _text(img, label, (x0 - 7, y), align="right", valign="middle")
        cv2.rectangle(img, (x0, y0), (x1, y1), AXIS, 1)

        if name == "audio":
            ys = to_y(main)
            poly = np.concatenate([[[xs_main[0], y1]], np.stack([xs_main, ys], 1), [[xs_main[-1], y1]]])
            cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], _faint(spec.colour, 0.7), cv2.LINE_AA, 4)
        if other is not None:
            _polyline(img, xs_before, to_y(other), _faint(spec.colour, 0.55), 2)
        _polyline(img, xs_main, to_y(main), spec.colour, 2)

        # title above the panel, with the unit and the shown range
        unit = f" ({spec.unit})" if spec.unit else ""
        label = spec.title + unit
        if cv2.getTextSize(label, FONT, TITLE_SCALE, 1)[0][0] > (x1 - x0) - 90:
            label = spec.short + unit
        w = _text(img, label, (x0, y0 - 6), spec.colour, TITLE_SCALE)
        if name == "audio" and silences is not None:
            cv2.rectangle(img, (x0 + w + 14, y0 - 16), (x0 + w + 32, y0 - 5), SILENCE, -1)
            _text(img, "silence", (x0 + w + 38, y0 - 6))

    # time axis under the last panel
    x0, _, x1, y1 = layout.panels[panels[-1]]
    for t in t_ticks:
        x = int(round(layout.time_x(t)))
        cv2.line(img, (x, y1), (x, y1 + 4), AXIS, 1)
        _text(img, _fmt_time(t, t_step), (x, y1 + 18), align="center")
    _text(img, "time (s)", ((x0 + x1) // 2, y1 + 35), align="center")

    # header: what is shown, and the before/after legend on the right (the header shortens to fit beside it)
    legend = 0
    if before is not None:
        right = layout.width - MARGIN_RIGHT
        for label, colour in (("before", _faint(TEXT, 0.55)), ("after", TEXT)):
            w = _text(img, label, (right, 20), align="right")
            cv2.line(img, (right - w - 32, 15), (right - w - 8, 15), colour, 2, cv2.LINE_AA)
            right -= w + 44
        legend = layout.width - right
    room = layout.width - legend - 8 - 10
    heads = [title] if title else [f"Motion preview: {frames} frames, {frames / fps:.2f} s at {fps:g} fps",
                                   f"{frames} frames, {frames / fps:.1f} s", ""]
    head = next((h for h in heads if cv2.getTextSize(h, FONT, TITLE_SCALE, 1)[0][0] <= room), heads[-1])
    _text(img, head, (8, 20), TEXT, TITLE_SCALE)
    return img
