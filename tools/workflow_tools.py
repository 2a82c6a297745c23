"""UI-format workflows (as the ComfyUI frontend saves them): schemas, validation and conversion to API prompts.

Our nodes' schemas come from their INPUT_TYPES; the few core nodes the example workflows use are described in
CORE_NODES (from ComfyUI v0.3.64's `nodes.py`, `comfy_extras/nodes_audio.py` and `nodes_video.py`). A real
server's /object_info can replace both (the opt-in e2e test does).
"""
from __future__ import annotations

from dataclasses import dataclass, field

WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING"}
# The frontend gives an INT widget a "control after generate" companion when its spec says so, and (legacy
# convention) when the spec does not say and the input is named seed or noise_seed (useIntWidget).
LEGACY_SEED_NAMES = ("seed", "noise_seed")


def has_control_widget(name: str, kind, options: dict) -> bool:
    """Whether the frontend adds a control_after_generate widget after this input's widget."""
    if kind != "INT":
        return False
    flag = options.get("control_after_generate")
    return bool(flag) if flag is not None else name in LEGACY_SEED_NAMES
# frontend-only nodes (comments on the canvas): never sent to the server, so not validated or converted
FRONTEND_ONLY_NODES = {"Note", "MarkdownNote"}


@dataclass
class NodeSchema:
    inputs: dict[str, str] = field(default_factory=dict)  # socket inputs: name -> type
    widgets: list[tuple[str, object]] = field(default_factory=list)  # (name, spec) in frontend order
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    optional: set[str] = field(default_factory=set)

    def widget_names(self) -> list[str]:
        return [name for name, _ in self.widgets]


# name -> (kind, spec): kind "combo-file" accepts any file name, "control" is the frontend's extra seed widget,
# "ui" is a frontend-only widget whose saved value is ignored.
CORE_NODES = {
    "LoadImage": NodeSchema(widgets=[("image", "combo-file"), ("upload", "ui")],
                            outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "LoadAudio": NodeSchema(widgets=[("audio", "combo-file"), ("audioUI", "ui"), ("upload", "ui")],
                            outputs=[("AUDIO", "AUDIO")]),
    "LoadVideo": NodeSchema(widgets=[("file", "combo-file"), ("upload", "ui")], outputs=[("VIDEO", "VIDEO")]),
    "PreviewImage": NodeSchema(inputs={"images": "IMAGE"}),
    "CreateVideo": NodeSchema(inputs={"images": "IMAGE", "audio": "AUDIO"}, optional={"audio"},
                              widgets=[("fps", ("FLOAT", {"min": 1.0, "max": 120.0}))], outputs=[("VIDEO", "VIDEO")]),
    "SaveVideo": NodeSchema(inputs={"video": "VIDEO"},
                            widgets=[("filename_prefix", ("STRING", {})), ("format", (["auto", "mp4"], {})),
                                     ("codec", (["auto", "h264"], {}))]),
}


def schema_of(node_class) -> NodeSchema:
    """Schema of one of our V1 node classes, in the order the frontend lays out its widgets."""
    schema = NodeSchema()
    spec = node_class.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, (kind, options) in spec.get(section, {}).items():
            if section == "optional":
                schema.optional.add(name)
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                schema.widgets.append((name, (kind, options)))
                if has_control_widget(name, kind, options):
                    schema.widgets.append((f"{name}__control", "control"))
            else:
                schema.inputs[name] = kind
    schema.outputs = list(zip(node_class.RETURN_NAMES, node_class.RETURN_TYPES, strict=True))
    return schema


def all_schemas() -> dict[str, NodeSchema]:
    """Schemas of every node of this pack (imported as ComfyUI imports it) and of the core nodes we use."""
    from tools.pack import load_pack

    nodes = load_pack().nodes

    return {**CORE_NODES, **{k: schema_of(v) for k, v in nodes.NODE_CLASS_MAPPINGS.items()}}


def check_widget(node_type: str, name: str, spec, value) -> str | None:
    """An error message if `value` is not valid for the widget, else None."""
    if spec in ("ui", "control"):
        if spec == "control" and value not in ("fixed", "increment", "decrement", "randomize"):
            return f"{node_type}.{name}: control_after_generate value {value!r}"
        return None
    if spec == "combo-file":
        return None if isinstance(value, str) and value else f"{node_type}.{name}: needs a file name"
    kind, options = spec
    if isinstance(kind, list):
        return None if value in kind else f"{node_type}.{name}: {value!r} not in {kind}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{node_type}.{name}: {value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{node_type}.{name}: {value!r} is not a string"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "INT" and not isinstance(
                value, int)):
            return f"{node_type}.{name}: {value!r} is not {kind}"
        if "min" in options and value < options["min"] or "max" in options and value > options["max"]:
            return f"{node_type}.{name}: {value} outside [{options.get('min')}, {options.get('max')}]"
        return None
    return f"{node_type}.{name}: unknown widget kind {kind!r}"


