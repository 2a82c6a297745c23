"""Render (source + motion -> frames + synced audio) and the all-in-one Animate node."""
from __future__ import annotations

import torch

from . import runtime
from .motion import JoyVASAEncodeAudio, JoyVASASampleMotion
from .source import JoyVASAPrepareSource
from .types import CATEGORY, FACE_DETECTOR, MOTION, MOTION_MODEL, RENDERER, SOURCE, MotionClip

DRIVING_INPUTS = {
    "relative_motion": ("BOOLEAN", {"default": True, "tooltip": "Start from the source's own expression and "
                                                                "pose (recommended). Off: drive with the "
                                                                "generated motion as is."}),
    "driving_option": (["expression-friendly", "pose-friendly"], {
        "default": "expression-friendly", "tooltip": "expression-friendly re-anchors the first frame on the "
                                                     "source; pose-friendly keeps the generated head pose."}),
    "driving_multiplier": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.02,
                                     "tooltip": "Scales all motion: above 1 exaggerates, below 1 calms it."}),
    "animation_region": (["all", "exp", "pose", "lip"], {
        "default": "all", "tooltip": "What moves (humans): all, exp = expression only, pose = head only, "
                                     "lip = lips only."}),
    "stitching": ("BOOLEAN", {"default": True, "tooltip": "Keep the face aligned with the shoulders; needed for "
                                                          "paste-back."}),
    "normalize_lip": ("BOOLEAN", {"default": True, "tooltip": "Close an open source mouth first (humans, needs "
                                                              "the face detector's landmarks)."}),
}
OUTPUT_INPUTS = {
    "paste_back": ("BOOLEAN", {"default": True, "tooltip": "Paste the animated crop back into the full image "
                                                           "(needs a crop and stitching). Off: 512x512 crops."}),
    "batch_size": ("INT", {"default": 4, "min": 1, "max": 64,
                           "tooltip": "Frames rendered at once: larger is faster on a GPU but uses more memory."}),
}
FRAME_OUTPUTS = ("IMAGE", "AUDIO", "FLOAT")
FRAME_NAMES = ("frames", "audio", "fps")
FRAME_TOOLTIPS = ("The animated frames (connect to Create Video / Save Video).",
                  "The speech, aligned with the frames and trimmed to their length.",
                  "Frames per second (25).")


def render_clip(renderer, source, motion: MotionClip, paste_back: bool, batch_size: int, **driving):
    """The Render node's work: frames as one IMAGE tensor, the synced AUDIO, the fps."""
    from ..joyvasa.pipeline import DrivingOptions, animate

    options = DrivingOptions(**driving)
    total = len(motion)
    bar = runtime.Progress(total)
    images = None  # (T, H, W, 3) float32, allocated once the frame size is known, filled batch by batch
    done = 0
    with renderer.use() as model:
        for frames in animate(model, source, motion.motion, options, paste_back, batch_size, callback=bar):
            if images is None:
                images = torch.empty((total, *frames.shape[1:]), dtype=torch.float32,
                                     device=runtime.intermediate_device())
            images[done:done + len(frames)] = torch.from_numpy(frames).to(images.device).float().div_(255)
            done += len(frames)
            runtime.throw_if_interrupted()
    return images, synced_audio(motion, total), motion.fps


def check_same_species(renderer, source) -> None:
    if source.species != renderer.info["species"]:
        raise ValueError(f"the source was prepared with a {source.species} renderer but this renderer is "
                         f"{renderer.info['species']}; connect the same renderer to both nodes")


def synced_audio(motion: MotionClip, n_frames: int) -> dict:
    """The speech delayed by the motion's lead and cut or padded to the clip's duration."""
    rate = motion.sample_rate
    lead = round(motion.audio_delay * rate)
    length = round(n_frames / motion.fps * rate)
    wave = torch.nn.functional.pad(motion.waveform, (lead, 0))[:, :length]
    wave = torch.nn.functional.pad(wave, (0, length - wave.shape[1]))
    return {"waveform": wave[None].contiguous(), "sample_rate": rate}


class JoyVASARender:
    DESCRIPTION = ("Animates the prepared source with the generated motion: LivePortrait warping + generator per "
                   "frame, optional paste-back into the full image.")
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = FRAME_OUTPUTS
    RETURN_NAMES = FRAME_NAMES
    OUTPUT_TOOLTIPS = FRAME_TOOLTIPS

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "renderer": (RENDERER, {"tooltip": "From JoyVASA Load Renderer (the same one as Prepare Source)."}),
            "source": (SOURCE, {"tooltip": "From JoyVASA Prepare Source."}),
            "motion": (MOTION, {"tooltip": "From JoyVASA Sample Motion."}),
            **DRIVING_INPUTS, **OUTPUT_INPUTS,
        }}

    def render(self, renderer, source, motion, paste_back, batch_size, **driving):
        check_same_species(renderer, source)
        return render_clip(renderer, source, motion, paste_back, batch_size, **driving)


