"""Face controls on MOTION: Gaze, Blinks, Expression from Image (thin adapters over `joyvasa.direct`)."""
from __future__ import annotations

import dataclasses

from .source import detector_in_use, image_to_uint8
from .types import CATEGORY, FACE_DETECTOR, MOTION, RENDERER, SOURCE

_MOTION_IN = (MOTION, {"tooltip": "From JoyVASA Sample Motion (or another motion control)."})
_MOTION_OUT = ("The motion with this control applied, for Render or the next control.",)
_RENDERER_IN = (RENDERER, {"tooltip": "From JoyVASA Load Renderer: the same one the source was prepared with."})
_SOURCE_IN = (SOURCE, {"tooltip": "From JoyVASA Prepare Source: the portrait this motion will drive."})


def _edited(clip, motion):
    """The MOTION clip with new per-frame motion (audio, delay and fps kept)."""
    return dataclasses.replace(clip, motion=motion)


def _check_species(renderer, source) -> None:
    if source.species != renderer.info["species"]:
        raise ValueError(f"the source was prepared with a {source.species} renderer but this renderer is "
                         f"{renderer.info['species']}; connect the same renderer to both nodes")


class JoyVASAGaze:
    DESCRIPTION = ("Makes the eyes hold a target while the head moves: they counter-rotate against the head's "
                   "turns (pupil keypoints 11 and 15), looking into the camera or in a chosen direction.")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = _MOTION_OUT

    @classmethod
    def INPUT_TYPES(cls):
        from ..joyvasa.direct.gaze import EYE_LIMIT_DEG, GAZE_TARGETS

        return {"required": {
            "motion": _MOTION_IN,
            "target": (list(GAZE_TARGETS), {
                "default": "camera", "tooltip": "camera: keep the portrait's own gaze (into the lens) while the head "
                                                "turns. direction: look the angles below away from it. free: as "
                                                "generated (no change)."}),
            "horizontal_deg": ("FLOAT", {"default": 0.0, "min": -EYE_LIMIT_DEG, "max": EYE_LIMIT_DEG, "step": 1.0,
                                         "tooltip": "target = direction: degrees to the image's right (negative: "
                                                    "left)."}),
            "vertical_deg": ("FLOAT", {"default": 0.0, "min": -EYE_LIMIT_DEG, "max": EYE_LIMIT_DEG, "step": 1.0,
                                       "tooltip": "target = direction: degrees up (negative: down)."}),
            "amplitude": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                    "tooltip": "Strength of the eye movement: 1 = full compensation of the head's "
                                               "turns, 0 = no change."}),
        }}

    def apply(self, motion, target, horizontal_deg, vertical_deg, amplitude):
        from ..joyvasa.direct.gaze import GazeOptions, apply_gaze

        options = GazeOptions(target=target, horizontal_deg=horizontal_deg, vertical_deg=vertical_deg,
                              amplitude=amplitude)
        return (_edited(motion, apply_gaze(motion.motion, options, fps=motion.fps)),)


class JoyVASABlinks:
    DESCRIPTION = ("Inserts natural blinks (rate, duration, seeded timing) or removes the generated ones, through "
                   "LivePortrait's eye-retargeting network. Human portraits only.")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = _MOTION_OUT

    @classmethod
    def INPUT_TYPES(cls):
        from ..joyvasa.direct.blinks import BLINK_MODES, DEFAULT_DURATION, DEFAULT_JITTER, DEFAULT_RATE

        return {
            "required": {
                "renderer": _RENDERER_IN,
                "source": _SOURCE_IN,
                "motion": _MOTION_IN,
                "mode": (list(BLINK_MODES), {
                    "default": "add", "tooltip": "add: insert blinks. replace: remove the generated blinks, then "
                                                 "insert. suppress: only remove them. off: no change."}),
                "rate_per_minute": ("FLOAT", {"default": DEFAULT_RATE, "min": 0.0, "max": 60.0, "step": 1.0,
                                              "tooltip": "Average blinks per minute (people blink 15-20 times a "
                                                         "minute); 0 = none inserted."}),
                "duration": ("FLOAT", {"default": DEFAULT_DURATION, "min": 0.05, "max": 1.0, "step": 0.01,
                                       "tooltip": "Seconds per blink, closing and reopening (0.1-0.4 s is natural)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1, "control_after_generate": True,
                                 "tooltip": "Random seed of the blink timing: the same seed gives the same blinks."}),
                "jitter": ("FLOAT", {"default": DEFAULT_JITTER, "min": 0.0, "max": 1.0, "step": 0.05,
                                     "tooltip": "Irregularity of the intervals between blinks: 0 = metronome."}),
                "depth": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                    "tooltip": "How far the eyes close: 1 = fully."}),
            },
            "optional": {
                "face_detector": (FACE_DETECTOR, {
                    "tooltip": "Insightface detector, needed only when the source was cropped without one (box "
                               "crop): it finds the eyes on the crop to measure how open they are."}),
            },
        }

    def apply(self, renderer, source, motion, mode, rate_per_minute, duration, seed, jitter, depth,
              face_detector=None):
        from ..joyvasa.direct.blinks import ANIMAL_MESSAGE, BlinkOptions, apply_blinks

        options = BlinkOptions(mode=mode, rate_per_minute=rate_per_minute, duration=duration, seed=seed,
                               jitter=jitter, depth=depth)
        if options.neutral:
            return (motion,)
        if not options.inserts:  # suppress only: no network, no landmarks needed
            return (_edited(motion, apply_blinks(motion.motion, options, fps=motion.fps)),)
        _check_species(renderer, source)
        if source.species != "human":
            raise ValueError(ANIMAL_MESSAGE)
        if face_detector is not None and face_detector.kind != "insightface":
            raise ValueError("Blinks find the eyes with the insightface (human) face detector; an X-Pose (animal) "
                             "detector is connected. Load the face detector as insightface, or leave it out.")
        with detector_in_use(face_detector) as detector, renderer.use() as model:
            edited = apply_blinks(motion.motion, options, renderer=model, source=source, detector=detector,
                                  fps=motion.fps)
        return (_edited(motion, edited),)


