"""Stand-in ONNX files for the three face models, with the official input and output signatures.

The official det_10g.onnx, 2d106det.onnx and landmark.onnx cannot be downloaded in CI, so tests write
small graphs with the same inputs and outputs whose results put faces at known places. The real insightface,
onnxruntime and crop code then runs on them.

The graphs ignore the picture except for one check: their outputs are multiplied by 1 when the network
input's first channel is brighter on average than its third, else by 0. With the warm (red > blue) test
images this makes them find nothing when they are given the wrong channel order, which tests the BGR/RGB
handling around them.

Geometry. A face is given by its detector box; its landmarks are fixed layouts in *face units*: (x, y) relative
to the box centre, divided by the box's longer side. Because every step (2d106det's box crop, the 224 crop
of the 203-point model) is a similarity built from the box or from landmarks, constant network outputs
reproduce the same face-unit layout for every box:

* 2d106det outputs v = layout_106 * 4/3 (its crop is 1.5 x the box side over 192 pixels, coordinates
  (v + 1) * 96), so the 106 points land at ``centre + layout_106 * side``;
* landmark.onnx outputs the 203 layout expressed in the 224 crop that LivePortrait builds from the 106
  layout (upright face: bounding box of the points, side x 1.5, moved up by 0.1 x side), so the 203 points
  land at ``centre + layout_203 * side``;
* det_10g's outputs are computed for one image size (det_size 512 is fixed): the box goes into the 512
  canvas with insightface's letterbox scale and is coded at the stride-8 anchor nearest its centre.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # loadable by onnxruntime >= 1.14

DET_10G = "insightface/models/buffalo_l/det_10g.onnx"
LANDMARK_106 = "insightface/models/buffalo_l/2d106det.onnx"
LANDMARK_203 = "liveportrait/landmark.onnx"

STRIDES = (8, 16, 32)
NUM_ANCHORS = 2


# --------------------------------------------------------------------------- landmark layouts (face units)

def _ring(cx, cy, rx, ry, n, start=math.pi):
    """n points on an ellipse, counter-clockwise on screen from angle ``start`` (pi = leftmost point)."""
    t = start + 2 * math.pi * np.arange(n) / n
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(x0, y0, x1, y1, n, bulge=0.0):
    """n points from (x0, y0) to (x1, y1), bowed upwards by ``bulge`` in the middle."""
    t = np.linspace(0, 1, n)
    return np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t - bulge * np.sin(math.pi * t)], axis=1)


EYE_Y, LIP_Y, EYE_DX = -0.10, 0.25, 0.18


def layout_106() -> np.ndarray:
    """InsightFace 2d106det order: 0-32 jaw, 33-42 / 87-96 eyes, 43-51 / 97-105 brows, 52-71 mouth (corners 52
    and 61), 72-86 nose. Left-right symmetric, so the face is upright for the crop."""
    p = np.zeros((106, 2))
    t = np.linspace(math.pi, 0, 33)  # jaw from the left temple over the chin to the right temple
    p[0:33] = np.stack([0.45 * np.cos(t), EYE_Y + 0.60 * np.sin(t)], axis=1)
    p[33:43] = _ring(-EYE_DX, EYE_Y, 0.08, 0.03, 10)
    p[87:97] = p[33:43] * [-1, 1]
    p[43:52] = _line(-0.32, -0.20, -0.06, -0.20, 9, bulge=0.03)
    p[97:106] = p[43:52] * [-1, 1]
    p[52] = (-0.15, LIP_Y)
    p[53:61] = _line(-0.11, LIP_Y - 0.03, 0.11, LIP_Y - 0.03, 8)
    p[61] = (0.15, LIP_Y)
    p[62:72] = _line(0.12, LIP_Y + 0.04, -0.12, LIP_Y + 0.04, 10)
    p[72:78] = _line(0.0, -0.08, 0.0, 0.10, 6)
    p[78:87] = _line(-0.07, 0.12, 0.07, 0.12, 9, bulge=-0.02)
    return p


def layout_203() -> np.ndarray:
    """LivePortrait landmark.onnx order as the crop and the eye / lip ratios read it: eyes 0-23 and 24-47
    (corners 0, 12 / 24, 36; lids 6, 18 / 30, 42), outer lip 48-83 (corners 48 and 66), inner lip 84-107
    (90 upper, 102 lower); then brows, nose and jaw. Eye openness 0.25, lip openness 0.1."""
    p = np.zeros((203, 2))
    p[0:24] = _ring(-EYE_DX, EYE_Y, 0.08, 0.02, 24)  # k = 6 is the top of the ring on screen
    p[24:48] = _ring(EYE_DX, EYE_Y, 0.08, 0.02, 24)
    p[48:84] = _ring(0.0, LIP_Y, 0.15, 0.05, 36)
    p[84:108] = _ring(0.0, LIP_Y, 0.10, 0.015, 24)
    p[108:124] = _line(-0.32, -0.20, -0.06, -0.20, 16, bulge=0.03)
    p[124:140] = p[108:124] * [-1, 1]
    p[140:161] = _line(0.0, -0.08, 0.0, 0.12, 21)
    t = np.linspace(math.pi, 0, 42)
    p[161:203] = np.stack([0.45 * np.cos(t), EYE_Y + 0.60 * np.sin(t)], axis=1)
    return p


def layout_kps5() -> np.ndarray:
    """SCRFD's 5 keypoints: the two eye centres, nose tip, the two mouth corners."""
    return np.array([(-EYE_DX, EYE_Y), (EYE_DX, EYE_Y), (0.0, 0.10), (-0.15, LIP_Y), (0.15, LIP_Y)])


