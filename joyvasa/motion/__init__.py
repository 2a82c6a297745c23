"""JoyVASA motion generator: speech in, per-frame LivePortrait motion (lips, expression, head pose) out.

    model = load_motion_generator(".../JoyVASA/motion_generator/motion_generator_hubert_chinese.pt")
    waveform, rate = decode_audio_file("speech.wav")
    motion = generate_motion(model, waveform, rate, seed=0, cfg_scale=2.8)   # MotionSequence, 25 fps

Parts, one file each: `audio` (decode, downmix, resample, padding, windows), `audio_encoder` (HuBERT /
wav2vec2 + projection), `denoiser` (the transformer), `schedule`, `sampler` (guided DDPM), `decode`
(template, EMA, rotation), `loading` (safe, strict loading), `generator` (the assembled model and pipeline).
"""
from .audio import decode_audio_file, pad_silence, plan_windows, prepare_audio, split_windows
from .audio_encoder import AudioEncoder
from .constants import DEFAULT_CFG_SCALE, DEFAULT_SMOOTHING, FPS, MOTION_DIM, SAMPLE_RATE
from .constraint import CHANNEL_GROUPS, Constraint, channel_mask
from .decode import MotionSequence, MotionTemplate, decode_motion, normalize_motion
from .denoiser import DenoiserConfig, DenoisingNetwork
from .generator import (
    MotionGenerator,
    NoiseReplay,
    SpeechFeatures,
    encode_speech,
    generate_motion,
    sample_speech_motion,
)
from .loading import find_encoder_config, load_motion_generator, read_motion_checkpoint, read_motion_template
from .sampler import GuidedDenoiser, replay_noise, sample_motion, sample_window, seeded_noise
from .schedule import DiffusionSchedule, cosine_schedule

__all__ = [
    "AudioEncoder",
    "channel_mask",
    "CHANNEL_GROUPS",
    "Constraint",
    "cosine_schedule",
    "decode_audio_file",
    "decode_motion",
    "DEFAULT_CFG_SCALE",
    "DEFAULT_SMOOTHING",
    "DenoiserConfig",
    "DenoisingNetwork",
    "DiffusionSchedule",
    "encode_speech",
    "find_encoder_config",
    "FPS",
    "generate_motion",
    "GuidedDenoiser",
    "load_motion_generator",
    "MOTION_DIM",
    "MotionGenerator",
    "MotionSequence",
    "MotionTemplate",
    "NoiseReplay",
    "normalize_motion",
    "pad_silence",
    "plan_windows",
    "prepare_audio",
    "read_motion_checkpoint",
    "read_motion_template",
    "replay_noise",
    "sample_motion",
    "SAMPLE_RATE",
    "sample_speech_motion",
    "sample_window",
    "seeded_noise",
    "SpeechFeatures",
    "split_windows",
]
