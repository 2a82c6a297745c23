"""Numbers fixed by the released JoyVASA motion generator, defined once for the whole motion package.

Audio runs at 16 kHz, motion at 25 fps (640 samples per frame). The sampler works in windows of 100 frames
(4 s) and conditions each window on the last 25 frames of the previous one. A checkpoint's own `args`
(`n_motions`, `n_prev_motions`) override the window sizes; these are the released values.
"""
from __future__ import annotations

SAMPLE_RATE = 16_000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640

WINDOW_FRAMES = 100  # n_motions
CONTEXT_FRAMES = 25  # n_prev_motions
WINDOW_SAMPLES = WINDOW_FRAMES * SAMPLES_PER_FRAME  # 64 000

# The original pads the waveform with silence: 2 frames before (so the first frames show a closed mouth),
# 1 frame after.
LEAD_SILENCE_FRAMES = 2
TAIL_SILENCE_FRAMES = 1

# The audio encoder sees 20 ms hops (320 samples): 2 encoder frames per motion frame.
ENCODER_HOP = 320
ENCODER_FRAMES_PER_MOTION_FRAME = SAMPLES_PER_FRAME // ENCODER_HOP  # 2
ENCODER_PAD_THRESHOLD = 80  # extra samples the conv stack needs beyond hop * frames

# Layout of the 70-d motion vector (LivePortrait motion-extractor units):
#   0..62 expression deltas (21 keypoints x xyz, keypoint-major), 63 scale, 64..66 translation,
#   67 pitch, 68 yaw, 69 roll (degrees). Expression is z-scored, the rest min-max normalised.
MOTION_DIM = 70
NUM_KP = 21
EXP = slice(0, 63)
SCALE = slice(63, 64)
TRANSLATION = slice(64, 67)
PITCH = slice(67, 68)
YAW = slice(68, 69)
ROLL = slice(69, 70)

DEFAULT_CFG_SCALE = 2.8  # the original command line's default (its Gradio demo uses 4.0)
CFG_SCALE_RANGE = (0.0, 10.0)  # 1 = no guidance; past 10 the lips only jitter
SEED_RANGE = (0, 2**64 - 1)  # what torch.Generator.manual_seed takes
DEFAULT_SMOOTHING = 0.01  # EMA weight of the new sample for pose, scale and translation
