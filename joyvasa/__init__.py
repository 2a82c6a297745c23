"""JoyVASA talking portraits: audio-driven LivePortrait, as a plain PyTorch library (no ComfyUI imports).

What a library user calls (imported on first use, so `import joyvasa` stays light):

    renderer = joyvasa.load_renderer("human", device="cuda")
    generator = joyvasa.load_motion_generator(checkpoint, template).to("cuda")
    clip = joyvasa.animate_portrait(renderer, generator, image, waveform, rate, joyvasa.PortraitOptions())
    with joyvasa.Mp4Writer("talk.mp4", audio=(waveform, rate), audio_delay=clip.audio_delay) as writer:
        for frames in clip.frames:
            writer.write(frames)

    driven = joyvasa.motion_from_video(renderer, detector, "driver.mp4")              # a video's motion, 25 fps
    joyvasa.dub_video(renderer, generator, detector, "talk.mp4", waveform, rate, "dubbed.mp4", joyvasa.DubOptions())

Submodules: `pipeline` (the assembly path and its options), `renderer`, `motion`, `face`, `direct` (performance
controls, motion files, preview), `batch`, `devices`, `weights`, `download`, `video` (writing), `video_reader`
(reading), `files`, `testing`.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_API = {
    "animate_portrait": "pipeline", "PortraitOptions": "pipeline", "CropOptions": "pipeline",
    "MotionOptions": "pipeline", "DrivingOptions": "pipeline", "load_detector": "pipeline",
    "portrait_files": "pipeline", "load_renderer": "renderer", "load_motion_generator": "motion",
    "generate_motion": "motion", "decode_audio_file": "motion", "MotionSequence": "motion",
    "DirectOptions": "direct.perform", "direct_motion": "direct.perform", "read_motion_file": "direct.motion_file",
    "write_motion_file": "direct.motion_file", "motion_preview": "direct.preview", "Mp4Writer": "video",
    "resolve_device": "devices", "resolve_dtype": "devices", "default_location": "weights",
    "ensure_weights": "download", "motion_from_video": "pipeline.video_motion", "dub_video": "pipeline.dub",
    "DubOptions": "pipeline.dub", "mix_motion": "direct.mix", "probe_video": "video_reader",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
