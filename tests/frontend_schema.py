"""Check UI workflows with the ComfyUI frontend's own zod workflow schema, the check the frontend runs (and
alerts about: "Invalid workflow against zod schema: ...") when a workflow is opened.

Nothing is copied by hand: the pip package `comfyui-frontend-package` (ComfyUI v0.3.64 pins 1.27.10;
requirements-dev.txt installs it) ships its bundle's source map, which holds the TypeScript source of the
schema module and names the exact zod / zod-validation-error versions built into the bundle. Those two and a
TypeScript compiler (only to strip the type annotations) are installed with npm once into a cache folder
outside the repository ($JOYVASA_NODE_CACHE, else ~/.cache/joyvasa-nodes/frontend-schema), and
`frontend_schema.mjs` runs the schema's validateComfyWorkflow() under Node.js.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FRONTEND_DIST = "comfyui-frontend-package"
TYPESCRIPT = "typescript@5.9.3"  # transpileModule() strips the types; no type checking
# where the schema module lives in the frontend's sources (1.24 moved it from src/schemas/comfyWorkflowSchema.ts)
SCHEMA_SOURCES = ("/src/platform/workflow/validation/schemas/workflowSchema.ts", "/src/schemas/comfyWorkflowSchema.ts")
SCRIPT = Path(__file__).with_name("frontend_schema.mjs")


class Unavailable(RuntimeError):
    """A tool the check needs (the frontend package, Node.js, npm, the npm packages) is not there."""


@dataclass
class FrontendSchema:
    version: str  # of comfyui-frontend-package
    source_name: str  # the schema module's path in the frontend's sources
    source: str  # its TypeScript text
    npm_packages: list[str]  # "name@version" of the schema's imports, as bundled


def frontend_schema() -> FrontendSchema:
    """The workflow schema module of the installed comfyui-frontend-package, read from its source map."""
    try:
        version = importlib.metadata.version(FRONTEND_DIST)
        import comfyui_frontend_package
    except (importlib.metadata.PackageNotFoundError, ImportError) as err:
        raise Unavailable(f"{FRONTEND_DIST} is not installed (pip install -r requirements-dev.txt)") from err
    assets = Path(comfyui_frontend_package.__file__).parent / "static" / "assets"
    for map_path in sorted(assets.glob("*.js.map")):
        raw = map_path.read_bytes()
        if b"validateComfyWorkflow" not in raw:
            continue
        source_map = json.loads(raw)
        sources, contents = source_map["sources"], source_map.get("sourcesContent") or []
        for name, text in zip(sources, contents):
            if text and name.endswith(SCHEMA_SOURCES) and "validateComfyWorkflow" in text:
                return FrontendSchema(version, name, text, _bundled_versions(text, sources, map_path))
    raise AssertionError(f"{FRONTEND_DIST} {version}: no source map in {assets} holds the workflow schema "
                         f"({' or '.join(SCHEMA_SOURCES)}); has the frontend moved it?")


def _bundled_versions(source: str, sources: list[str], map_path: Path) -> list[str]:
    """name@version of every package the schema module imports, from the bundle's node_modules/.pnpm paths."""
    versions = {}
    for path in sources:  # ../../node_modules/.pnpm/zod@3.24.1/node_modules/zod/lib/index.mjs
        match = re.search(r"node_modules/\.pnpm/([^/]+)/node_modules/((?:@[^/]+/)?[^/]+)/", path)
        if match:
            store, name = match.groups()
            prefix = name.replace("/", "+") + "@"
            if store.startswith(prefix):
                versions.setdefault(name, store[len(prefix):].split("_")[0])
    imports = sorted(set(re.findall(r"""^\s*import\s[^'"]*?from\s+['"]([^'"./@][^'"]*|@[^'"/]+/[^'"]+)['"]""",
                                    source, re.M)))
    missing = [name for name in imports if name not in versions]
    if missing:
        raise AssertionError(f"{map_path.name}: the workflow schema imports {missing}, whose bundled versions "
                             "the source map does not name")
    return [f"{name}@{versions[name]}" for name in imports]


def cache_root() -> Path:
    env = os.environ.get("JOYVASA_NODE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "joyvasa-nodes" / "frontend-schema"


def _installed(folder: Path, packages: list[str]) -> bool:
    for spec in packages:
        name, version = spec.rsplit("@", 1)
        manifest = folder / "node_modules" / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text()).get("version") != version:
            return False
    return True


def npm_deps(packages: list[str]) -> Path:
    """A folder whose node_modules/ holds exactly these npm packages (installed once, then reused)."""
    folder = cache_root() / "+".join(p.replace("/", "%") for p in packages)
    if _installed(folder, packages):
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed (Node.js 18 or newer with npm is needed)")
    staging = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "package.json").write_text('{"name": "joyvasa-frontend-schema", "private": true}\n')
    result = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--no-package-lock",
                             "--prefix", str(staging), *packages], capture_output=True, text=True, timeout=600)
    if result.returncode or not _installed(staging, packages):
        shutil.rmtree(staging, ignore_errors=True)
        raise Unavailable(f"npm install {' '.join(packages)} failed:\n{(result.stdout + result.stderr)[-2000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def validate_with_frontend(paths: list[Path]) -> tuple[FrontendSchema, dict[Path, str | None]]:
    """Run the frontend's validateComfyWorkflow() on every file: None where valid, else the message the
    frontend would show."""
    schema = frontend_schema()
    node = shutil.which("node")
    if node is None:
        raise Unavailable("node (Node.js 18 or newer) is not installed")
    deps = npm_deps([TYPESCRIPT, *schema.npm_packages])
    schema_file = deps / f"workflowSchema-{schema.version}.ts"
    if not schema_file.is_file() or schema_file.read_text() != schema.source:
        schema_file.write_text(schema.source)
    result = subprocess.run([node, str(SCRIPT), str(schema_file), str(deps), *map(str, paths)],
                            capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise AssertionError(f"{SCRIPT.name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    answers = json.loads(result.stdout)
    return schema, {Path(p): answers[str(p)] for p in paths}
