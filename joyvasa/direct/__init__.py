"""Directing the performance: edits of the per-frame motion JoyVASA generates (VASA-1's controls reached as
edits in LivePortrait's motion space), motion files, and a preview plot.

Every control is a pure function `MotionSequence (+ options) -> MotionSequence` (a new object; inputs are never
mutated), neutral by default: at its neutral value it returns the motion unchanged, bit for bit. `raw` (the
sampler's normalised output) is kept as it was sampled; the edited fields are exp, scale, t, pitch, yaw, roll
and R (recomputed from the angles with `joyvasa.renderer.keypoints.rotation_matrix`).

Order in which the controls compose (the CLI and the Direct Motion node apply them in this order):
1. head (gain and offset per axis, keyframed offsets, distance and framing),
2. gaze (eyeball keypoints counter-rotated against the head),
3. blinks (eye-retargeting MLP deltas),
4. emotion / expression offset (from a reference portrait; or neutralising the source),
5. mouth (lip gain, silence-aware closing, audio/video offset in frames),
6. fade (ease in from the source's still face and back out).
Controls that need the renderer's retargeting MLPs or the source's landmarks (gaze, blinks, emotion, silence
closing) take them as arguments; for animal sources they explain why they do not apply.

Mixing (`mix.mix_motion`): one motion built from several, e.g. the head from a driving video's motion and the lips
and face from speech, each part with a weight (weight 0 = the base's, bit for bit).
"""
