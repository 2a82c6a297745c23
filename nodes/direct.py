"""Direct the performance: Head, Mouth and Fade, MOTION -> MOTION nodes between Sample Motion and Render."""
from __future__ import annotations

from dataclasses import replace

from ..joyvasa.direct.head import HeadOptions
from ..joyvasa.direct.mouth import MouthOptions
from ..joyvasa.direct.silence import SilenceOptions
from .types import CATEGORY, MOTION, RENDERER, SOURCE, MotionClip

MOTION_IN = (MOTION, {"tooltip": "Motion from Sample Motion or another JoyVASA motion node."})
MOTION_TOOLTIPS = ("The edited motion (audio unchanged), for Render or the next motion node.",)


def _gain(what: str) -> tuple:
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                      "tooltip": f"{what} movement: 0 holds the first frame's angle, 1 is as generated, above 1 "
                                 f"exaggerates it."})


def _degrees(what: str) -> tuple:
    return ("FLOAT", {"default": 0.0, "min": -45.0, "max": 45.0, "step": 0.5,
                      "tooltip": f"Degrees added to the {what}, eased in from the first frame (the source's own "
                                 f"pose): negative and positive turn opposite ways."})


def _check(clip) -> MotionClip:
    if not isinstance(clip, MotionClip):
        raise ValueError(f"expected a MOTION from Sample Motion, got {type(clip).__name__}")
    return clip


def _clip(clip: MotionClip, motion) -> tuple:
    """The clip with its motion replaced: waveform, sample rate, audio delay and fps travel on unchanged."""
    return (replace(clip, motion=motion),)


class JoyVASAHeadMotion:
    DESCRIPTION = ("Directs the head: per-axis gain and offset for pitch, yaw and roll, keyframed offsets typed "
                   "as text, head distance (zoom) and framing. The first frame stays the source's own pose.")
    CATEGORY = CATEGORY
    FUNCTION = "direct"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = MOTION_TOOLTIPS

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion": MOTION_IN,
            "pitch_gain": _gain("Nodding (pitch)"),
            "yaw_gain": _gain("Turning (yaw)"),
            "roll_gain": _gain("Tilting (roll)"),
            "pitch_offset": _degrees("pitch (nod)"),
            "yaw_offset": _degrees("yaw (turn)"),
            "roll_offset": _degrees("roll (tilt)"),
            "keyframes": ("STRING", {"default": "", "multiline": True,
                                     "tooltip": "Offsets over time, e.g. '0:yaw=0; 2.5s ease: yaw=15, pitch=-5; "
                                                "4s: yaw=0' (seconds or 50f frames; linear, ease or hold); empty "
                                                "= none."}),
            "distance": ("FLOAT", {"default": HeadOptions.distance, "min": 0.5, "max": 2.0, "step": 0.01,
                                   "tooltip": "Head size: above 1 brings the face closer (bigger), below 1 moves it "
                                              "away."}),
            "shift_x": ("FLOAT", {"default": HeadOptions.shift_x, "min": -0.5, "max": 0.5, "step": 0.01,
                                  "tooltip": "Framing: positive moves the face right, negative left (the crop is 2 "
                                             "units wide)."}),
            "shift_y": ("FLOAT", {"default": HeadOptions.shift_y, "min": -0.5, "max": 0.5, "step": 0.01,
                                  "tooltip": "Framing: positive moves the face down, negative up."}),
            "ramp_s": ("FLOAT", {"default": HeadOptions.ramp_s, "min": 0.0, "max": 5.0, "step": 0.05,
                                 "tooltip": "Seconds over which offsets, distance and framing ease in from the first "
                                            "frame: 0 jumps at once, longer is gentler."}),
        }}

    def direct(self, motion, pitch_gain, yaw_gain, roll_gain, pitch_offset, yaw_offset, roll_offset, keyframes,
               distance, shift_x, shift_y, ramp_s):
        from ..joyvasa.direct.head import HeadOptions, direct_head

        options = HeadOptions(gain=(pitch_gain, yaw_gain, roll_gain), offset=(pitch_offset, yaw_offset, roll_offset),
                              keyframes=keyframes, distance=distance, shift_x=shift_x, shift_y=shift_y, ramp_s=ramp_s)
        _check(motion)
        return _clip(motion, direct_head(motion.motion, options, fps=motion.fps))


