"""Save Motion and Load Motion: a MOTION to and from a file (`.safetensors`, or a LivePortrait/JoyVASA `.pkl`
motion template), in ComfyUI's output and input folders. Library: `joyvasa.direct.motion_file`."""
from __future__ import annotations

from ..joyvasa.direct.motion_file import FORMAT, SUFFIXES
from . import runtime
from .types import CATEGORY, MOTION, MeasuredRatios, MotionClip

FORMATS = {"safetensors": ".safetensors", "pkl": ".pkl"}
# MotionClip.info keys written into a saved file's metadata (when known)
INFO_KEYS = ("source", "seed", "cfg_scale", "smoothing", "pe_mode", "timing", "audio_delay", "note")


class JoyVASASaveMotion:
    DESCRIPTION = ("Saves a motion (per-frame expression, head pose, scale, translation) to ComfyUI's output folder: "
                   ".safetensors keeps it exactly, with its fps, frame count, seed and versions; .pkl writes a "
                   "LivePortrait/JoyVASA motion template other LivePortrait tools can drive with. Load it again with "
                   "JoyVASA Load Motion (put the file in the input folder) to re-render or reuse it as a head track.")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Path of the written motion file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion": (MOTION, {"tooltip": "From JoyVASA Sample Motion, Load Motion or a motion control."}),
            "filename_prefix": ("STRING", {"default": "motion/JoyVASA",
                                           "tooltip": "Output file name prefix inside the output folder (a number "
                                                      "and the extension are added)."}),
            "format": (list(FORMATS), {"default": "safetensors",
                                       "tooltip": "safetensors: this pack's exact format with metadata. pkl: a "
                                                  "LivePortrait/JoyVASA motion template (no metadata)."}),
        }, "optional": {
            "note": ("STRING", {"default": "", "tooltip": "Free text stored in the file's metadata (safetensors)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix):  # format: ComfyUI's own combo check
        return runtime.validate_filename_prefix(filename_prefix)

    def save(self, motion, filename_prefix, format, note=""):
        from ..joyvasa.direct.motion_file import write_motion_file
        from ..joyvasa.files import check_output_path

        if not isinstance(motion, MotionClip):
            raise ValueError(f"motion must be a JoyVASA MOTION, got {type(motion).__name__}")
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        suffix = FORMATS[format]
        path = check_output_path(runtime.output_path(filename_prefix, suffix), suffix)
        info = {**dict(motion.info), "audio_delay": motion.audio_delay, "note": note or None}
        metadata = {k: info[k] for k in INFO_KEYS if info.get(k) is not None}
        eye_ratio, lip_ratio = motion.measured_ratios()  # kept only while the motion is the measured one
        write_motion_file(path, motion.motion, fps=motion.fps, metadata=metadata, eye_ratio=eye_ratio,
                          lip_ratio=lip_ratio)
        return (str(path),)


class JoyVASALoadMotion:
    DESCRIPTION = ("Loads a motion file from ComfyUI's input folder: one saved by JoyVASA Save Motion (.safetensors) "
                   "or a LivePortrait/JoyVASA motion template (.pkl, read without running any code in it). The motion "
                   "has no audio: Render gives silence (connect your own audio to Create Video).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MOTION, "INT", "FLOAT")
    RETURN_NAMES = ("motion", "frames", "fps")
    OUTPUT_TOOLTIPS = ("The motion, for Render, a motion control or Sample Motion's head track.",
                       "Number of frames.", "Frames per second stored in the file.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion_file": (runtime.input_files(SUFFIXES), {
                "tooltip": "A .safetensors or .pkl motion file in the input folder (use the upload button, or "
                           "copy it there and press R to refresh)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, motion_file):
        try:
            stat = runtime.input_path(motion_file).stat()
        except (OSError, ValueError):
            return ""  # VALIDATE_INPUTS reports it
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    @classmethod
    def VALIDATE_INPUTS(cls, motion_file):
        try:
            path = runtime.input_path(motion_file)
        except (OSError, ValueError) as err:
            return str(err)
        if path.suffix.lower() not in SUFFIXES:
            return f"{motion_file}: a motion file ends in {' or '.join(SUFFIXES)}"
        return True

    def load(self, motion_file):
        from ..joyvasa.direct.motion_file import read_motion_file

        motion, info = read_motion_file(runtime.input_path(motion_file))
        keep = {k: v for k, v in info.items() if isinstance(v, str | int | float) and k not in ("fps", "frames")}
        keep["source"] = info.get("source") if info.get("format") == FORMAT and info.get("source") else motion_file
        eye, lip = info.get("eye_ratio", info.get("c_eyes")), info.get("lip_ratio", info.get("c_lip"))
        ratios = MeasuredRatios(motion, eye, lip) if eye is not None or lip is not None else None
        clip = MotionClip(motion, None, 0, 0.0, fps=info["fps"], info=keep, ratios=ratios)  # no audio
        return clip, len(motion), info["fps"]
