"""The import rules of docs/ARCHITECTURE.md, checked on the source: inference depends on nothing of training, and
the package's import graph has no cycles at module level."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "asr"

TRAINING = {"asr.train", "asr.step", "asr.validation", "asr.resume", "asr.runlog", "asr.signals", "asr.state",
            "asr.components", "asr.rundir", "asr.optim", "asr.augment", "asr.distributed"}
# asr.tb (TensorBoard tags and images) is shared: asr-eval writes its WER beside the training curves.
INFERENCE = ["asr.inference", "asr.transcription", "asr.api", "asr.evaluate", "asr.transcribe", "asr.report", "asr.serve.app", "asr.serve.cli",
             "asr.export.cli", "asr.export.runtime", "asr.export.streaming"]


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


def test_inference_imports_nothing_of_training():
    graph = _imports(top_level_only=False)
    for entry in INFERENCE:
        leaked = _closure(graph, entry) & TRAINING
        assert not leaked, f"{entry} reaches training modules {sorted(leaked)}"


def test_no_import_cycles_at_module_level():
    graph = _imports(top_level_only=True)
    for m in graph:
        assert m not in _closure(graph, m) or m.endswith("__init__"), f"{m} imports itself through a cycle"


def test_the_rule_would_catch_a_leak():
    graph = _imports(top_level_only=False)
    graph["asr.inference"] = graph["asr.inference"] | {"asr.components"}
    assert _closure(graph, "asr.inference") & TRAINING