class JoyVASAMouth:
    DESCRIPTION = ("Directs the mouth: lip gain, an audio/video offset in frames, and lips eased closed in the "
                   "pauses an energy detector finds in the clip's speech.")
    CATEGORY = CATEGORY
    FUNCTION = "direct"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = MOTION_TOOLTIPS

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion": MOTION_IN,
            "lip_gain": ("FLOAT", {"default": MouthOptions.lip_gain, "min": 0.0, "max": 3.0, "step": 0.05,
                                   "tooltip": "Mouth opening: below 1 smaller (0 = closed), above 1 wider."}),
            "offset_frames": ("INT", {"default": MouthOptions.offset_frames, "min": -25, "max": 25,
                                      "tooltip": "Lip timing in frames (25 per second): positive makes the lips "
                                                 "later, negative earlier."}),
            "close_silences": ("BOOLEAN", {"default": MouthOptions.close_silences,
                                           "tooltip": "On: the lips ease closed in pauses of the speech; off: "
                                                      "lips as generated."}),
            "threshold_db": ("FLOAT", {"default": SilenceOptions.threshold_db, "min": -60.0, "max": -6.0, "step": 1.0,
                                       "tooltip": "Pause level below the speech's loud parts: closer to 0 finds "
                                                  "more pauses, lower only near-silence."}),
            "min_pause_s": ("FLOAT", {"default": SilenceOptions.min_pause_s, "min": 0.04, "max": 2.0, "step": 0.01,
                                      "tooltip": "Shortest pause that closes the lips: shorter catches gaps between "
                                                 "words, longer only real pauses."}),
            "attack_s": ("FLOAT", {"default": MouthOptions.attack_s, "min": 0.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "Seconds to close once a pause starts: shorter snaps shut, longer "
                                              "eases."}),
            "release_s": ("FLOAT", {"default": MouthOptions.release_s, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Seconds to reopen before speech resumes: shorter opens late and "
                                               "fast, longer earlier and softer."}),
            "normalize_lip": ("BOOLEAN", {"default": True,
                                          "tooltip": "Set as in Render (used with renderer and source): on, Render "
                                                     "closes an open source mouth itself; off, it is closed here."}),
        }, "optional": {
            "renderer": (RENDERER, {"tooltip": "Optional, with source: the closed mouth comes from the lip MLP; "
                                               "without, from the first frame's lips."}),
            "source": (SOURCE, {"tooltip": "Optional, with renderer: the prepared human portrait (needs face "
                                           "landmarks)."}),
        }}

    def direct(self, motion, lip_gain, offset_frames, close_silences, threshold_db, min_pause_s, attack_s, release_s,
               normalize_lip, renderer=None, source=None):
        from ..joyvasa.direct.mouth import MouthOptions, closed_lip_expression, direct_mouth
        from ..joyvasa.direct.silence import SilenceOptions

        options = MouthOptions(lip_gain=lip_gain, offset_frames=offset_frames, close_silences=close_silences,
                               silence=SilenceOptions(threshold_db=threshold_db, min_pause_s=min_pause_s),
                               attack_s=attack_s, release_s=release_s)
        if (renderer is None) != (source is None):
            raise ValueError("connect both renderer and source (lip-MLP closed mouth) or neither (first frame's lips)")
        _check(motion)
        if options.close_silences and (motion.waveform is None or motion.waveform.numel() == 0):
            raise ValueError("this MOTION carries no audio (e.g. a loaded motion file), so no pauses can be found: "
                             "turn close_silences off or use the motion from Sample Motion")
        closed = None
        if renderer is not None and options.close_silences and len(motion) > 0:
            from .render import check_same_species

            check_same_species(renderer, source)
            if source.species != "human":
                raise ValueError("the lip-MLP closed mouth needs a human source; for animals disconnect renderer "
                                 "and source (the first frame's lips are used)")
            with renderer.use() as model:
                closed = closed_lip_expression(model, source.keypoints, source.landmarks_203,
                                               motion.motion.exp[0], normalize_lip)
        edited = direct_mouth(motion.motion, options, motion.waveform, motion.sample_rate, fps=motion.fps,
                              audio_delay=motion.audio_delay, closed_lip_exp=closed)
        return _clip(motion, edited)


class JoyVASAFade:
    DESCRIPTION = ("Fades the performance in from the source's still face at the start and back to it at the "
                   "end (smoothstep over every motion field).")
    CATEGORY = CATEGORY
    FUNCTION = "direct"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = MOTION_TOOLTIPS

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion": MOTION_IN,
            "fade_in_s": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 10.0, "step": 0.05,
                                    "tooltip": "Seconds to ease in from the still face: 0 starts at once, longer "
                                               "starts more gently."}),
            "fade_out_s": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 10.0, "step": 0.05,
                                     "tooltip": "Seconds to ease back to the still face at the end: 0 stops "
                                                "abruptly, longer settles more gently."}),
        }}

    def direct(self, motion, fade_in_s, fade_out_s):
        from ..joyvasa.direct.fade import FadeOptions, fade

        options = FadeOptions(fade_in_s=fade_in_s, fade_out_s=fade_out_s)
        _check(motion)
        return _clip(motion, fade(motion.motion, options, fps=motion.fps))
