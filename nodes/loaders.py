"""Loader nodes: the LivePortrait renderer, the JoyVASA motion generator, the face detector.

Each loads once (ComfyUI caches the output) and returns a handle; processing nodes move the model to the
compute device while they use it. Missing official files are downloaded when `download` is on.
"""
from __future__ import annotations

from ..joyvasa.devices import DEVICE_CHOICES, PRECISION_CHOICES
from ..joyvasa.face.detect import DEFAULT_DET_THRESH
from ..joyvasa.weights import MOTION_CHECKPOINT, MOTION_TEMPLATE, motion_files, renderer_files
from . import runtime
from .types import CATEGORY, FACE_DETECTOR, MOTION_MODEL, RENDERER, FaceDetectorHandle

DETECTORS = {"insightface (human)": "human", "x-pose (animal)": "animal"}  # choice -> species it finds
DEVICE = (list(DEVICE_CHOICES), {
    "default": "auto", "tooltip": "Where the model runs: auto = ComfyUI's compute device (the GPU if any)."})
DOWNLOAD = ("BOOLEAN", {
    "default": True, "tooltip": "Download missing official weight files from Hugging Face into ComfyUI's "
                                "models folder. Off: fail with the manual download command instead."})


class JoyVASALoadRenderer:
    DESCRIPTION = ("Loads the LivePortrait renderer (appearance extractor, motion extractor, warping module, "
                   "SPADE generator, stitching MLPs) for human or animal portraits.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (RENDERER,)
    RETURN_NAMES = ("renderer",)
    OUTPUT_TOOLTIPS = ("The LivePortrait renderer for Prepare Source and Render.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "species": (["human", "animal"], {
                "default": "human", "tooltip": "human: KwaiVGI's human weights. animal: the cat/dog weights "
                                               "(they reuse the human stitching MLPs, as JoyVASA does)."}),
            "animal_version": (["v1.0", "v1.1"], {
                "default": "v1.0", "tooltip": "Animal weights only: v1.0 (base_models) is what JoyVASA uses; "
                                              "v1.1 is LivePortrait's newer animal set."}),
            "precision": (list(PRECISION_CHOICES), {
                "default": "auto", "tooltip": "auto = bf16 on GPUs that support it, else fp32. fp32 reproduces "
                                              "the original exactly; bf16/fp16 are faster with tiny differences."}),
            "device": DEVICE,
            "download": DOWNLOAD,
        }}

    def load(self, species, animal_version, precision, device, download):
        from ..joyvasa.renderer import load_renderer

        target = runtime.compute_device(device)
        dtype = runtime.resolve_dtype(precision, target)
        runtime.find_weights(renderer_files(species, animal_version).values(), download)
        renderer = load_renderer(species, animal_version, location=runtime.weights_location(),
                                 dtype=dtype)
        return (runtime.ModelHandle(renderer, target, species=species, dtype=dtype),)


class JoyVASALoadMotionGenerator:
    DESCRIPTION = ("Loads JoyVASA's audio-driven motion generator (Chinese HuBERT speech encoder + diffusion "
                   "transformer) and its motion template.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MOTION_MODEL,)
    RETURN_NAMES = ("motion_model",)
    OUTPUT_TOOLTIPS = ("The motion generator for Encode Audio and Sample Motion.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"device": DEVICE, "download": DOWNLOAD}}

    def load(self, device, download):
        from ..joyvasa.motion import load_motion_generator

        target = runtime.compute_device(device)
        paths = runtime.find_weights(motion_files(), download)
        model = load_motion_generator(paths[MOTION_CHECKPOINT], paths[MOTION_TEMPLATE])
        return (runtime.ModelHandle(model, target),)


class JoyVASALoadFaceDetector:
    DESCRIPTION = ("Loads the face detector used to crop the source portrait: InsightFace buffalo_l + "
                   "LivePortrait's 203-point landmarks for people, X-Pose animal-face keypoints for cats and dogs "
                   "(both are for non-commercial use only).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (FACE_DETECTOR,)
    RETURN_NAMES = ("face_detector",)
    OUTPUT_TOOLTIPS = ("The detector for Prepare Source (crop = auto).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "detector": (list(DETECTORS), {
                "default": next(iter(DETECTORS)),
                "tooltip": "insightface for people; x-pose for animal faces (runs in plain PyTorch on any device, no "
                           "compiled CUDA op needed)."}),
            "det_thresh": ("FLOAT", {
                "default": DEFAULT_DET_THRESH, "min": 0.0, "max": 0.99, "step": 0.01,
                "tooltip": "Score threshold: lower finds harder faces but risks false detections. X-Pose: 0 keeps "
                           "the best candidate whatever its score (the original's behaviour)."}),
            "onnx_device": (["auto", "cpu"], {
                "default": "auto", "tooltip": "Where the detector runs: auto = CUDA / CoreML when available "
                                              "(insightface needs onnxruntime-gpu for CUDA), else the CPU."}),
            "download": DOWNLOAD,
        }}

    def load(self, detector, det_thresh, onnx_device, download):
        from ..joyvasa.pipeline import detector_files, load_detector

        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        if not 0.0 <= det_thresh <= 1.0:
            raise ValueError(f"det_thresh must be from 0 to 1, got {det_thresh}")
        species = DETECTORS[detector]
        device = runtime.compute_device("cpu" if onnx_device == "cpu" else "auto")
        paths = runtime.find_weights(detector_files(species), download)
        providers = ["CPUExecutionProvider"] if onnx_device == "cpu" else None
        found = load_detector(species, paths, "cpu", det_thresh, providers=providers)
        if species == "animal":  # X-Pose is a torch model: ComfyUI moves it to the GPU while it runs
            return (FaceDetectorHandle("xpose", runtime.ModelHandle(found.model, device), det_thresh),)
        return (FaceDetectorHandle("insightface", found, det_thresh),)
