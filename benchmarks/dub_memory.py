"""Peak memory and speed of dubbing a video, in a fresh process per video length.

    .venv/bin/python -m benchmarks.dub_memory --seconds 10 60 [--fps 25]
    .venv/bin/python -m benchmarks.dub_memory --seconds 1 --renderer full    # s/frame at the official size

Each case: a synthetic 640x360 video (25 fps unless --fps says otherwise) with sound and a moving stand-in face,
written beforehand outside the measured process, dubbed by `dub_video` with a motion of the video's length given
(so the output is the video's length and no motion is sampled) and a speech waveform of that length for the sound
track: tracking with the stand-in face models, a crop per frame, appearance and keypoints per frame, warp +
decode, paste-back, H.264 + AAC written as the frames come. The renderer is a small configuration of the same
networks (what could grow with the video is the same; full size would take an hour of CPU per minute of video
here); `--renderer full` loads stand-in weights of the official sizes instead (for s/frame). Prints the
process's peak RSS, the tracking and total time, and s/frame beside `animate_portrait` (one portrait, same
renderer and motion) on the same machine.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE_HW = (360, 640)
FPS = 25
ANIMATE_SECONDS = 2.0  # frames of the animate_portrait comparison


def face_box(i: int) -> tuple[float, float, float, float]:
    dx, dy = 40 * math.sin(i / 20), 10 * math.sin(i / 13)
    return (270 + dx, 110 + dy, 370 + dx, 240 + dy)


def _motion(frames: int):
    """A smooth synthetic 25 fps motion: the mouth opening and closing, the head turning a little."""
    import torch

    from joyvasa.motion import MotionSequence
    from joyvasa.renderer.keypoints import rotation_matrix

    k = torch.arange(frames, dtype=torch.float32)[:, None]
    exp = torch.zeros(frames, 21, 3)
    exp[:, [6, 12, 14, 17, 19, 20], 1] = 0.02 * torch.sin(k / 3)
    pitch, yaw, roll = 2 * torch.sin(k / 30), 5 * torch.sin(k / 50), torch.zeros_like(k)
    return MotionSequence(None, exp, torch.ones(frames, 1), torch.zeros(frames, 3), pitch, yaw, roll,
                          rotation_matrix(pitch, yaw, roll))


def _speech(seconds: float):
    import torch

    return 0.2 * torch.sin(torch.arange(int(seconds * 16000)) * 0.07)[None]


def _renderer(kind: str, folder: Path):
    """The tiny renderer, or the official-size one from stand-in weights written into `folder` (once)."""
    from joyvasa.testing.tiny import tiny_renderer

    if kind == "tiny":
        return tiny_renderer()
    from joyvasa.renderer import load_renderer
    from joyvasa.testing import standin
    from joyvasa.weights import WeightsLocation

    root = folder / "renderer"
    if not root.is_dir():
        standin.write_liveportrait(standin.kit_dir(), root, "human")
    return load_renderer("human", location=WeightsLocation(explicit_dir=root))


def _one_case(seconds: float, folder: Path, renderer: str = "tiny") -> dict:
    """Dub the prepared video of `seconds` in this process: its peak RSS and timings."""
    import torch

    from joyvasa.face.detect import DET_10G, LANDMARK_106, LANDMARK_203, FaceDetector
    from joyvasa.pipeline.dub import DubOptions, dub_video

    torch.manual_seed(0)
    model = _renderer(renderer, folder)
    root = folder / "weights"
    detector = FaceDetector(root / DET_10G, root / LANDMARK_106, root / LANDMARK_203)
    video = folder / f"video_{seconds:g}.mp4"
    tracked = [0.0]
    start = time.perf_counter()

    def track_progress(done: int) -> None:
        tracked[0] = time.perf_counter() - start

    result = dub_video(model, None, detector, video, _speech(seconds), 16000, folder / "dubbed.mp4",
                       DubOptions(), motion=_motion(round(seconds * 25)), track_callback=track_progress)
    wall = time.perf_counter() - start
    return {"seconds": seconds, "frames": result.frames, "track": tracked[0], "wall": wall,
            "per_frame": (wall - tracked[0]) / result.frames,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _animate_case(folder: Path, renderer: str = "tiny") -> dict:
    """animate_portrait on the first frame of the video, with the same renderer and motion: s/frame."""
    import numpy as np
    import torch

    from joyvasa.pipeline import CropOptions, PortraitOptions, animate_portrait
    from joyvasa.testing.videos import face_frame

    torch.manual_seed(0)
    model = _renderer(renderer, folder)
    image = face_frame(SIZE_HW, face_box(0))
    motion = _motion(round(ANIMATE_SECONDS * 25))
    options = PortraitOptions(crop=CropOptions(mode="box", box=face_box(0)))
    start = time.perf_counter()
    clip = animate_portrait(model, None, image, _speech(ANIMATE_SECONDS), 16000, options, motion=motion)
    frames = sum(len(np.asarray(batch)) for batch in clip.frames)
    return {"frames": frames, "per_frame": (time.perf_counter() - start) / frames}


def _prepare(folder: Path, seconds_list, fps: float) -> None:
    """The stand-in face models and one synthetic video per length (written here, not in the measured process)."""
    from joyvasa.testing.videos import standin_face_weights, write_face_video

    standin_face_weights(folder / "weights", face_box(0), SIZE_HW)
    for seconds in seconds_list:
        write_face_video(folder / f"video_{seconds:g}.mp4", round(seconds * fps), fps, SIZE_HW, face_box,
                         audio=(_speech(seconds), 16000))


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.dub_memory", *args], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(seconds_list, fps: float = FPS, renderer: str = "tiny") -> tuple[list[dict], dict]:
    """Run each video length in its own process (peak RSS is per process), then the animate comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _prepare(folder, seconds_list, fps)
        kind = ["--renderer", renderer]
        rows = [_child(["--child", str(s), "--folder", tmp, *kind]) for s in seconds_list]
        animate = _child(["--animate", "--folder", tmp, *kind])
    return rows, animate


