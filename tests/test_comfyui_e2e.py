"""Opt-in: a real ComfyUI server loads the pack and runs every workflow in workflows/ (stand-in weights).

Runs only when COMFYUI_DIR names a ComfyUI source tree (see ../shared/spec/comfyui-e2e.md); run pytest with
the Python of a venv that holds ComfyUI's requirements and the pack's. Skipped otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave
from pathlib import Path

import numpy as np
import pytest

from tools.workflow_tools import schemas_from_object_info, to_api_prompt, validate

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = [pytest.mark.comfyui, pytest.mark.skipif(
    not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").is_file(),
    reason="set COMFYUI_DIR to a ComfyUI source tree to run the real-server tests")]

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
PACK = "joyvasa-nodes"
IMAGE_HW = (512, 512)  # the size of examples/astronaut.png, which the workflows load
FACE_BOX = (176.0, 70.0, 276.0, 190.0)
SPEECH_SECONDS = 0.1
VIDEO_FRAMES, VIDEO_FPS = 25, 25  # the synthetic driving / dubbed video: 1 s, the face still at FACE_BOX


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url: str, payload: dict):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _get_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _write_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    samples = (0.2 * np.sin(np.arange(int(seconds * rate)) * 0.05) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(samples.tobytes())


def _write_face_video(folder: Path, face) -> None:
    """The video the video workflows load: the stand-in face where the stand-in detector reports it, with sound."""
    import torch

    from joyvasa.testing.videos import write_face_video
    from tools.build_workflows import DRIVING_VIDEO

    rate = 16000
    sound = 0.2 * torch.sin(torch.arange(VIDEO_FRAMES * rate // VIDEO_FPS) * 0.05)[None]
    write_face_video(folder / DRIVING_VIDEO, VIDEO_FRAMES, VIDEO_FPS, IMAGE_HW, lambda i: face.box, audio=(sound, rate))


@pytest.fixture(scope="module")
def server(kit, standin_weights, tmp_path_factory):
    import cv2

    from joyvasa.testing import onnx_standins
    from joyvasa.weights import renderer_files

    e2e = tmp_path_factory.mktemp("comfy_e2e")
    root = standin_weights([*renderer_files("human").values(), *renderer_files("animal").values(),
                            "JoyVASA/motion_generator/motion_generator_hubert_chinese.pt",
                            "JoyVASA/motion_template/motion_template.pkl", "liveportrait_animals/xpose.pth"])
    face = onnx_standins.StandinFace(box=FACE_BOX)
    onnx_standins.build_weights(root, [face], IMAGE_HW)
    (e2e / "custom_nodes").mkdir()
    (e2e / "custom_nodes" / PACK).symlink_to(REPO)
    for sub in ("input", "output"):
        (e2e / sub).mkdir()
    cv2.imwrite(str(e2e / "input" / "astronaut.png"),
                cv2.cvtColor(onnx_standins.warm_image(IMAGE_HW, [face]), cv2.COLOR_RGB2BGR))
    shutil.copy(REPO / "examples" / "cat.png", e2e / "input" / "cat.png")
    _write_wav(e2e / "input" / "speech_en.wav", SPEECH_SECONDS)
    _write_face_video(e2e / "input", face)
    folders = {"liveportrait": "liveportrait", "liveportrait_animals": "liveportrait_animals", "joyvasa": "JoyVASA",
               "insightface": "insightface"}
    yaml = "joyvasa_e2e:\n" + f"  custom_nodes: {e2e / 'custom_nodes'}\n" + "".join(
        f"  {name}: {root / sub}\n" for name, sub in folders.items())
    (e2e / "extra_model_paths.yaml").write_text(yaml)

    port = _free_port()
    log = open(e2e / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, str(Path(COMFYUI_DIR) / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
         "--extra-model-paths-config", str(e2e / "extra_model_paths.yaml"), "--output-directory", str(e2e / "output"),
         "--input-directory", str(e2e / "input"), "--disable-auto-launch"],
        stdout=log, stderr=subprocess.STDOUT, cwd=COMFYUI_DIR)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if process.poll() is not None:
                pytest.fail("ComfyUI exited:\n" + (e2e / "server.log").read_text()[-3000:])
            try:
                info = _get(f"{url}/object_info")
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("ComfyUI did not answer /object_info in 120 s")
                time.sleep(1)
        yield {"url": url, "info": info, "dir": e2e}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_pack_loads(server):
    from tests.pack import PACK

    nodes = PACK.nodes

    assert set(nodes.NODE_CLASS_MAPPINGS) <= set(server["info"]), "the pack's nodes are not all registered"
    assert "IMPORT FAILED" not in (server["dir"] / "server.log").read_text()
    for node_id in nodes.NODE_CLASS_MAPPINGS:
        assert server["info"][node_id]["category"] == "JoyVASA"


def _run(server, prompt: dict, timeout: float = 900) -> dict:
    status, answer = _post(f"{server['url']}/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
    assert status == 200, answer
    prompt_id = answer["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = _get(f"{server['url']}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            return history[prompt_id]
        time.sleep(2)
    pytest.fail(f"prompt {prompt_id} did not finish in {timeout} s")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs(server, path):
    import av

    schemas = schemas_from_object_info(server["info"])
    workflow = json.loads(path.read_text())
    errors = validate(workflow, schemas)
    assert not errors, "\n".join(errors)
    result = _run(server, to_api_prompt(workflow, schemas))
    status = result["status"]
    assert status["status_str"] == "success", json.dumps(status["messages"])[-3000:]
    videos = [item for out in result["outputs"].values() for item in out.get("images", [])
              if item.get("type") == "output" and item["filename"].endswith(".mp4")]
    assert videos, result["outputs"]
    item = videos[0]
    video = server["dir"] / "output" / item["subfolder"] / item["filename"]
    assert video.is_file(), f"SaveVideo reported {item}; output folder: {sorted(server['dir'].rglob('*.mp4'))}"
    with av.open(str(video)) as container:
        streams = {s.type: s for s in container.streams}
        v = streams["video"].codec_context
        assert v.width % 2 == 0 and v.height % 2 == 0
        assert streams["video"].frames == (int(SPEECH_SECONDS * 16000) + 1920) // 640
        assert "audio" in streams
    _check_motion_previews(server, workflow, result)
    _check_video_nodes(server, workflow, result)
    _check_saved_motions(server, workflow, frames=(int(SPEECH_SECONDS * 16000) + 1920) // 640)


def _check_motion_previews(server, workflow: dict, result: dict) -> None:
    """Every Preview Image fed by a Motion Preview showed a plot as wide as the Motion Preview's width widget."""
    import cv2

    by_id = {n["id"]: n for n in workflow["nodes"]}
    for _, src, _, dst, _, _ in workflow["links"]:
        if by_id[src]["type"] != "JoyVASAMotionPreview" or by_id[dst]["type"] != "PreviewImage":
            continue
        images = result["outputs"].get(str(dst), {}).get("images", [])
        assert len(images) == 1, f"Preview Image {dst} showed {images}"
        query = urllib.parse.urlencode({k: images[0][k] for k in ("filename", "subfolder", "type")})
        plot = cv2.imdecode(np.frombuffer(_get_bytes(f"{server['url']}/view?{query}"), np.uint8), cv2.IMREAD_COLOR)
        assert plot is not None and plot.shape[1] == by_id[src]["widgets_values"][0], images[0]
        assert plot.std() > 10, "the motion preview is a blank picture"


