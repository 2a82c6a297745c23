"""Write the example workflows in `workflows/` (UI format, as the ComfyUI frontend saves them) and their
`.jpg` thumbnails. Run from the repository root:  .venv/bin/python -m tools.build_workflows

Widget values follow each node's INPUT_TYPES order (tools/workflow_tools.py checks them).
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np

from tools.workflow_tools import all_schemas

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "workflows"
# The frontend requires a UUID as a workflow's top-level "id" (its zod schema rejects anything else);
# uuid5 of the workflow's name keeps it the same on every rebuild.
WORKFLOW_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/joyvasa/joyvasa-nodes/workflows")


def workflow_id(name: str) -> str:
    return str(uuid.uuid5(WORKFLOW_ID_NAMESPACE, name))


class Graph:
    def __init__(self):
        self.schemas = all_schemas()
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def node(self, node_type: str, pos, widgets: dict | None = None, size=(320, 200)) -> dict:
        schema = self.schemas[node_type]
        widgets = widgets or {}
        values = []
        for name, spec in schema.widgets:
            if spec == "control":
                values.append("fixed")
            elif spec == "ui":
                values.append("image" if name == "upload" and node_type == "LoadImage" else None)
            elif name in widgets:
                values.append(widgets[name])
            else:
                values.append(spec[1].get("default", spec[0][0] if isinstance(spec[0], list) else None))
        unknown = set(widgets) - set(schema.widget_names())
        assert not unknown, f"{node_type}: no widgets {unknown}"
        node = {
            "id": len(self.nodes) + 1, "type": node_type, "pos": list(pos), "size": list(size), "flags": {},
            "order": len(self.nodes), "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in schema.inputs.items()],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(schema.outputs)],
            "properties": {"Node name for S&R": node_type}, "widgets_values": values,
        }
        self.nodes.append(node)
        return node

    def link(self, src: dict, output: str, dst: dict, input_name: str) -> None:
        slot = [o["name"] for o in src["outputs"]].index(output)
        dst_slot = [i["name"] for i in dst["inputs"]].index(input_name)
        kind = src["outputs"][slot]["type"]
        link_id = len(self.links) + 1
        self.links.append([link_id, src["id"], slot, dst["id"], dst_slot, kind])
        src["outputs"][slot]["links"].append(link_id)
        dst["inputs"][dst_slot]["link"] = link_id

    def save(self, name: str, title: str, note: str) -> dict:
        workflow = {
            "id": workflow_id(name), "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}, "joyvasa": {"title": title, "note": note}},
            "version": 0.4,
        }
        (OUT / f"{name}.json").write_text(json.dumps(workflow, indent=1) + "\n")
        return workflow


def video_out(g: Graph, frames_node: dict, x: int) -> None:
    create = g.node("CreateVideo", (x, 80), {"fps": 25.0}, size=(260, 80))
    g.link(frames_node, "frames", create, "images")
    g.link(frames_node, "audio", create, "audio")
    save = g.node("SaveVideo", (x, 260), {"filename_prefix": "video/JoyVASA", "format": "mp4", "codec": "h264"},
                  size=(300, 300))
    g.link(create, "VIDEO", save, "video")


def human_all_in_one() -> None:
    g = Graph()
    image = g.node("LoadImage", (0, 0), {"image": "astronaut.png"}, size=(300, 320))
    audio = g.node("LoadAudio", (0, 360), {"audio": "speech_en.wav"}, size=(300, 140))
    renderer = g.node("JoyVASALoadRenderer", (340, 0), {"species": "human"})
    motion = g.node("JoyVASALoadMotionGenerator", (340, 220))
    detector = g.node("JoyVASALoadFaceDetector", (340, 360))
    animate = g.node("JoyVASAAnimate", (700, 0), {"crop": "auto", "paste_back": True}, size=(340, 300))
    g.link(renderer, "renderer", animate, "renderer")
    g.link(motion, "motion_model", animate, "motion_model")
    g.link(image, "IMAGE", animate, "image")
    g.link(audio, "AUDIO", animate, "audio")
    g.link(detector, "face_detector", animate, "face_detector")
    video_out(g, animate, 1080)
    g.save("joyvasa_human_talking_portrait", "Talking portrait (human)",
           "Face found automatically, animated crop pasted back into the full picture, saved as mp4.")


def every_stage(species: str) -> None:
    g = Graph()
    human = species == "human"
    image = g.node("LoadImage", (0, 0), {"image": "astronaut.png" if human else "cat.png"}, size=(300, 320))
    audio = g.node("LoadAudio", (0, 360), {"audio": "speech_en.wav"}, size=(300, 140))
    renderer = g.node("JoyVASALoadRenderer", (340, 0), {"species": species})
    motion_model = g.node("JoyVASALoadMotionGenerator", (340, 220))
    prepare = g.node("JoyVASAPrepareSource", (700, 0), {"crop": "auto"}, size=(340, 380))
    # the face is found automatically: InsightFace for people, X-Pose for animals (0 = its best candidate)
    detector = g.node("JoyVASALoadFaceDetector", (340, 360), {} if human else {
        "detector": "x-pose (animal)", "det_thresh": 0.0})
    g.link(detector, "face_detector", prepare, "face_detector")
    g.link(renderer, "renderer", prepare, "renderer")
    g.link(image, "IMAGE", prepare, "image")
    encode = g.node("JoyVASAEncodeAudio", (700, 420), size=(300, 80))
    g.link(motion_model, "motion_model", encode, "motion_model")
    g.link(audio, "AUDIO", encode, "audio")
    sample = g.node("JoyVASASampleMotion", (700, 540), size=(320, 240))
    g.link(motion_model, "motion_model", sample, "motion_model")
    g.link(encode, "speech", sample, "speech")
    render = g.node("JoyVASARender", (1080, 0), size=(340, 360))
    g.link(renderer, "renderer", render, "renderer")
    g.link(prepare, "source", render, "source")
    g.link(sample, "motion", render, "motion")
    preview = g.node("PreviewImage", (1080, 420), size=(300, 300))
    g.link(prepare, "crop_preview", preview, "images")
    video_out(g, render, 1460)
    if human:
        g.save("joyvasa_every_stage", "Every stage as its own node (human)",
               "Load models, prepare the source, encode the speech, sample motion, render, save: every option "
               "of JoyVASA is on one of these nodes.")
    else:
        g.save("joyvasa_animal_talking_portrait", "Talking portrait (animal)",
               "The cat/dog renderer; X-Pose finds the animal's face (no box to draw), the same speech-driven "
               "motion as for people, pasted back into the full picture.")


def thumbnail(name: str, title: str, picture: str) -> None:
    image = cv2.imread(str(ROOT / "examples" / picture))
    h, w = image.shape[:2]
    side = min(h, w)
    square = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    canvas = np.full((300, 400, 3), 32, np.uint8)
    canvas[20:280, 20:280] = cv2.resize(square, (260, 260), interpolation=cv2.INTER_AREA)
    for i, word in enumerate(title.split()):
        cv2.putText(canvas, word, (290, 60 + 34 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.62, (235, 235, 235), 1,
                    cv2.LINE_AA)
    cv2.putText(canvas, "JoyVASA", (290, 270), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (90, 190, 255), 2, cv2.LINE_AA)
    cv2.imwrite(str(OUT / f"{name}.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 88])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    human_all_in_one()
    every_stage("human")
    every_stage("animal")
    thumbnail("joyvasa_human_talking_portrait", "Talking portrait human", "astronaut.png")
    thumbnail("joyvasa_every_stage", "Every stage own node", "astronaut.png")
    thumbnail("joyvasa_animal_talking_portrait", "Talking portrait animal", "cat.png")


if __name__ == "__main__":
    main()
