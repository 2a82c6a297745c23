"""Encode Audio and Sample Motion: speech -> JoyVASA features -> per-frame motion."""
from __future__ import annotations

import torch

from ..joyvasa.motion.audio import ALIGNMENTS
from ..joyvasa.motion.constants import CFG_SCALE_RANGE, DEFAULT_CFG_SCALE, DEFAULT_SMOOTHING, FPS, SEED_RANGE
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


# Sample Motion's `constrain` choices -> channel groups of joyvasa.motion.constraint (None: no constraint)
CONSTRAIN_CHOICES = {"head": "head", "head rotation": "head_rotation", "none": None}


def head_track_channels(head_track, constrain: str) -> str | None:
    """The channel group to constrain to `head_track` (None: sample freely); a bad choice or track is refused."""
    if constrain not in CONSTRAIN_CHOICES:
        raise ValueError(f"constrain must be one of {', '.join(CONSTRAIN_CHOICES)}, got {constrain!r}")
    if head_track is None or CONSTRAIN_CHOICES[constrain] is None:
        return None
    if not isinstance(head_track, MotionClip):
        raise ValueError(f"head_track must be a JoyVASA MOTION (from Sample Motion or Load Motion), got "
                         f"{type(head_track).__name__}")
    if head_track.fps != FPS:
        raise ValueError(f"head_track runs at {head_track.fps:g} fps; JoyVASA samples {FPS} fps, resample it first")
    return CONSTRAIN_CHOICES[constrain]


class JoyVASASampleMotion:
    DESCRIPTION = ("Generates lip, expression and head motion from the encoded speech with JoyVASA's diffusion "
                   "transformer, 25 frames per second; with a head track, lips and expression given that head.")
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
        }, "optional": {
            "head_track": (MOTION, {"tooltip": "Optional head motion to keep (a loaded motion file, another seed's "
                                               "motion, a still head): lips and expression are sampled given it. "
                                               "It must be at least as long as the speech, or a single frame."}),
            "constrain": (list(CONSTRAIN_CHOICES), {
                "default": "head", "tooltip": "What head_track fixes: head = rotation, scale and position; head "
                                              "rotation = pitch, yaw, roll only; none = ignore the track."}),
        }}

    def sample(self, motion_model, speech, cfg_scale, seed, smoothing, pe_mode, timing, head_track=None,
               constrain="head"):
        from ..joyvasa.motion import Constraint, sample_speech_motion
        from ..joyvasa.pipeline import MotionOptions

        options = MotionOptions(cfg_scale=cfg_scale, seed=seed, smoothing=smoothing, pe_mode=pe_mode, timing=timing)
        channels = head_track_channels(head_track, constrain)
        with motion_model.use() as model:
            constraint = None if channels is None else Constraint.from_motion(head_track.motion, model.template,
                                                                              channels)
            motion = sample_speech_motion(model, speech.features, seed=options.seed, cfg_scale=options.cfg_scale,
                                          alignment=options.timing, smoothing=options.smoothing or None,
                                          pe_mode=options.pe_mode, callback=runtime.Progress().sampling_step,
                                          constraint=constraint)
        info = {"seed": options.seed, "cfg_scale": options.cfg_scale, "smoothing": options.smoothing,
                "pe_mode": options.pe_mode, "timing": options.timing}
        return (MotionClip(motion, speech.waveform, speech.sample_rate, options.audio_delay, info=info),)
