"""Encode Audio and Sample Motion: speech -> JoyVASA features -> per-frame motion."""
from __future__ import annotations

import torch

from ..joyvasa.motion.audio import ALIGNMENTS
from ..joyvasa.motion.constants import CFG_SCALE_RANGE, DEFAULT_CFG_SCALE, DEFAULT_SMOOTHING, SEED_RANGE
from ..joyvasa.motion.denoiser import PE_MODES
from . import runtime
from .types import CATEGORY, MOTION, MOTION_MODEL, SPEECH, MotionClip, SpeechClip


def audio_input(audio) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO {'waveform': (1, C, T), 'sample_rate'} -> ((C, T) float32 CPU tensor, rate); a batch of
    several clips, empty or damaged audio is refused."""
    from ..joyvasa.motion.audio import as_channels

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("expected an AUDIO input (a dict with 'waveform' and 'sample_rate'), e.g. from Load Audio")
    rate = audio["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
        raise ValueError(f"the AUDIO sample rate must be a positive number, got {rate!r}")
    return as_channels(audio["waveform"]), int(rate)


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
            "cfg_scale": ("FLOAT", {"default": DEFAULT_CFG_SCALE, "min": CFG_SCALE_RANGE[0],
                                    "max": CFG_SCALE_RANGE[1], "step": 0.1,
                                    "tooltip": "Audio guidance: higher gives stronger, more articulated lip "
                                               "motion; 1 = no guidance. 2.8 is JoyVASA's default."}),
            "seed": ("INT", {"default": 0, "min": SEED_RANGE[0], "max": SEED_RANGE[1], "control_after_generate": True,
                             "tooltip": "Random seed: the same seed gives the same motion on any device."}),
            "smoothing": ("FLOAT", {"default": DEFAULT_SMOOTHING, "min": 0.0, "max": 1.0, "step": 0.005,
                                    "tooltip": "Head-pose smoothing: JoyVASA's 0.01 keeps the head almost still; "
                                               "larger follows the generated head motion; 0 = off."}),
            "pe_mode": (list(PE_MODES), {
                "default": "legacy", "tooltip": "Positional encoding: legacy is what the released weights were "
                                                "trained with; main is JoyVASA's later code (per-position)."}),
            "timing": (list(ALIGNMENTS), {
                "default": "original", "tooltip": "original: JoyVASA's timing (2 silent lead frames; the audio "
                                                  "output is delayed 80 ms to stay in sync). aligned: no lead "
                                                  "frames, audio unchanged."}),
        }}

    def sample(self, motion_model, speech, cfg_scale, seed, smoothing, pe_mode, timing):
        from ..joyvasa.motion import sample_speech_motion
        from ..joyvasa.pipeline import MotionOptions

        options = MotionOptions(cfg_scale=cfg_scale, seed=seed, smoothing=smoothing, pe_mode=pe_mode, timing=timing)
        with motion_model.use() as model:
            motion = sample_speech_motion(model, speech.features, seed=options.seed, cfg_scale=options.cfg_scale,
                                          alignment=options.timing, smoothing=options.smoothing or None,
                                          pe_mode=options.pe_mode, callback=runtime.Progress().sampling_step)
        return (MotionClip(motion, speech.waveform, speech.sample_rate, options.audio_delay),)
