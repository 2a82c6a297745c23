"""Render (source + motion -> frames + synced audio) and the all-in-one Animate node."""
from __future__ import annotations

import torch

from ..joyvasa.pipeline.driving import ANIMATION_REGIONS, DRIVING_OPTIONS, DrivingOptions
from . import runtime
from .motion import JoyVASASampleMotion, audio_input
from .source import JoyVASAPrepareSource, image_to_uint8
from .types import CATEGORY, FACE_DETECTOR, MOTION, MOTION_MODEL, RENDERER, SOURCE, MotionClip
from .video import VIDEO, file_video

DRIVING_INPUTS = {
    "relative_motion": ("BOOLEAN", {"default": True, "tooltip": "Start from the source's own expression and "
                                                                "pose (recommended). Off: drive with the "
                                                                "generated motion as is."}),
    "driving_option": (list(DRIVING_OPTIONS), {
        "default": DrivingOptions.driving_option, "tooltip": "expression-friendly re-anchors the first frame on the "
                                                     "source; pose-friendly keeps the generated head pose."}),
    "driving_multiplier": ("FLOAT", {"default": DrivingOptions.driving_multiplier, "min": 0.0, "max": 2.0, "step": 0.02,
                                     "tooltip": "Scales all motion: above 1 exaggerates, below 1 calms it."}),
    "animation_region": (list(ANIMATION_REGIONS), {
        "default": DrivingOptions.animation_region,
        "tooltip": "What moves (humans): all, exp = expression only, pose = head only, lip = lips only."}),
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
SILENT_AUDIO_RATE = 16000  # rate of the silent AUDIO Render returns for a motion without audio (a loaded file)
FRAME_OUTPUTS = ("IMAGE", "AUDIO", "FLOAT")
FRAME_NAMES = ("frames", "audio", "fps")
FRAME_TOOLTIPS = ("The animated frames (connect to Create Video / Save Video).",
                  "The speech, aligned with the frames and trimmed to their length.",
                  "Frames per second (25).")


def collect_frames(frames, total: int) -> torch.Tensor:
    """Rendered uint8 batches -> one IMAGE (total, H, W, 3) float32 on the intermediate device, filled in place
    (no list of frames, no concatenation); checks for Cancel between batches."""
    images = None
    done = 0
    for batch in frames:
        if images is None:
            images = torch.empty((total, *batch.shape[1:]), dtype=torch.float32, device=runtime.intermediate_device())
        images[done:done + len(batch)] = torch.from_numpy(batch).to(images.device).float().div_(255)
        done += len(batch)
        runtime.throw_if_interrupted()
    return images


def portrait_options(paste_back: bool, batch_size: int, crop=None, motion=None, **driving):
    """The library's checked options from node inputs (ValueError names the bad one)."""
    from ..joyvasa.pipeline import CropOptions, DrivingOptions, MotionOptions, PortraitOptions

    return PortraitOptions(crop=crop or CropOptions(), motion=motion or MotionOptions(),
                           driving=DrivingOptions(**driving), paste_back=paste_back, batch_size=batch_size)


def render_clip(renderer, source, motion: MotionClip, paste_back: bool, batch_size: int, **driving):
    """The Render node's work: frames as one IMAGE tensor, the synced AUDIO, the fps."""
    from ..joyvasa.pipeline import animate

    options = portrait_options(paste_back, batch_size, **driving)
    check_same_species(renderer, source)
    with renderer.use() as model:
        frames = animate(model, source, motion.motion, options.driving, options.paste_back, options.batch_size,
                         callback=runtime.Progress(len(motion)))
        images = collect_frames(frames, len(motion))
    return images, synced_audio(motion.waveform, motion.sample_rate, len(motion), motion.fps, motion.audio_delay), \
        motion.fps


def check_same_species(renderer, source) -> None:
    if source.species != renderer.info["species"]:
        raise ValueError(f"the source was prepared with a {source.species} renderer but this renderer is "
                         f"{renderer.info['species']}; connect the same renderer to both nodes")


def synced_audio(waveform: torch.Tensor | None, sample_rate: int, n_frames: int, fps: float, delay: float) -> dict:
    """ComfyUI AUDIO of the clip: the speech delayed by the frames' lead and cut or padded to their duration;
    for a motion without audio (waveform None), silence of that duration (mono, SILENT_AUDIO_RATE)."""
    from ..joyvasa.video import fit_audio

    if waveform is None:
        waveform, sample_rate = torch.zeros(1, 1), SILENT_AUDIO_RATE  # one silent sample, padded to length
    wave = fit_audio(waveform, sample_rate, n_frames, fps, delay)
    return {"waveform": wave[None].contiguous().to(runtime.intermediate_device()), "sample_rate": sample_rate}


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
            "motion": (MOTION, {"tooltip": "From JoyVASA Sample Motion, Load Motion or a control node."}),
            **DRIVING_INPUTS, **OUTPUT_INPUTS,
        }}

    def render(self, renderer, source, motion, paste_back, batch_size, **driving):
        return render_clip(renderer, source, motion, paste_back, batch_size, **driving)