def box_centre_side(box) -> tuple[np.ndarray, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2]), max(x2 - x1, y2 - y1)


def expected_landmarks(box, layout: np.ndarray) -> np.ndarray:
    """Where the stand-ins put a layout for a face detected at ``box``: centre + layout * side."""
    centre, side = box_centre_side(box)
    return centre + layout * side


def crop_224_of_106() -> tuple[np.ndarray, float]:
    """LivePortrait's 224 crop of the (upright) 106 layout, worked out by hand: (centre, side) in face units.

    The points' bounding box, made square and scaled by 1.5, moved up by 0.1 x its side."""
    p = layout_106()
    lo, hi = p.min(axis=0), p.max(axis=0)
    side = 1.5 * float(np.max(hi - lo))
    centre = (lo + hi) / 2 + np.array([0.0, -0.1 * side])
    return centre, side


# --------------------------------------------------------------------------- graph building

@dataclass(frozen=True)
class StandinFace:
    """A face the stand-in detector reports: box (x1, y1, x2, y2) in source-image pixels and its score."""

    box: tuple[float, float, float, float]
    score: float = 0.9


def _gate_nodes(input_name: str) -> list:
    """Nodes computing 'gate' = 1.0 if mean(channel 0) > mean(channel 2) of the NCHW input, else 0.0."""
    return [
        helper.make_node("ReduceMean", [input_name], ["gate_means"], name="gate_reduce", axes=[0, 2, 3],
                         keepdims=0),
        helper.make_node("Gather", ["gate_means", "gate_idx0"], ["gate_c0"], name="gate_c0", axis=0),
        helper.make_node("Gather", ["gate_means", "gate_idx2"], ["gate_c2"], name="gate_c2", axis=0),
        helper.make_node("Greater", ["gate_c0", "gate_c2"], ["gate_bool"], name="gate_cmp"),
        helper.make_node("Cast", ["gate_bool"], ["gate"], name="gate_cast", to=TensorProto.FLOAT),
    ]


def _gated_model(input_name: str, input_shape, outputs: list[tuple[str, np.ndarray]]) -> onnx.ModelProto:
    """A graph whose outputs are the given constant arrays times the colour gate."""
    nodes = _gate_nodes(input_name)
    inits = [numpy_helper.from_array(np.array(0, np.int64), "gate_idx0"),
             numpy_helper.from_array(np.array(2, np.int64), "gate_idx2")]
    graph_outputs = []
    for name, value in outputs:
        value = np.ascontiguousarray(value, dtype=np.float32)
        inits.append(numpy_helper.from_array(value, f"{name}_value"))
        # node names must not start with "Sub"/"Mul": insightface reads them to pick the input normalisation
        nodes.append(helper.make_node("Mul", [f"{name}_value", "gate"], [name], name=f"standin_{name}"))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "standin", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                                                input_shape)],
                              graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def det_scale(image_hw, det_size: int = 512) -> float:
    """insightface SCRFD's letterbox factor: the image is resized to fit det_size x det_size, top-left."""
    h, w = image_hw
    if h / w > 1.0:
        new_h = det_size
    else:
        new_h = int(det_size * (h / w))
    return new_h / h