def validate(workflow: dict, schemas: dict[str, NodeSchema]) -> list[str]:
    """Every problem of a UI workflow: unknown node types, bad widget values, broken or mistyped links."""
    errors = []
    by_id = {n["id"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY_NODES:
            if node.get("inputs") or node.get("outputs"):
                errors.append(f"{node['type']} (node {node['id']}): a note has no sockets")
            continue
        schema = schemas.get(node["type"])
        if schema is None:
            errors.append(f"node {node['id']}: unknown node type {node['type']!r}")
            continue
        values = node.get("widgets_values", [])
        if len(values) != len(schema.widgets):
            errors.append(f"{node['type']} (node {node['id']}): {len(values)} widget values, expected "
                          f"{len(schema.widgets)} ({schema.widget_names()})")
            continue
        for (name, spec), value in zip(schema.widgets, values, strict=True):
            problem = check_widget(node["type"], name, spec, value)
            if problem:
                errors.append(problem)
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for name in schema.inputs:
            if name not in linked and name not in schema.optional:
                errors.append(f"{node['type']} (node {node['id']}): required input {name!r} is not connected")
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        if src not in by_id or dst not in by_id:
            errors.append(f"link {link_id}: unknown node")
            continue
        src_schema, dst_node = schemas.get(by_id[src]["type"]), by_id[dst]
        dst_schema = schemas.get(dst_node["type"])
        if src_schema is None or dst_schema is None:
            continue
        out_type = src_schema.outputs[src_slot][1]
        in_name = dst_node["inputs"][dst_slot]["name"]
        in_type = dst_schema.inputs.get(in_name)
        if not (out_type == in_type == kind):
            errors.append(f"link {link_id}: {by_id[src]['type']} output {out_type} -> {dst_node['type']}.{in_name} "
                          f"({in_type}), link says {kind}")
    return errors


def to_api_prompt(workflow: dict, schemas: dict[str, NodeSchema]) -> dict:
    """UI workflow -> API prompt {id: {class_type, inputs}} (widget values by name, links as [id, slot])."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY_NODES:
            continue
        schema = schemas[node["type"]]
        inputs = {}
        for (name, spec), value in zip(schema.widgets, node.get("widgets_values", []), strict=True):
            if spec not in ("ui", "control"):
                inputs[name] = value
        for socket in node.get("inputs", []):
            if socket.get("link") is not None:
                _, src, src_slot, *_ = links[socket["link"]]
                inputs[socket["name"]] = [str(src), src_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def schemas_from_object_info(info: dict) -> dict[str, NodeSchema]:
    """Schemas of every node a running server knows, from its /object_info (widget order = input_order)."""
    schemas = {}
    for node_type, spec in info.items():
        schema = NodeSchema()
        order = spec.get("input_order", {})
        for section in ("required", "optional"):
            entries = spec.get("input", {}).get(section, {})
            for name in order.get(section, list(entries)):
                kind, options = (list(entries[name]) + [{}])[:2]
                options = options or {}
                if section == "optional":
                    schema.optional.add(name)
                if isinstance(kind, list) or kind in WIDGET_TYPES or kind == "COMBO":
                    if kind == "COMBO":
                        kind = options.get("options", [])
                    schema.widgets.append((name, "combo-file" if options.get("image_upload") or options.get(
                        "audio_upload") or options.get("video_upload") else (kind, options)))
                    if has_control_widget(name, kind, options):
                        schema.widgets.append((f"{name}__control", "control"))
                    if options.get("image_upload") or options.get("video_upload"):
                        schema.widgets.append(("upload", "ui"))
                    if options.get("audio_upload"):
                        schema.widgets += [("audioUI", "ui"), ("upload", "ui")]
                else:
                    schema.inputs[name] = kind
        names = spec.get("output_name") or spec.get("output", [])
        schema.outputs = list(zip(names, spec.get("output", []), strict=True))
        schemas[node_type] = schema
    return schemas
