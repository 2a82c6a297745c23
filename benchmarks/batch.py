"""Clips per hour of `python -m joyvasa batch`: the local engine at 1 and 2 workers and Ray at 2, against one
`python -m joyvasa animate` process per clip.

    .venv/bin/python -m benchmarks.batch [--short-clips 8] [--long-clips 2] [--long-frames 8] [--no-ray]

Stand-in weights of the official sizes (from the parity kit), a 400x360 portrait with a box crop, clips driven
by motion files (no motion generator), each command timed as a user runs it (a new Python process, the CLI's
own imports). "Short" clips of 1 frame show what an engine costs around the rendering (processes, Ray, model
loading); "long" clips of --long-frames frames what is left when the renderer dominates. Every run starts from
an empty output folder, so nothing is skipped. Model loading per clip is read from the outputs' sidecars
(a worker loads the models once, for its first clip); the last lines give the seconds per clip that a batch
saves against separate `animate` calls.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BOX = "140 90 260 230"  # the portrait's face box (a box crop: no face detector needed)


def _scene(root: Path, folder: Path, frame_counts: set[int]) -> None:
    """Stand-in renderer weights under root; a portrait and a motion file per clip length in folder."""
    import cv2
    import torch

    from joyvasa.direct.motion_file import write_motion_file
    from joyvasa.motion.decode import MotionSequence
    from joyvasa.renderer.keypoints import rotation_matrix
    from joyvasa.testing import onnx_standins, standin

    standin.write_liveportrait(standin.kit_dir(), root, "human")
    face = onnx_standins.StandinFace(box=tuple(float(v) for v in BOX.split()))
    cv2.imwrite(str(folder / "portrait.png"),
                cv2.cvtColor(onnx_standins.warm_image((360, 400), [face]), cv2.COLOR_RGB2BGR))
    for frames in frame_counts:  # a head turning a little
        yaw = torch.linspace(0, 10, frames)[:, None]
        zero = torch.zeros(frames, 1)
        motion = MotionSequence(None, torch.zeros(frames, 21, 3), torch.ones(frames, 1), torch.zeros(frames, 3),
                                zero, yaw, zero.clone(), rotation_matrix(zero, yaw, zero))
        write_motion_file(folder / f"motion_{frames}.safetensors", motion, fps=25)


def _jobs(folder: Path, name: str, clips: int, frames: int) -> Path:
    path = folder / f"{name}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "motion", "out", "crop", "box"])
        for i in range(clips):
            writer.writerow(["portrait.png", f"motion_{frames}.safetensors", f"clip{i}.mp4", "box", BOX])
    return path


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "joyvasa", *argv], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed:\n{done.stderr[-3000:]}")
    return seconds


def _loading_per_clip(out: Path, clips: int) -> float:
    sides = [json.loads(p.read_text()) for p in out.glob("*.mp4.json")]
    assert len(sides) == clips, f"{len(sides)} sidecars in {out}, expected {clips}"
    return sum(side["seconds"]["model_loading"] for side in sides) / clips


def measure(root: Path, folder: Path, clips: int, frames: int, ray: bool, cli: bool) -> list[dict]:
    """One row per way of rendering `clips` clips of `frames` frames."""
    jobs = _jobs(folder, f"jobs_{clips}x{frames}", clips, frames)
    common = ["--weights-dir", str(root), "--no-download"]
    engines = [("local", 1), ("local", 2)] + ([("ray", 2)] if ray else [])
    rows = []
    for engine, workers in engines:
        out = folder / f"out_{clips}x{frames}_{engine}{workers}"
        wall = _timed(["batch", str(jobs), "--out", str(out), "--engine", engine, "--workers", str(workers),
                       *common])
        rows.append(dict(clips=clips, frames=frames, how=f"batch --engine {engine}", workers=workers, wall=wall,
                         loading=_loading_per_clip(out, clips)))
    if cli:
        out = folder / f"out_{clips}x{frames}_cli"
        wall = sum(_timed(["animate", "--image", str(folder / "portrait.png"), "--motion",
                           str(folder / f"motion_{frames}.safetensors"), "--out", str(out / f"clip{i}.mp4"),
                           "--crop", "box", "--box", *BOX.split(), *common]) for i in range(clips))
        rows.append(dict(clips=clips, frames=frames, how="animate per clip", workers=1, wall=wall, loading=None))
    return rows


def _child_fixed_costs(root: Path) -> dict:
    """In a fresh process: what every `animate` call pays before its first frame, start-up and model loading."""
    start = time.perf_counter()
    import torch  # noqa: F401

    from joyvasa import cli  # noqa: F401
    from joyvasa.renderer import load_renderer
    from joyvasa.weights import WeightsLocation

    imported = time.perf_counter()
    load_renderer("human", location=WeightsLocation(explicit_dir=root))
    return {"imports": imported - start, "loading": time.perf_counter() - imported}


def fixed_costs(root: Path, repeats: int = 3) -> dict:
    """The median over `repeats` fresh processes of the imports and the renderer's loading, and of the start of
    the Python interpreter itself (the whole process minus both)."""
    rows = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "benchmarks.batch", "--child-fixed-costs", str(root)],
                              cwd=REPO, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["process"] = time.perf_counter() - start
        rows.append(row)
    return {key: sorted(r[key] for r in rows)[len(rows) // 2] for key in rows[0]}


def print_table(rows: list[dict]) -> None:
    print("| clips x frames | how | workers | wall (s) | clips/hour | s/clip | model loading/clip (s) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        loading = "" if r["loading"] is None else f"{r['loading']:.2f}"
        print(f"| {r['clips']} x {r['frames']} | {r['how']} | {r['workers']} | {r['wall']:.1f} | "
              f"{r['clips'] * 3600 / r['wall']:.0f} | {r['wall'] / r['clips']:.1f} | {loading} |")
    for clips, frames in dict.fromkeys((r["clips"], r["frames"]) for r in rows):
        same = {r["how"] + str(r["workers"]): r for r in rows if (r["clips"], r["frames"]) == (clips, frames)}
        batch, cli = same.get("batch --engine local1"), same.get("animate per clip1")
        if batch and cli:
            print(f"{clips} x {frames} frames: one batch worker against separate animate calls: "
                  f"{cli['wall'] / clips:.1f} -> {batch['wall'] / clips:.1f} s per clip")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short-clips", type=int, default=8, help="clips of 1 frame (0: none)")
    parser.add_argument("--long-clips", type=int, default=2, help="clips of --long-frames frames (0: none)")
    parser.add_argument("--long-frames", type=int, default=8)
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="leave out --engine ray")
    parser.add_argument("--no-cli", dest="cli", action="store_false", help="leave out the separate animate calls")
    parser.add_argument("--child-fixed-costs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_fixed_costs is not None:
        print(json.dumps(_child_fixed_costs(args.child_fixed_costs)))
        return 0
    if args.ray:
        from joyvasa.batch.ray_engine import check_ray_installed

        check_ray_installed()
    sizes = [(n, f) for n, f in ((args.short_clips, 1), (args.long_clips, args.long_frames)) if n > 0]
    with tempfile.TemporaryDirectory(prefix="joyvasa-bench-batch-") as tmp:
        root, folder = Path(tmp) / "weights", Path(tmp)
        _scene(root, folder, {frames for _, frames in sizes})
        rows = [row for clips, frames in sizes for row in measure(root, folder, clips, frames, args.ray, args.cli)]
        fixed = fixed_costs(root)
    print_table(rows)
    print(f"every separate animate call pays {fixed['process']:.1f} s before its first frame (median of 3 fresh "
          f"processes): {fixed['imports']:.1f} s of imports (torch, joyvasa), {fixed['loading']:.1f} s loading the "
          f"renderer, the rest starting Python; a batch worker pays it once, so each clip after a worker's first "
          f"saves about {fixed['process']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