class JoyVASARenderToFile:
    DESCRIPTION = ("Renders like JoyVASA Render but streams the frames straight into an mp4 (H.264 + AAC) in "
                   "ComfyUI's output folder: memory stays flat however long the clip is.")
    CATEGORY = CATEGORY
    FUNCTION = "render"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Path of the written mp4.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "renderer": (RENDERER, {"tooltip": "From JoyVASA Load Renderer (the same one as Prepare Source)."}),
            "source": (SOURCE, {"tooltip": "From JoyVASA Prepare Source."}),
            "motion": (MOTION, {"tooltip": "From JoyVASA Sample Motion."}),
            **DRIVING_INPUTS, **OUTPUT_INPUTS,
            "filename_prefix": ("STRING", {"default": "video/JoyVASA",
                                           "tooltip": "Output file name prefix (a numbered .mp4 is added)."}),
            "crf": ("INT", {"default": 18, "min": 0, "max": 51,
                            "tooltip": "H.264 quality: lower = better and larger (18 is visually lossless)."}),
        }}

    def render(self, renderer, source, motion, paste_back, batch_size, filename_prefix, crf, **driving):
        from ..joyvasa.pipeline import DrivingOptions, animate
        from ..joyvasa.video import Mp4Writer

        check_same_species(renderer, source)
        path = runtime.output_path(filename_prefix, ".mp4")
        bar = runtime.Progress(len(motion))
        with renderer.use() as model, Mp4Writer(path, fps=motion.fps, audio=(motion.waveform, motion.sample_rate),
                                                audio_delay=motion.audio_delay, crf=crf) as writer:
            for frames in animate(model, source, motion.motion, DrivingOptions(**driving), paste_back, batch_size,
                                  callback=bar):
                writer.write(frames)
                runtime.throw_if_interrupted()
        folder, name = runtime.output_folder_and_name(path)
        return {"ui": {"images": [{"filename": name, "subfolder": folder, "type": "output"}], "animated": (True,)},
                "result": (str(path),)}


class JoyVASAAnimate:
    DESCRIPTION = ("All in one: portrait + speech -> talking-head frames and synced audio (Prepare Source, "
                   "Encode Audio, Sample Motion and Render with their usual settings).")
    CATEGORY = CATEGORY
    FUNCTION = "animate"
    RETURN_TYPES = FRAME_OUTPUTS
    RETURN_NAMES = FRAME_NAMES
    OUTPUT_TOOLTIPS = FRAME_TOOLTIPS

    @classmethod
    def INPUT_TYPES(cls):
        sample = JoyVASASampleMotion.INPUT_TYPES()["required"]
        prepare = JoyVASAPrepareSource.INPUT_TYPES()
        return {
            "required": {
                "renderer": (RENDERER, {"tooltip": "From JoyVASA Load Renderer."}),
                "motion_model": (MOTION_MODEL, {"tooltip": "From JoyVASA Load Motion Generator."}),
                "image": ("IMAGE", {"tooltip": "The portrait."}),
                "audio": ("AUDIO", {"tooltip": "The speech."}),
                "crop": prepare["required"]["crop"],
                "cfg_scale": sample["cfg_scale"],
                "seed": sample["seed"],
                "driving_multiplier": DRIVING_INPUTS["driving_multiplier"],
                **OUTPUT_INPUTS,
            },
            "optional": {"face_detector": (FACE_DETECTOR, {"tooltip": "From JoyVASA Load Face Detector."})},
        }

    def animate(self, renderer, motion_model, image, audio, crop, cfg_scale, seed, driving_multiplier, paste_back,
                batch_size, face_detector=None):
        if crop == "box":
            raise ValueError("crop = box needs the box inputs of JoyVASA Prepare Source; use that node, or auto/none")
        prepare = JoyVASAPrepareSource.INPUT_TYPES()["required"]
        source, _ = JoyVASAPrepareSource().prepare(
            renderer, image, crop, prepare["scale"][1]["default"], prepare["vx_ratio"][1]["default"],
            prepare["vy_ratio"][1]["default"], 0, prepare["max_dim"][1]["default"], face_detector=face_detector)
        (speech,) = JoyVASAEncodeAudio().encode(motion_model, audio)
        (motion,) = JoyVASASampleMotion().sample(motion_model, speech, cfg_scale, seed, smoothing=0.01,
                                                 pe_mode="legacy", timing="original")
        driving = {k: v[1]["default"] for k, v in DRIVING_INPUTS.items()}
        driving["driving_multiplier"] = driving_multiplier
        return render_clip(renderer, source, motion, paste_back, batch_size, **driving)