class JoyVASARenderToFile:
    DESCRIPTION = ("Renders like JoyVASA Render but streams the frames straight into an mp4 (H.264 + AAC) in "
                   "ComfyUI's output folder: memory stays flat however long the clip is.")
    CATEGORY = CATEGORY
    FUNCTION = "render"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", VIDEO)  # VIDEO after STRING: saved workflows keep their links
    RETURN_NAMES = ("path", "video")
    OUTPUT_TOOLTIPS = ("Path of the written mp4.", "The written mp4 as a VIDEO (for Save Video, Get Video Components "
                                                   "or another video node); empty on ComfyUI without video support.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "renderer": (RENDERER, {"tooltip": "From JoyVASA Load Renderer (the same one as Prepare Source)."}),
            "source": (SOURCE, {"tooltip": "From JoyVASA Prepare Source."}),
            "motion": (MOTION, {"tooltip": "From JoyVASA Sample Motion, Load Motion or a control node."}),
            **DRIVING_INPUTS, **OUTPUT_INPUTS,
            "filename_prefix": ("STRING", {"default": "video/JoyVASA",
                                           "tooltip": "Output file name prefix (a numbered .mp4 is added)."}),
            "crf": ("INT", {"default": 18, "min": 0, "max": 51,
                            "tooltip": "H.264 quality: lower = better and larger (18 is visually lossless)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix):
        return runtime.validate_filename_prefix(filename_prefix)

    def render(self, renderer, source, motion, paste_back, batch_size, filename_prefix, crf, **driving):
        from ..joyvasa.files import check_output_path
        from ..joyvasa.pipeline import animate
        from ..joyvasa.video import Mp4Writer

        options = portrait_options(paste_back, batch_size, **driving)
        check_same_species(renderer, source)
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be from 0 to 51, got {crf}")
        path = check_output_path(runtime.output_path(filename_prefix, ".mp4"), ".mp4")
        sound = None if motion.waveform is None else (motion.waveform, motion.sample_rate)  # None: no sound track
        with renderer.use() as model, Mp4Writer(path, fps=motion.fps, audio=sound,
                                                audio_delay=motion.audio_delay, crf=crf) as writer:
            for frames in animate(model, source, motion.motion, options.driving, options.paste_back,
                                  options.batch_size, callback=runtime.Progress(len(motion))):
                writer.write(frames)
                runtime.throw_if_interrupted()
        folder, name = runtime.output_folder_and_name(path)
        return {"ui": {"images": [{"filename": name, "subfolder": folder, "type": "output"}], "animated": (True,)},
                "result": (str(path), file_video(path))}


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
        from ..joyvasa.face.xpose import AnimalFaceDetector
        from ..joyvasa.pipeline import CropOptions, MotionOptions, animate_portrait

        if crop == "box":
            raise ValueError("crop = box needs the box inputs of JoyVASA Prepare Source; use that node, or auto/none")
        options = portrait_options(paste_back, batch_size, crop=CropOptions(mode=crop),
                                   motion=MotionOptions(cfg_scale=cfg_scale, seed=seed),
                                   driving_multiplier=driving_multiplier)
        picture = image_to_uint8(image)
        waveform, rate = audio_input(audio)
        xpose = [face_detector.detector] if face_detector is not None and face_detector.kind == "xpose" else []
        with runtime.using(renderer, motion_model, *xpose) as models:
            detector = AnimalFaceDetector(models[2], face_detector.det_thresh) if xpose else (
                face_detector.detector if face_detector is not None else None)
            clip = animate_portrait(models[0], models[1], picture, waveform, rate, options, detector=detector,
                                    motion_callback=runtime.Progress().sampling_step,
                                    frame_callback=runtime.Progress())
            images = collect_frames(clip.frames, len(clip))
        return images, synced_audio(waveform, rate, len(clip), clip.fps, clip.audio_delay), clip.fps