def _check_video_nodes(server, workflow: dict, result: dict) -> None:
    """Dub Video kept the video's size and frame rate and its VIDEO output reached Save Video intact; Motion from
    Video's crop preview was shown."""
    import av

    def frames_of(item: dict) -> tuple:
        with av.open(str(server["dir"] / "output" / item["subfolder"] / item["filename"])) as container:
            stream = container.streams.video[0]
            return stream.frames, stream.average_rate, (stream.codec_context.height, stream.codec_context.width)

    by_id = {n["id"]: n for n in workflow["nodes"]}
    for _, src, _, dst, _, kind in workflow["links"]:
        node, target = by_id[src], by_id[dst]
        shown = result["outputs"].get(str(dst), {}).get("images", [])
        if node["type"] == "JoyVASADubVideo" and kind == "VIDEO":
            (own,) = result["outputs"][str(src)]["images"]
            frames, rate, size = frames_of(own)
            assert rate == VIDEO_FPS and size == IMAGE_HW, (own, rate, size)
            assert target["type"] == "SaveVideo" and len(shown) == 1 and frames_of(shown[0]) == (frames, rate, size)
        if node["type"] == "JoyVASAMotionFromVideo" and kind == "IMAGE" and target["type"] == "PreviewImage":
            assert len(shown) == 4, f"the crop preview showed {shown}"


def _check_saved_motions(server, workflow: dict, frames: int) -> None:
    """Every Save Motion node wrote a motion file of the rendered length that reads back."""
    from joyvasa.direct.motion_file import read_motion_file

    for node in workflow["nodes"]:
        if node["type"] != "JoyVASASaveMotion":
            continue
        prefix, fmt = node["widgets_values"][:2]
        written = sorted((server["dir"] / "output").glob(f"{prefix}_*_.{fmt}"))
        assert written, f"Save Motion wrote no {prefix}_*_.{fmt} in {server['dir'] / 'output'}"
        motion, info = read_motion_file(written[-1])
        assert len(motion) == frames and info["fps"] == 25


def test_bad_widget_value_is_rejected_before_running(server):
    schemas = schemas_from_object_info(server["info"])
    prompt = to_api_prompt(json.loads(WORKFLOWS[0].read_text()), schemas)
    loader = next(k for k, v in prompt.items() if v["class_type"] == "JoyVASALoadRenderer")
    prompt[loader]["inputs"]["species"] = "robot"
    status, answer = _post(f"{server['url']}/prompt", {"prompt": prompt})
    assert status == 400 and loader in answer.get("node_errors", {})
