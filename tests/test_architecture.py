"""The import rules of docs/ARCHITECTURE.md, checked on the source: layers import only downwards, the inference
side depends on nothing of training, no module imports a command's module, every layer is a package, and the
import graph has no cycles at module level."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "asr"

# The layers, lowest first: a module may import its own layer and those below it, never one above (and never the
# inference side the training side: they are siblings). The shared base is asr/*.py (without api.py), config/ and
# decoding/ (pure decoders and their settings, used by validation and inference; the schema checks LM files with it).
LAYERS = [("base", ("asr.config", "asr.decoding")), ("model", ("asr.model",)),
          ("data", ("asr.data",)), ("train", ("asr.train",)), ("inference", ("asr.inference",)),
          ("deployment", ("asr.export", "asr.serve")), ("api", ("asr.api",))]
TRAINING = "asr.train"
# Training-only pieces outside asr.train: augmentation runs in training only.
TRAINING_ONLY = {"asr.model.augment"}
INFERENCE_SIDE = ("asr.inference", "asr.export", "asr.serve", "asr.api")
# The commands' modules: entry points import them, no module does (pyproject.toml's [project.scripts]).
COMMANDS = {"asr.train.loop", "asr.inference.evaluate", "asr.inference.transcribe", "asr.export.cli",
            "asr.serve.cli", "asr.data.cli"}
MAX_BASE_MODULES = 12


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(top_level_only: bool) -> dict[str, set[str]]:
    """module -> the asr modules it imports (function-level imports too, unless top_level_only)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else ast.walk(tree)
        deps = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asr"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)  # `from asr import tb`
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("asr"))
        graph[_module_name(path)] = deps
    return {m: {d for d in deps if d in graph} for m, deps in graph.items()}


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for d in graph.get(m, ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def _layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return 0  # asr/*.py: the shared base


def test_inference_imports_nothing_of_training():
    graph = _imports(top_level_only=False)
    for entry in [m for m in graph if m.startswith(INFERENCE_SIDE)]:
        leaked = {d for d in _closure(graph, entry) if d.startswith(TRAINING + ".") or d in TRAINING_ONLY}
        assert not leaked, f"{entry} reaches training modules {sorted(leaked)}"


def test_no_module_imports_one_above_it_or_a_command():
    graph = _imports(top_level_only=False)
    for m, deps in graph.items():
        if m == "asr":  # the package's facade: re-exports the API lazily (asr.load, asr.Transcript)
            continue
        if m.endswith(".__main__"):  # `python -m asr.train`: an entry point, like the console scripts
            continue
        up = sorted(d for d in deps if _layer(d) > _layer(m))
        assert not up, f"{m} (layer {LAYERS[_layer(m)][0]}) imports {up} from a layer above it"
        commands = sorted(deps & COMMANDS - {m})
        assert not commands, f"{m} imports the command module(s) {commands}; move what it needs below the CLI"


def test_every_layer_is_a_package():
    base = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(base) <= MAX_BASE_MODULES, f"asr/ holds {len(base)} modules ({base}); put layers in packages"


def test_no_import_cycles_at_module_level():
    graph = _imports(top_level_only=True)
    for m in graph:
        assert m not in _closure(graph, m) or m.endswith("__init__"), f"{m} imports itself through a cycle"


def test_the_rules_would_catch_a_leak_and_an_upward_import():
    graph = _imports(top_level_only=False)
    graph["asr.inference.loading"] = graph["asr.inference.loading"] | {"asr.train.components"}
    assert any(d.startswith(TRAINING + ".") for d in _closure(graph, "asr.inference.loading"))
    assert _layer("asr.model.ctc") < _layer("asr.train.step") < _layer("asr.inference.loading") < _layer("asr.serve.app")
