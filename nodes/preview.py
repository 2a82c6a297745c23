"""Motion Preview: MOTION (+ an optional second MOTION to compare) -> an IMAGE plot over time."""
from __future__ import annotations

import torch

from ..joyvasa.direct.silence import SilenceOptions
from . import runtime
from .types import CATEGORY, MOTION, MotionClip


class JoyVASAMotionPreview:
    DESCRIPTION = ("Plots a motion over time as an image: head yaw, pitch and roll (degrees), mouth and eye "
                   "openness (read from the expression keypoints, relative to the first frame) and the loudness "
                   "of its audio, with the pauses in the speech shaded. Connect a second motion to 'before' to "
                   "see, drawn faintly, what a control changed, without rendering any frame.")
    CATEGORY = CATEGORY
    FUNCTION = "preview"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("plot",)
    OUTPUT_TOOLTIPS = ("The plot as a one-picture IMAGE (connect Preview Image or Save Image to see it).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": (MOTION, {"tooltip": "The motion to plot, e.g. from Sample Motion or a directing node."}),
                "width": ("INT", {"default": 1024, "min": 256, "max": 4096, "step": 64,
                                  "tooltip": "Width of the plot in pixels; the height follows from the panels."}),
                "show_silences": ("BOOLEAN", {"default": True,
                                              "tooltip": "Shade the pauses an energy detector finds in the motion's "
                                                         "audio (the detector of Direct Mouth's close_silences)."}),
                "threshold_db": ("FLOAT", {"default": SilenceOptions.threshold_db, "min": -60.0, "max": -6.0,
                                           "step": 1.0,
                                           "tooltip": "Pause level below the speech's loud parts: closer to 0 finds "
                                                      "more pauses, lower only near-silence. Use the Mouth "
                                                      "control's value to see the pauses it closes."}),
                "min_pause_s": ("FLOAT", {"default": SilenceOptions.min_pause_s, "min": 0.04, "max": 2.0, "step": 0.01,
                                          "tooltip": "Shortest pause shown: shorter catches gaps between words, "
                                                     "longer only real pauses."}),
            },
            "optional": {
                "before": (MOTION, {"tooltip": "Optional motion to compare with (e.g. the one before a control), "
                                               "drawn faintly under the main curves on the same scale."}),
            },
        }

    def preview(self, motion, width, show_silences=True, threshold_db=-30.0, min_pause_s=0.25, before=None):
        from ..joyvasa.direct.preview import motion_preview
        from ..joyvasa.direct.silence import SilenceOptions, find_silences

        for name, clip in (("motion", motion), ("before", before)):
            if clip is not None and not isinstance(clip, MotionClip):
                raise ValueError(f"'{name}' must be a MOTION (e.g. from JoyVASA Sample Motion), "
                                 f"got {type(clip).__name__}")
        if len(motion) == 0:
            raise ValueError("the motion has no frames to preview")
        if before is not None and before.fps != motion.fps:
            raise ValueError(f"'before' runs at {before.fps:g} fps and 'motion' at {motion.fps:g} fps; "
                             "compare motions of the same frame rate")
        has_audio = motion.waveform is not None and motion.waveform.numel() > 0
        silences = None
        if has_audio and show_silences:
            options = SilenceOptions(threshold_db=threshold_db, min_pause_s=min_pause_s)
            silences = find_silences(motion.waveform, motion.sample_rate, len(motion), motion.fps,
                                     motion.audio_delay, options).numpy()
        image = motion_preview(
            motion.motion, fps=motion.fps, width=int(width), before=None if before is None else before.motion,
            waveform=motion.waveform if has_audio else None, sample_rate=motion.sample_rate if has_audio else None,
            audio_delay=motion.audio_delay, silences=silences)
        plot = torch.from_numpy(image).float().div_(255.0)[None]
        return (plot.to(runtime.intermediate_device()),)