def print_table(rows: list[dict], animate: dict) -> None:
    print("| video (s) | frames | tracking (s) | total (s) | s/frame dubbed | peak RSS (MB) |")
    print("|----------:|-------:|-------------:|----------:|---------------:|--------------:|")
    for r in rows:
        print(f"| {r['seconds']:9.0f} | {r['frames']:6d} | {r['track']:12.1f} | {r['wall']:9.1f} | "
              f"{r['per_frame']:14.3f} | {r['peak_mb']:13.0f} |")
    if len(rows) >= 2:
        print(f"peak RSS growth from {rows[0]['seconds']:.0f} s to {rows[-1]['seconds']:.0f} s: "
              f"{rows[-1]['peak_mb'] - rows[0]['peak_mb']:+.0f} MB")
    dub = rows[-1]["per_frame"]
    print(f"animate_portrait, same renderer and motion ({animate['frames']} frames): {animate['per_frame']:.3f} "
          f"s/frame; dubbing {dub:.3f} s/frame after tracking ({dub / animate['per_frame']:.2f}x: appearance and "
          "keypoints of every frame, a crop and a paste-back mask per frame)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--fps", type=float, default=FPS, help="frame rate of the synthetic videos")
    parser.add_argument("--renderer", choices=("tiny", "full"), default="tiny",
                        help="tiny: a small configuration (memory); full: official sizes, stand-in weights (speed)")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--animate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_one_case(args.child, args.folder, args.renderer)))
        return 0
    if args.animate:
        print(json.dumps(_animate_case(args.folder, args.renderer)))
        return 0
    print(f"{SIZE_HW[1]}x{SIZE_HW[0]} video at {args.fps:g} fps, {args.renderer} renderer, motion given\n")
    print_table(*measure(args.seconds, args.fps, args.renderer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
