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
        self.groups: list[dict] = []

    def node(self, node_type: str, pos, widgets: dict | None = None, size=(320, 200)) -> dict:
        schema = self.schemas[node_type]
        widgets = widgets or {}
        values = []
        for name, spec in schema.widgets:
            if spec == "control":
                values.append("fixed")
            elif spec == "ui":
                # the frontend saves "image" for the upload button of Load Image and Load Video alike
                values.append("image" if name == "upload" and node_type in ("LoadImage", "LoadVideo") else None)
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

    def note(self, pos, text: str, size=(300, 240)) -> dict:
        """A frontend-only Note node (yellow text box, as the frontend saves it); never sent to the server."""
        node = {"id": len(self.nodes) + 1, "type": "Note", "pos": list(pos), "size": list(size), "flags": {},
                "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [], "properties": {"text": ""},
                "widgets_values": [text], "color": "#432", "bgcolor": "#653"}
        self.nodes.append(node)
        return node

    def group(self, title: str, bounding, color: str = "#3f789e") -> None:
        """A titled box on the canvas; bounding = (x, y, width, height) and must include the nodes' title bars."""
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": list(bounding), "color": color,
                            "font_size": 24, "flags": {}})

    def link(self, src: dict, output: str, dst: dict, input_name: str) -> None:
        slot = [o["name"] for o in src["outputs"]].index(output)
        dst_slot = [i["name"] for i in dst["inputs"]].index(input_name)
        kind = src["outputs"][slot]["type"]
        link_id = len(self.links) + 1
        self.links.append([link_id, src["id"], slot, dst["id"], dst_slot, kind])
        src["outputs"][slot]["links"].append(link_id)
        dst["inputs"][dst_slot]["link"] = link_id

    def save(self, name: str, title: str, note: str, offset=(0, 0)) -> dict:
        """offset: the canvas view's pan when opened (e.g. to show group titles above y = 0)."""
        workflow = {
            "id": workflow_id(name), "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": self.nodes, "links": self.links, "groups": self.groups, "config": {},
            "extra": {"ds": {"scale": 0.8, "offset": list(offset)}, "joyvasa": {"title": title, "note": note}},
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


DIRECTED_NOTE = (
    "Directing the performance: the motion from Sample Motion passes through controls before Render, each "
    "MOTION -> MOTION and off at its neutral values, in this order:\n"
    "1. Head Motion: gains 0.5 = a calmer head (0 = still, 1 = as generated), offsets, keyframes, distance.\n"
    "2. Gaze: the eyes stay on the camera while the head turns.\n"
    "3. Blinks: natural blinks added (needs the source's landmarks: crop auto with the face detector).\n"
    "4. Mouth: lips eased closed in the pauses of the speech (renderer + source give the closed mouth).\n"
    "5. Fade: eases in from and out to the still source face.\n"
    "Motion Preview plots the directed motion over the generated one (faint): check it before rendering. "
    "Save Motion writes it to output/motion/ (reload it with Load Motion, e.g. as Sample Motion's head_track).")


def directed_performance() -> None:
    g = Graph()
    # column x positions, left to right: inputs, models, source + speech, head + gaze, blinks + mouth,
    # fade + checks, render, video
    image = g.node("LoadImage", (0, 0), {"image": "astronaut.png"}, size=(300, 320))
    audio = g.node("LoadAudio", (0, 360), {"audio": "speech_en.wav"}, size=(300, 140))
    renderer = g.node("JoyVASALoadRenderer", (340, 0), {"species": "human"})
    motion_model = g.node("JoyVASALoadMotionGenerator", (340, 220))
    detector = g.node("JoyVASALoadFaceDetector", (340, 360))
    prepare = g.node("JoyVASAPrepareSource", (700, 0), {"crop": "auto"}, size=(340, 380))
    g.link(detector, "face_detector", prepare, "face_detector")
    g.link(renderer, "renderer", prepare, "renderer")
    g.link(image, "IMAGE", prepare, "image")
    encode = g.node("JoyVASAEncodeAudio", (700, 420), size=(300, 80))
    g.link(motion_model, "motion_model", encode, "motion_model")
    g.link(audio, "AUDIO", encode, "audio")
    sample = g.node("JoyVASASampleMotion", (700, 540), size=(320, 260))
    g.link(motion_model, "motion_model", sample, "motion_model")
    g.link(encode, "speech", sample, "speech")

    head = g.node("JoyVASAHeadMotion", (1100, 0), {"pitch_gain": 0.5, "yaw_gain": 0.5, "roll_gain": 0.5},
                  size=(320, 440))
    g.link(sample, "motion", head, "motion")
    gaze = g.node("JoyVASAGaze", (1100, 500), {"target": "camera"}, size=(320, 180))
    g.link(head, "motion", gaze, "motion")
    blinks = g.node("JoyVASABlinks", (1460, 0), {"mode": "add"}, size=(320, 300))
    g.link(renderer, "renderer", blinks, "renderer")
    g.link(prepare, "source", blinks, "source")
    g.link(gaze, "motion", blinks, "motion")
    mouth = g.node("JoyVASAMouth", (1460, 360), {"close_silences": True}, size=(320, 320))
    g.link(blinks, "motion", mouth, "motion")
    g.link(renderer, "renderer", mouth, "renderer")
    g.link(prepare, "source", mouth, "source")
    fade = g.node("JoyVASAFade", (1460, 740), size=(320, 100))
    g.link(mouth, "motion", fade, "motion")

    motion_preview = g.node("JoyVASAMotionPreview", (1840, 0), size=(300, 200))
    g.link(fade, "motion", motion_preview, "motion")
    g.link(sample, "motion", motion_preview, "before")
    plot = g.node("PreviewImage", (1840, 260), size=(420, 340))
    g.link(motion_preview, "plot", plot, "images")
    save_motion = g.node("JoyVASASaveMotion", (1840, 660), size=(300, 140))
    g.link(fade, "motion", save_motion, "motion")

    render = g.node("JoyVASARender", (2320, 0), size=(340, 360))
    g.link(renderer, "renderer", render, "renderer")
    g.link(prepare, "source", render, "source")
    g.link(fade, "motion", render, "motion")
    video_out(g, render, 2700)
    g.note((0, 620), DIRECTED_NOTE, size=(660, 200))

    g.group("Models and inputs", (-20, -80, 700, 920), color="#444")
    g.group("Source, speech, generated motion", (680, -80, 380, 900), color="#444")
    g.group("Direct the performance", (1080, -80, 720, 940), color="#a1309b")
    g.group("Check before rendering", (1820, -80, 460, 900), color="#3f789e")
    g.group("Render and save", (2300, -80, 740, 680), color="#88a")
    g.save("joyvasa_directed_performance", "Directed performance (human)",
           "A calmer head, eyes on the camera, added blinks, lips closed in pauses and a fade in and out, with a "
           "Motion Preview of the directed motion over the generated one and the motion saved to a file.",
           offset=(40, 110))


DRIVING_VIDEO = "talking_face.mp4"  # the video the video workflows load from ComfyUI's input folder
DUB_NOTE = (
    "Dub a video: the face in every frame of the loaded video is re-rendered so its lips follow the new speech; "
    "everything else in the frame stays as it was.\n"
    "- regions: lips (default), expression (also eyes and brows), all (also the head).\n"
    "- audio_longer: what the video does when the speech lasts longer (pingpong = forward then backward, no "
    "jump cut). video_longer: trim it to the speech, or keep the rest with its own sound.\n"
    "The mp4 streams straight into output/video/ (memory stays flat however long the video); its VIDEO output "
    "feeds any core video node: here Save Video keeps a copy with this workflow embedded (drop it onto ComfyUI "
    "to reopen the workflow; remove Save Video if the Dub Video file is enough). Connect a MOTION (e.g. Sample "
    "Motion + the motion controls) to use it instead of sampling one.")
VIDEO_DRIVEN_NOTE = (
    "Video-driven portrait: the head movement comes from a driving video, the lips and the expression from the "
    "speech.\n"
    "- Motion from Video tracks the face of the video and reads its motion (25 fps); its crop preview shows "
    "what it reads.\n"
    "- Mix Motion keeps the speech motion (base: its audio, length and lips) and takes the head from the video "
    "(head_weight 1 = the video's head movement, 0.5 = halfway). Connect the video's motion to lips or face as "
    "well to copy its mouth or expression.\n"
    "A shorter video is looped (fit) to the speech's length.")


def dub_a_video() -> None:
    g = Graph()
    video = g.node("LoadVideo", (0, 0), {"file": DRIVING_VIDEO}, size=(300, 320))
    audio = g.node("LoadAudio", (0, 360), {"audio": "speech_en.wav"}, size=(300, 140))
    renderer = g.node("JoyVASALoadRenderer", (340, 0), {"species": "human"})
    motion_model = g.node("JoyVASALoadMotionGenerator", (340, 220))
    detector = g.node("JoyVASALoadFaceDetector", (340, 360))
    dub = g.node("JoyVASADubVideo", (700, 0), size=(360, 520))
    g.link(renderer, "renderer", dub, "renderer")
    g.link(motion_model, "motion_model", dub, "motion_model")
    g.link(detector, "face_detector", dub, "face_detector")
    g.link(video, "VIDEO", dub, "video")
    g.link(audio, "AUDIO", dub, "audio")
    save = g.node("SaveVideo", (1100, 0), {"filename_prefix": "video/JoyVASA_dub_workflow", "format": "mp4",
                                           "codec": "h264"}, size=(300, 300))
    g.link(dub, "video", save, "video")
    g.note((0, 560), DUB_NOTE, size=(660, 240))
    g.save("joyvasa_dub_a_video", "Dub a video (human)",
           "New speech on the face of a video: the lips of every frame follow the speech, the rest of the video is "
           "kept; written as mp4 straight into the output folder.")


def video_driven_portrait() -> None:
    g = Graph()
    image = g.node("LoadImage", (0, 0), {"image": "astronaut.png"}, size=(300, 320))
    video = g.node("LoadVideo", (0, 360), {"file": DRIVING_VIDEO}, size=(300, 320))
    audio = g.node("LoadAudio", (0, 720), {"audio": "speech_en.wav"}, size=(300, 140))
    renderer = g.node("JoyVASALoadRenderer", (340, 0), {"species": "human"})
    motion_model = g.node("JoyVASALoadMotionGenerator", (340, 220))
    detector = g.node("JoyVASALoadFaceDetector", (340, 360))
    prepare = g.node("JoyVASAPrepareSource", (700, 0), {"crop": "auto"}, size=(340, 380))
    g.link(renderer, "renderer", prepare, "renderer")
    g.link(image, "IMAGE", prepare, "image")
    g.link(detector, "face_detector", prepare, "face_detector")
    from_video = g.node("JoyVASAMotionFromVideo", (700, 440), {"crop": "auto"}, size=(340, 300))
    g.link(renderer, "renderer", from_video, "renderer")
    g.link(detector, "face_detector", from_video, "face_detector")
    g.link(video, "VIDEO", from_video, "video")
    encode = g.node("JoyVASAEncodeAudio", (700, 800), size=(300, 80))
    g.link(motion_model, "motion_model", encode, "motion_model")
    g.link(audio, "AUDIO", encode, "audio")
    sample = g.node("JoyVASASampleMotion", (700, 920), size=(320, 260))
    g.link(motion_model, "motion_model", sample, "motion_model")
    g.link(encode, "speech", sample, "speech")
    mix = g.node("JoyVASAMixMotion", (1100, 440), {"head_weight": 1.0, "fit": "loop"}, size=(320, 260))
    g.link(sample, "motion", mix, "base")
    g.link(from_video, "motion", mix, "head")
    crops = g.node("PreviewImage", (1100, 760), size=(320, 240))
    g.link(from_video, "crop_preview", crops, "images")
    render = g.node("JoyVASARender", (1480, 0), size=(340, 360))
    g.link(renderer, "renderer", render, "renderer")
    g.link(prepare, "source", render, "source")
    g.link(mix, "motion", render, "motion")
    video_out(g, render, 1860)
    g.note((1480, 440), VIDEO_DRIVEN_NOTE, size=(420, 300))
    g.save("joyvasa_video_driven_portrait", "Video-driven portrait (human)",
           "A portrait that speaks the audio with the head movement of a driving video: Motion from Video for the "
           "head, Sample Motion for lips and expression, combined by Mix Motion.")


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
    directed_performance()
    dub_a_video()
    video_driven_portrait()
    thumbnail("joyvasa_human_talking_portrait", "Talking portrait human", "astronaut.png")
    thumbnail("joyvasa_every_stage", "Every stage own node", "astronaut.png")
    thumbnail("joyvasa_animal_talking_portrait", "Talking portrait animal", "cat.png")
    thumbnail("joyvasa_directed_performance", "Directed head eyes mouth", "astronaut.png")
    thumbnail("joyvasa_dub_a_video", "Dub a video new speech", "astronaut.png")
    thumbnail("joyvasa_video_driven_portrait", "Head from a video", "astronaut.png")


if __name__ == "__main__":
    main()
