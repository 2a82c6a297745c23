"""The example workflows: UI format, existing node types, valid widget values and links, a thumbnail each, and
accepted by the ComfyUI frontend's own workflow schema (tests/frontend_schema.py)."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import cv2
import pytest

from tests.frontend_schema import Unavailable, validate_with_frontend
from tools.build_workflows import workflow_id
from tools.workflow_tools import all_schemas, to_api_prompt, validate

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))


def test_there_are_workflows():
    names = {p.stem for p in WORKFLOWS}
    assert {"joyvasa_human_talking_portrait", "joyvasa_every_stage", "joyvasa_animal_talking_portrait"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid(path):
    workflow = json.loads(path.read_text())
    assert "nodes" in workflow and "links" in workflow, "workflows/ must hold UI-format JSON, not API prompts"
    errors = validate(workflow, all_schemas())
    assert not errors, "\n".join(errors)
    prompt = to_api_prompt(workflow, all_schemas())
    assert any(n["class_type"] == "SaveVideo" for n in prompt.values())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_has_a_thumbnail(path):
    thumb = cv2.imread(str(path.with_suffix(".jpg")))
    assert thumb is not None and thumb.shape[0] >= 100 and thumb.shape[1] >= 100


def test_validation_catches_mistakes():
    workflow = json.loads(WORKFLOWS[0].read_text())
    node = next(n for n in workflow["nodes"] if n["type"].startswith("JoyVASA") and n["widgets_values"])
    node["widgets_values"][0] = "no-such-option"
    workflow["nodes"].append({"id": 999, "type": "NoSuchNode", "inputs": [], "outputs": [], "widgets_values": []})
    errors = validate(workflow, all_schemas())
    assert any("no-such-option" in e for e in errors) and any("NoSuchNode" in e for e in errors)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_id_is_a_stable_uuid(path):
    workflow_uuid = json.loads(path.read_text())["id"]
    assert str(uuid.UUID(workflow_uuid)) == workflow_uuid == workflow_id(path.stem)


@pytest.fixture(scope="module")
def frontend_verdicts(tmp_path_factory):
    """The frontend's validateComfyWorkflow() on every workflow, plus a control copy that it must reject."""
    control = tmp_path_factory.mktemp("frontend_schema") / "name_as_id.json"
    workflow = json.loads(WORKFLOWS[0].read_text())
    control.write_text(json.dumps({**workflow, "id": WORKFLOWS[0].stem}))
    try:
        schema, verdicts = validate_with_frontend([*WORKFLOWS, control])
    except Unavailable as err:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must run the frontend schema check: {err}")
        pytest.skip(f"frontend schema check not run: {err}")
    assert verdicts[control] and 'Invalid uuid at "id"' in verdicts[control], (
        f"the frontend schema ({schema.source_name}) accepted a workflow whose id is not a UUID: {verdicts[control]}")
    return schema, verdicts


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_passes_the_frontend_schema(frontend_verdicts, path):
    schema, verdicts = frontend_verdicts
    assert verdicts[path] is None, f"comfyui-frontend-package {schema.version} would show: {verdicts[path]}"


def test_seed_inputs_get_the_frontends_control_widget():
    """The frontend adds 'control after generate' to an INT named seed/noise_seed unless its spec says otherwise
    (legacy convention), so the saved widget values have that extra slot; a schema without it shifts them."""
    from tools.workflow_tools import NodeSchema, has_control_widget, schemas_from_object_info

    assert has_control_widget("seed", "INT", {}) and has_control_widget("noise_seed", "INT", {})
    assert not has_control_widget("seed", "INT", {"control_after_generate": False})
    assert has_control_widget("steps", "INT", {"control_after_generate": True})
    assert not has_control_widget("steps", "INT", {}) and not has_control_widget("seed", "FLOAT", {})
    for schema in all_schemas().values():
        assert isinstance(schema, NodeSchema)
        names = schema.widget_names()
        for i, (name, spec) in enumerate(schema.widgets):
            if name in ("seed", "noise_seed") and spec[0] == "INT":
                assert names[i + 1] == f"{name}__control"
    info = {"N": {"input": {"required": {"seed": ["INT", {"default": 0}], "depth": ["FLOAT", {}]}},
                  "input_order": {"required": ["seed", "depth"]}, "output": [], "output_name": []}}
    assert schemas_from_object_info(info)["N"].widget_names() == ["seed", "seed__control", "depth"]
