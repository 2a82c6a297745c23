"""X-Pose (UniPose, Swin-T) animal-face keypoints in plain PyTorch: CPU, Apple silicon or any GPU.

    model = load_xpose(WeightsLocation())          # liveportrait_animals/xpose.pth, loaded strictly
    found = detect_animal_keypoints(model, image)  # (H, W, 3) uint8 RGB -> 9 points in pixels
    crop = landmark_crop(image, found.points)      # joyvasa.face.source: the same similarity crop as human mode

The multi-scale deformable attention that the original runs as a compiled CUDA operator is written with
`grid_sample`. The prompt is LivePortrait's cached CLIP text embeddings (`animal_face_9.npz`, see README.md).
"""
from .detect import AnimalFaceDetector, AnimalKeypoints, NoAnimalFoundError, detect_animal_keypoints
from .loading import XPOSE_FILE, load_xpose
from .model import Prompt, XPose, XPoseConfig, XPoseOutput
from .prompts import ANIMAL_FACE_9, animal_face_prompt
from .trace import Trace

__all__ = [
    "ANIMAL_FACE_9",
    "XPOSE_FILE",
    "AnimalFaceDetector",
    "AnimalKeypoints",
    "NoAnimalFoundError",
    "Prompt",
    "Trace",
    "XPose",
    "XPoseConfig",
    "XPoseOutput",
    "animal_face_prompt",
    "detect_animal_keypoints",
    "load_xpose",
]
