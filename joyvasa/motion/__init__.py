"""JoyVASA motion generator: speech in, per-frame LivePortrait motion (lips, expression, head pose) out.

    model = load_motion_generator(".../JoyVASA/motion_generator/motion_generator_hubert_chinese.pt")
    waveform, rate = decode_audio_file("speech.wav")
    motion = generate_motion(model, waveform, rate, seed=0, cfg_scale=2.8)   # MotionSequence, 25 fps

Parts, one file each: `audio` (decode, downmix, resample, padding, windows), `audio_encoder` (HuBERT /
wav2vec2 + projection), `denoiser` (the transformer), `schedule`, `sampler` (guided DDPM), `decode`
(template, EMA, rotation), `loading` (safe, strict loading), `generator` (the assembled model and pipeline).
"""
from .audio import decode_audio_file
from .constants import FPS, SAMPLE_RATE
from .constraint import Constraint
from .decode import MotionSequence, MotionTemplate, normalize_motion
from .generator import (
    MotionGenerator,
    NoiseReplay,
    SpeechFeatures,
    encode_speech,
    generate_motion,
    sample_speech_motion,
)
from .loading import load_motion_generator

__all__ = [
    "Constraint", "FPS", "MotionGenerator", "MotionSequence", "MotionTemplate", "NoiseReplay", "SAMPLE_RATE",
    "SpeechFeatures", "decode_audio_file", "encode_speech", "generate_motion", "load_motion_generator",
    "normalize_motion", "sample_speech_motion",
]
