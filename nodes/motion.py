"""Encode Audio and Sample Motion: speech -> JoyVASA features -> per-frame motion."""
from __future__ import annotations

import torch

from . import runtime
from .types import CATEGORY, MOTION, MOTION_MODEL, SPEECH, MotionClip, SpeechClip

LEAD_SECONDS = 0.08  # the original's 2 leading silent frames at 25 fps


def audio_input(audio) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO {'waveform': (B, C, T), 'sample_rate'} -> ((C, T) float32 CPU tensor, rate)."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("expected an AUDIO input (a dict with 'waveform' and 'sample_rate'), e.g. from Load Audio")
    waveform = torch.as_tensor(audio["waveform"]).detach().float().cpu()
    if waveform.ndim == 3:
        waveform = waveform[0]
    if waveform.ndim == 1:
        waveform = waveform[None]
    if waveform.ndim != 2 or waveform.shape[-1] == 0:
        raise ValueError(f"the AUDIO waveform must be (batch, channels, samples) with samples > 0, got "
                         f"{tuple(torch.as_tensor(audio['waveform']).shape)}")
    return waveform, int(audio["sample_rate"])


class JoyVASAEncodeAudio:
    DESCRIPTION = ("Encodes speech with JoyVASA's HuBERT audio encoder (any sample rate or channel count; "
                   "downmixed and resampled to 16 kHz).")
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (SPEECH,)
    RETURN_NAMES = ("speech",)
    OUTPUT_TOOLTIPS = ("Audio features (25 per second) for Sample Motion, with the audio itself.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion_model": (MOTION_MODEL, {"tooltip": "From JoyVASA Load Motion Generator."}),
            "audio": ("AUDIO", {"tooltip": "The speech to lip-sync."}),
        }}

    def encode(self, motion_model, audio):
        from ..joyvasa.motion import encode_speech

        waveform, rate = audio_input(audio)
        with motion_model.use() as model:
            speech = encode_speech(model, waveform, rate)
        return (SpeechClip(speech, waveform, rate),)


class JoyVASASampleMotion:
    DESCRIPTION = ("Generates lip, expression and head motion from the encoded speech with JoyVASA's diffusion "
                   "transformer, 25 frames per second.")
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = (MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("Per-frame motion for Render.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion_model": (MOTION_MODEL, {"tooltip": "From JoyVASA Load Motion Generator."}),
            "speech": (SPEECH, {"tooltip": "From JoyVASA Encode Audio."}),
            "cfg_scale": ("FLOAT", {"default": 2.8, "min": 0.0, "max": 10.0, "step": 0.1,
                                    "tooltip": "Audio guidance: higher gives stronger, more articulated lip "
                                               "motion; 1 = no guidance. 2.8 is JoyVASA's default."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                             "tooltip": "Random seed: the same seed gives the same motion on any device."}),
            "smoothing": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.005,
                                    "tooltip": "Head-pose smoothing: JoyVASA's 0.01 keeps the head almost still; "
                                               "larger follows the generated head motion; 0 = off."}),
            "pe_mode": (["legacy", "main"], {
                "default": "legacy", "tooltip": "Positional encoding: legacy is what the released weights were "
                                                "trained with; main is JoyVASA's later code (per-position)."}),
            "timing": (["original", "aligned"], {
                "default": "original", "tooltip": "original: JoyVASA's timing (2 silent lead frames; the audio "
                                                  "output is delayed 80 ms to stay in sync). aligned: no lead "
                                                  "frames, audio unchanged."}),
        }}

    def sample(self, motion_model, speech, cfg_scale, seed, smoothing, pe_mode, timing):
        from ..joyvasa.motion import sample_speech_motion

        n_steps = None
        bar = runtime.Progress(0)

        def callback(step: dict) -> None:
            nonlocal n_steps, bar
            total = step["n_windows"] * step["n_steps"]
            if n_steps != total:
                n_steps, bar = total, runtime.Progress(total)
            bar(step["window"] * step["n_steps"] + step["i"] + 1, total)

        with motion_model.use() as model:
            model.pe_mode = pe_mode  # the handle is shared between nodes: set it on every call
            motion = sample_speech_motion(model, speech.features, seed=seed, cfg_scale=cfg_scale,
                                          alignment=timing, smoothing=smoothing or None, callback=callback)
        delay = LEAD_SECONDS if timing == "original" else 0.0
        return (MotionClip(motion.to("cpu"), speech.waveform, speech.sample_rate, delay),)
