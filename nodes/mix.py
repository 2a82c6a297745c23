"""Mix Motion: one MOTION from several (head from one, lips from another, the rest of the face from a third).
Library: `joyvasa.direct.mix`."""
from __future__ import annotations

from dataclasses import replace

from ..joyvasa.direct.mix import FITS, LENGTHS
from .types import CATEGORY, MOTION, MotionClip


def _weight(part: str) -> tuple:
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                      "tooltip": f"How much of the {part} motion: 0 keeps the base's, 1 takes the other motion's "
                                 f"movement, in between blends them."})


def _clip(name: str, clip) -> MotionClip | None:
    if clip is not None and not isinstance(clip, MotionClip):
        raise ValueError(f"{name} must be a JoyVASA MOTION, got {type(clip).__name__}")
    return clip


class JoyVASAMixMotion:
    DESCRIPTION = ("Builds one motion from several: the head (pose, position, size) from one motion, the lips from "
                   "another, the rest of the face (eyes, brows, expression) from a third, each with a weight. "
                   "The base motion gives the first frame, the length, the audio and anything not mixed in.")
    CATEGORY = CATEGORY
    FUNCTION = "mix"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The mixed motion with the base's audio, for Render or the next motion node.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "base": (MOTION, {"tooltip": "The motion to start from (e.g. Sample Motion's speech motion): its audio, "
                                         "first frame and, by default, its length are kept."}),
            "head_weight": _weight("head"),
            "lips_weight": _weight("lips"),
            "face_weight": _weight("face (eyes, brows, expression)"),
            "length": (list(LENGTHS), {"default": "base",
                                       "tooltip": "Frames of the result: base = the base's (its audio's length); "
                                                  "shortest / longest of the connected motions."}),
            "fit": (list(FITS), {"default": "loop",
                                 "tooltip": "A motion shorter than the result: loop = start again, hold = keep its "
                                            "last frame, pingpong = play it back and forth. Longer ones are "
                                            "trimmed."}),
        }, "optional": {
            "head": (MOTION, {"tooltip": "Head pose, position and size from this motion (e.g. JoyVASA Motion from "
                                         "Video); relative to its first frame."}),
            "lips": (MOTION, {"tooltip": "Lips from this motion (e.g. another Sample Motion)."}),
            "face": (MOTION, {"tooltip": "Eyes, brows and the rest of the expression from this motion, relative to "
                                         "its first frame."}),
        }}

    def mix(self, base, head_weight, lips_weight, face_weight, length, fit, head=None, lips=None, face=None):
        from ..joyvasa.direct.mix import check_weight, mix_motion

        base = _clip("base", base)
        if base is None:
            raise ValueError("connect a base MOTION (e.g. from Sample Motion)")
        others = {"head": _clip("head", head), "lips": _clip("lips", lips), "face": _clip("face", face)}
        for part, weight in (("head", head_weight), ("lips", lips_weight), ("face", face_weight)):
            check_weight(f"{part}_weight", weight)
        for part, clip in others.items():
            if clip is not None and clip.fps != base.fps:
                raise ValueError(f"the {part} motion runs at {clip.fps:g} fps and the base at {base.fps:g} fps; mix "
                                 f"motions of the same frame rate (JoyVASA's motions are 25 fps)")
        motions = {part: None if clip is None else clip.motion for part, clip in others.items()}
        mixed = mix_motion(base.motion, **motions, head_weight=head_weight, lips_weight=lips_weight,
                           face_weight=face_weight, length=length, fit=fit)
        sources = {part: clip.info.get("source") for part, clip in others.items() if clip is not None}
        mixed_from = ", ".join(f"{part} from {src or 'a motion'}" for part, src in sources.items())
        info = {**dict(base.info), "mix": mixed_from}
        return (replace(base, motion=mixed, info=info if sources else base.info),)