class JoyVASAExpressionFromImage:
    DESCRIPTION = ("Adds an expression offset to the motion: the expression of a reference portrait (e.g. a "
                   "smile) relative to the source's, or the removal of the source's own expression, on chosen "
                   "face regions, ramped in and out over time.")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = _MOTION_OUT
    MODES = ("reference image", "neutralize source")

    @classmethod
    def INPUT_TYPES(cls):
        from ..joyvasa.direct.emotion import DEFAULT_RAMP, REGION_CHOICES

        return {
            "required": {
                "renderer": _RENDERER_IN,
                "source": _SOURCE_IN,
                "motion": _MOTION_IN,
                "mode": (list(cls.MODES), {
                    "default": "reference image",
                    "tooltip": "reference image: move towards the reference portrait's expression. neutralize "
                               "source: remove the source portrait's own expression (e.g. a fixed smile)."}),
                "intensity": ("FLOAT", {"default": 1.0, "min": -1.0, "max": 2.0, "step": 0.05,
                                        "tooltip": "1 = the full offset, 0 = no change, negative = the opposite "
                                                   "expression."}),
                "region": (list(REGION_CHOICES), {
                    "default": "all", "tooltip": "Which keypoints take the offset: brows (1, 2), eyes (11, 13, 15, "
                                                 "16, 18), mouth (3, 6, 7, 12, 14, 17, 19, 20) or all."}),
                "start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.1,
                                    "tooltip": "Seconds into the clip at which the offset starts to ramp in."}),
                "end": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.1,
                                  "tooltip": "Seconds at which the ramp out has finished; 0 = hold to the end."}),
                "ramp_in": ("FLOAT", {"default": DEFAULT_RAMP, "min": 0.0, "max": 60.0, "step": 0.05,
                                      "tooltip": "Seconds to reach full strength (the first frame is always the "
                                                 "source's own face)."}),
                "ramp_out": ("FLOAT", {"default": DEFAULT_RAMP, "min": 0.0, "max": 60.0, "step": 0.05,
                                       "tooltip": "Seconds to fade back out before the end time."}),
            },
            "optional": {
                "reference_image": ("IMAGE", {"tooltip": "mode = reference image: a portrait showing the wanted "
                                                         "expression (a face crop, or any picture when a face "
                                                         "detector is connected); the first of a batch."}),
                "face_detector": (FACE_DETECTOR, {"tooltip": "Crops the reference portrait around its face; without "
                                                             "it the reference image is used as a face crop."}),
            },
        }

    def apply(self, renderer, source, motion, mode, intensity, region, start, end, ramp_in, ramp_out,
              reference_image=None, face_detector=None):
        from ..joyvasa.direct.emotion import (
            ExpressionOffsetOptions,
            apply_expression_offset,
            expression_from_image,
            expression_offset,
        )

        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        options = ExpressionOffsetOptions(intensity=intensity, region=region, start=start,
                                          end=end if end > 0 else None, ramp_in=ramp_in, ramp_out=ramp_out)
        if options.neutral:
            return (motion,)
        _check_species(renderer, source)
        reference = None
        if mode == "reference image":
            if reference_image is None:
                raise ValueError("mode 'reference image' needs a reference_image: connect a portrait showing the "
                                 "expression (or switch the mode to 'neutralize source')")
            crop = self._reference_crop(renderer, image_to_uint8(reference_image[:1]), face_detector)
            with renderer.use() as model:
                reference = expression_from_image(model, crop)
        offset = expression_offset(source.keypoints.exp[0], reference, species=source.species)
        return (_edited(motion, apply_expression_offset(motion.motion, offset, options, fps=motion.fps)),)

    @staticmethod
    def _reference_crop(renderer, picture, face_detector):
        """The reference's 256 crop with the pack's source crop when a detector is given, else the picture."""
        if face_detector is None:
            return picture
        from ..joyvasa.pipeline import CropOptions, check_detector, crop_portrait, portrait_image

        check_detector("animal" if face_detector.kind == "xpose" else "human", renderer.info["species"])
        with detector_in_use(face_detector) as detector:
            return crop_portrait(portrait_image(picture), CropOptions(mode="auto"), detector).image_256