def scrfd_outputs(faces, image_hw, det_size: int = 512) -> list[tuple[str, np.ndarray]]:
    """det_10g's 9 outputs for one image size: scores, boxes, keypoints for strides 8, 16, 32 (in that
    order), each (locations x 2 anchors, 1 / 4 / 10), distances in stride units."""
    scale = det_scale(image_hw, det_size)
    per_stride = {}
    for stride in STRIDES:
        n = (det_size // stride) ** 2 * NUM_ANCHORS
        per_stride[stride] = (np.zeros((n, 1)), np.zeros((n, 4)), np.zeros((n, 10)))
    grid = det_size // 8
    for face in faces:
        x1, y1, x2, y2 = (v * scale for v in face.box)
        col = min(max(round((x1 + x2) / 16), 0), grid - 1)  # stride-8 anchor nearest the box centre
        row = min(max(round((y1 + y2) / 16), 0), grid - 1)
        ax, ay = col * 8.0, row * 8.0
        i = (row * grid + col) * NUM_ANCHORS
        scores, boxes, kps = per_stride[8]
        if scores[i, 0] > 0:
            raise ValueError("two stand-in faces share a stride-8 anchor; move them apart")
        scores[i, 0] = face.score
        boxes[i] = np.array([ax - x1, ay - y1, x2 - ax, y2 - ay]) / 8
        centre, side = box_centre_side(face.box)
        pts = (centre + layout_kps5() * side) * scale
        kps[i] = ((pts - [ax, ay]) / 8).reshape(-1)
    outs = []
    for k, kind in enumerate(("score", "bbox", "kps")):
        for stride in STRIDES:
            outs.append((f"{kind}_{stride}", per_stride[stride][k]))
    return outs


def build_det_10g(path, faces, image_hw, det_size: int = 512) -> Path:
    """SCRFD det_10g stand-in: input 'input.1' (1, 3, ?, ?), 9 outputs; reports ``faces`` (StandinFace list,
    empty for a detector that finds nothing) for images of size ``image_hw`` = (H, W)."""
    model = _gated_model("input.1", [1, 3, "?", "?"], scrfd_outputs(faces, image_hw, det_size))
    return _save(model, path)


def build_2d106det(path) -> Path:
    """2d106det stand-in: input 'data' (1, 3, 192, 192), output 'fc1' (1, 212) in [-1, 1] crop units."""
    v = layout_106() * (4.0 / 3.0)
    return _save(_gated_model("data", [1, 3, 192, 192], [("fc1", v.reshape(1, 212))]), path)


def build_landmark_203(path) -> Path:
    """landmark.onnx stand-in: input 'input' (1, 3, 224, 224), three outputs, index 2 = (1, 406) in [0, 1]
    of the 224 crop that LivePortrait makes from the 106 points."""
    centre, side = crop_224_of_106()
    normalised = (layout_203() - centre) / side + 0.5
    outputs = [("pose", np.zeros((1, 3))), ("score", np.ones((1, 1))), ("landmarks", normalised.reshape(1, 406))]
    return _save(_gated_model("input", [1, 3, 224, 224], outputs), path)


def build_weights(root, faces, image_hw, det_size: int = 512) -> Path:
    """All three stand-ins under ``root`` in the official layout (a `pretrained_weights/`-like folder)."""
    root = Path(root)
    build_det_10g(root / DET_10G, faces, image_hw, det_size)
    build_2d106det(root / LANDMARK_106)
    build_landmark_203(root / LANDMARK_203)
    return root


def warm_image(image_hw, faces=(), background=(150, 120, 100), skin=(220, 170, 140)) -> np.ndarray:
    """An (H, W, 3) uint8 RGB test picture, warm (red > blue) so the stand-ins' colour gate opens, with a
    skin-coloured ellipse filling each face box."""
    import cv2

    h, w = image_hw
    image = np.empty((h, w, 3), np.uint8)
    image[:] = background
    for face in faces:
        centre, _ = box_centre_side(face.box)
        x1, y1, x2, y2 = face.box
        cv2.ellipse(image, (round(centre[0]), round(centre[1])), (round((x2 - x1) / 2), round((y2 - y1) / 2)),
                    0, 0, 360, skin, thickness=-1)
    return image


# --------------------------------------------------------------------------- a landmark model that follows the face

LANDMARK_203_SIZE = 224  # landmark.onnx input side
SKIN = (220, 170, 140)  # warm_image's default skin colour
SKIN_L1_TOLERANCE = 0.25  # |r - R| + |g - G| + |b - B| on the 0..1 scale; the background is 0.63 away


def build_tracking_landmark_203(path, skin=SKIN, tolerance: float = SKIN_L1_TOLERANCE) -> Path:
    """landmark.onnx stand-in that follows the face: same input and outputs as :func:`build_landmark_203`,
    but the 203 points are the standard layout moved so that the face centre lands on the centroid of the
    skin-coloured pixels of the 224 crop (pixels within ``tolerance``, L1 on the 0..1 scale, of ``skin``).

    So seeding it with the previous frame's points (video tracking) follows a face that moves, as the real
    model does; the size of the layout follows the crop, not the blob. With no skin pixel in the crop the
    layout is not moved; the colour gate (0 unless red > blue) still applies to the output."""
    centre, side = crop_224_of_106()
    normalised = (layout_203() - centre) / side + 0.5  # (203, 2) in [0, 1] of the crop
    face_centre = (np.zeros(2) - centre) / side + 0.5  # where the layout puts the box centre
    size = LANDMARK_203_SIZE
    f32 = np.float32
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "gate_idx0"),
        numpy_helper.from_array(np.array(2, np.int64), "gate_idx2"),
        numpy_helper.from_array((np.asarray(skin, f32) / 255).reshape(1, 3, 1, 1), "skin"),
        numpy_helper.from_array(np.array(tolerance, f32), "tolerance"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
        numpy_helper.from_array(np.arange(size, dtype=f32).reshape(1, 1, 1, size), "xs"),
        numpy_helper.from_array(np.arange(size, dtype=f32).reshape(1, 1, size, 1), "ys"),
        numpy_helper.from_array(np.array(1.0, f32), "one"),
        numpy_helper.from_array(np.array(size, f32), "crop_size"),
        numpy_helper.from_array((face_centre * size).astype(f32), "face_centre_px"),
        numpy_helper.from_array(normalised.astype(f32), "layout"),
        numpy_helper.from_array(np.array([1, 406], np.int64), "out_shape"),
        numpy_helper.from_array(np.zeros((1, 3), f32), "pose_value"),
        numpy_helper.from_array(np.ones((1, 1), f32), "score_value"),
    ]
    node = helper.make_node
    nodes = _gate_nodes("input") + [
        node("Sub", ["input", "skin"], ["skin_diff"], name="track_diff"),
        node("Abs", ["skin_diff"], ["skin_abs"], name="track_abs"),
        node("ReduceSum", ["skin_abs", "channel_axis"], ["skin_dist"], name="track_dist", keepdims=1),
        node("Less", ["skin_dist", "tolerance"], ["skin_bool"], name="track_less"),
        node("Cast", ["skin_bool"], ["mask"], name="track_mask", to=TensorProto.FLOAT),  # (1, 1, 224, 224)
        node("ReduceSum", ["mask"], ["mask_sum"], name="track_count", keepdims=0),
        node("Mul", ["mask", "xs"], ["mask_x"], name="track_mx"),
        node("Mul", ["mask", "ys"], ["mask_y"], name="track_my"),
        node("ReduceSum", ["mask_x"], ["sum_x"], name="track_sx", keepdims=0),
        node("ReduceSum", ["mask_y"], ["sum_y"], name="track_sy", keepdims=0),
        node("Max", ["mask_sum", "one"], ["denominator"], name="track_den"),
        node("Min", ["mask_sum", "one"], ["has_skin"], name="track_has"),
        node("Div", ["sum_x", "denominator"], ["centroid_x"], name="track_cx"),
        node("Div", ["sum_y", "denominator"], ["centroid_y"], name="track_cy"),
        node("Unsqueeze", ["centroid_x", "zero_axis"], ["centroid_x1"], name="track_ux"),
        node("Unsqueeze", ["centroid_y", "zero_axis"], ["centroid_y1"], name="track_uy"),
        node("Concat", ["centroid_x1", "centroid_y1"], ["centroid"], name="track_centroid", axis=0),  # (2,)
        node("Sub", ["centroid", "face_centre_px"], ["shift_px"], name="track_shift_px"),
        node("Mul", ["shift_px", "has_skin"], ["shift_kept"], name="track_shift_kept"),
        node("Div", ["shift_kept", "crop_size"], ["shift"], name="track_shift"),
        node("Add", ["layout", "shift"], ["moved"], name="track_moved"),  # (203, 2)
        node("Reshape", ["moved", "out_shape"], ["moved_flat"], name="track_flat"),
        node("Mul", ["moved_flat", "gate"], ["landmarks"], name="standin_landmarks"),
        node("Mul", ["pose_value", "gate"], ["pose"], name="standin_pose"),
        node("Mul", ["score_value", "gate"], ["score"], name="standin_score"),
    ]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero_axis"))
    outputs = [helper.make_tensor_value_info("pose", TensorProto.FLOAT, [1, 3]),
               helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1]),
               helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, [1, 406])]
    graph = helper.make_graph(nodes, "standin_tracking",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return _save(model, path)

