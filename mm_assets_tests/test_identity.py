"""mm_assets/encoders/identity.py: an encoder's identity comes from its configuration alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import yaml

import mm_assets
from mm_assets.config import EncoderConfig, FineTuneConfig, Settings
from mm_assets.encoders.identity import (
    code_version,
    encoder_key,
    fingerprint,
    read_record,
    record,
    recorded_config,
    stored_records,
    table_name,
    write_record,
)
from mm_assets.store.shards import ShardStore

# Loads the definitions from the config file in argv[1] and prints every asset's code version and
# whether torch was imported; with argv[2] == "gpu", first makes this machine look like a GPU host
# with native bf16 on its CPU too (the probes `dtype: auto` would use).
DEFINITIONS_PROBE = """
import json, os, sys
os.environ["MM_ASSETS_CONFIG"] = sys.argv[1]
if sys.argv[2] == "gpu":
    import torch
    torch.cuda.is_available = lambda: True
    torch.cuda.is_bf16_supported = lambda: True
    import mm_assets.encoders.precision as precision
    precision.cpu_has_native_bf16 = lambda cpuinfo=None: True
import mm_assets.definitions as definitions
nodes = definitions.defs.resolve_asset_graph().asset_nodes
versions = {node.key.to_user_string(): node.code_version for node in nodes}
print(json.dumps({"torch_imported": "torch" in sys.modules, "code_versions": versions}))
"""


def _load_definitions(config: Path, machine: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", DEFINITIONS_PROBE, str(config), machine],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_definitions_import_no_torch_and_code_versions_are_the_same_on_a_gpu_machine(tmp_path, tiny_clip):
    config = tmp_path / "mm_assets.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "home": str(tmp_path / "home"),
                "encoders": [
                    {"name": "clip", "model": str(tiny_clip)},  # dtype: auto, device: auto
                    {"name": "tuned", "fine_tune": {"base": "clip", "epochs": 1}},
                ],
            }
        )
    )
    cpu = _load_definitions(config, "cpu")
    gpu = _load_definitions(config, "gpu")
    assert cpu["torch_imported"] is False
    assert "embeddings/clip" in cpu["code_versions"] and "fine_tuned/tuned" in cpu["code_versions"]
    assert cpu["code_versions"] == gpu["code_versions"]


def test_identity_ignores_speed_settings_and_follows_what_changes_the_vectors(tiny_clip):
    base = EncoderConfig("clip", model=str(tiny_clip))
    assert fingerprint(replace(base, device="cuda:1", batch_size=256)) == fingerprint(base)
    for changed in (
        replace(base, dtype="float32"),
        replace(base, revision="abc"),
        replace(base, modalities=("image",)),
        replace(base, model="openai/clip-vit-base-patch32"),
    ):
        assert fingerprint(changed) != fingerprint(base)
    assert encoder_key(base) == f"clip_{fingerprint(base)}" and table_name(base) == f"emb_clip_{fingerprint(base)}"
    assert code_version(base) == fingerprint(base)


def test_a_fine_tuned_encoder_follows_its_base(tmp_path, tiny_clip, tiny_clip_other):
    def tuned_fingerprint(base_model: Path, epochs: int = 1) -> str:
        settings = Settings(
            home=tmp_path,
            encoders=(
                EncoderConfig("clip", model=str(base_model)),
                EncoderConfig("tuned", fine_tune=FineTuneConfig(base="clip", epochs=epochs)),
            ),
        )
        return fingerprint(settings.encoder("tuned"))

    assert tuned_fingerprint(tiny_clip) == tuned_fingerprint(tiny_clip)
    assert tuned_fingerprint(tiny_clip) != tuned_fingerprint(tiny_clip_other)
    assert tuned_fingerprint(tiny_clip) != tuned_fingerprint(tiny_clip, epochs=2)


def test_the_record_beside_the_shards_loads_the_model_that_wrote_them(tmp_path, tiny_clip):
    from mm_assets.encoders.clip import ClipEncoder

    config = EncoderConfig("clip", model=str(tiny_clip), dtype="float32")
    encoder = ClipEncoder(config)
    store = ShardStore(tmp_path / "store")
    written = record(config, encoder.metadata())
    write_record(store, encoder_key(config), written)
    assert read_record(store, encoder_key(config)) == json.loads(json.dumps(written, default=str))
    assert stored_records(store) == {}, "a key without shards is not served yet"
    loaded = recorded_config(read_record(store, encoder_key(config)))
    assert (loaded.name, loaded.model, loaded.revision, loaded.dtype) == ("clip", str(tiny_clip), None, "float32")
    assert fingerprint(loaded) == written["fingerprint"] == fingerprint(config)


# Every top-level module and package of mm_assets, in layers from the bottom: each imports only from
# its own layer or those below it (docs/ARCHITECTURE.md, "Layers").
LAYERS = (
    {"hashing", "progress", "onnx_cpu", "formats", "store"},
    {"config_sections", "config", "config_loading"},
    {"encoders"},
    {"ingest", "chunking"},
    {"duplicates", "moderation"},
    {"search"},
    {"evaluation", "training"},
    {"assets", "service", "staleness", "code_versions", "runs", "discovery", "sensors", "definitions", "cli"}
    | {"terminal", "demo"},
)
PACKAGE = Path(mm_assets.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every mm_assets module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # a module imported by name
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] == "mm_assets"}


def _module_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (``from pkg import name`` counts as importing pkg,
    or pkg.name where that is a module)."""
    modules = {
        ".".join(("mm_assets", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
    }
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _unit(module: str) -> str:
    """The top-level module or package a module belongs to ("" for the package itself: its version)."""
    return module.split(".")[1] if module != "mm_assets" else ""


def test_every_module_has_a_layer_and_imports_only_its_own_and_those_below():
    layer_of = {"": 0} | {unit: n for n, units in enumerate(LAYERS) for unit in units}
    graph = _module_graph()
    units = {_unit(m) for m in graph} - {""}
    assert units <= set(layer_of), f"modules with no layer: {sorted(units - set(layer_of))}"
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if layer_of[_unit(target)] > layer_of[_unit(module)]
    )
    assert not upward, upward


def test_no_module_imports_itself_through_others():
    graph = _module_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_the_settings_name_exactly_the_text_strategies_chunking_versions():
    from mm_assets.chunking.text import STRATEGY_VERSIONS
    from mm_assets.config_sections import TEXT_STRATEGIES

    assert set(TEXT_STRATEGIES) == set(STRATEGY_VERSIONS)
