"""Stand-in weights and tiny configurations, for tests, benchmarks and tools (no pytest needed).

- `joyvasa.testing.standin`: writes every checkpoint file in the official layout and container format
  (`pretrained_weights/...`), with values from the parity kit's `fill.py` for any seed (kit README §2). The kit
  folder is `$JOYVASA_REFERENCE_DIR`, else `../shared/reference` beside the repository.
- `joyvasa.testing.onnx_standins`: small ONNX graphs with the official signatures of the three face models
  (det_10g, 2d106det, landmark.onnx) that put faces at known places, and warm test pictures.
- `joyvasa.testing.tiny`: randomly initialised renderer and motion generator of tiny widths (same code paths as
  the released networks, milliseconds per call), and a synthetic motion template.

Nothing here is needed at inference; the submodules are imported on demand.
"""
