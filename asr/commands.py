"""The console commands: what each does, two examples, and where it lives. `--help` is answered here from the
schema and the composed presets (no torch import: well under a second), anything else is handed to the command.

pyproject.toml's [project.scripts] point at the functions at the bottom. `--hydra-help` still shows Hydra's own
help, and `asr-data` (argparse) answers its own `--help`.
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from asr.errors import stdout_closed_quietly
from asr.signal_stack import ensure_alternate_signal_stack


@dataclass(frozen=True)
class Command:
    name: str
    purpose: str
    examples: tuple[str, ...]
    target: str  # "module:function" that runs it
    schema: str  # "module:Class" of its configuration
    config: str  # configs/<config>.yaml


COMMANDS = {c.name: c for c in (
    Command("asr-train", "Train the conv + BiLSTM CTC acoustic model; resumes the run in run_dir when run again.",
            ("asr-train run_dir=runs/demo trainer.max_minutes=14",
             "asr-train data=librispeech_100 model=large optim.lr=1e-3 trainer.precision=bf16"),
            "asr.train.loop:cli", "asr.config.train:TrainConfig", "train"),
    Command("asr-eval", "Score a checkpoint on dev/test sets: WER and CER with greedy, beam and beam + LM decoding; "
            "tune_lm=true picks the LM weights on dev and records them with the model.",
            ("asr-eval checkpoint=runs/demo",
             "asr-eval checkpoint=runs/demo beam.lm_path=data/lm/synthetic_train_3gram.arpa tune_lm=true"),
            "asr.inference.evaluate:cli", "asr.config.inference:EvalConfig", "eval"),
    Command("asr-transcribe", "Audio files, folders, globs, manifests or a list on stdin -> text with word times, "
            "as JSONL, CSV, SRT, VTT or CTM.",
            ("asr-transcribe checkpoint=runs/demo audio=talk.flac",
             "asr-transcribe checkpoint=runs/demo audio=data/synthetic/test decoder=beam_lm output=test.srt"),
            "asr.inference.transcribe:cli", "asr.config.inference:TranscribeConfig", "transcribe"),
    Command("asr-export", "Export a checkpoint to one ONNX or TorchScript file (+ a streaming step for streaming "
            "models), checked against the PyTorch model before it is written.",
            ("asr-export checkpoint=runs/demo", "asr-export checkpoint=runs/demo format=torchscript out=deploy/model.pt"),
            "asr.export.cli:cli", "asr.config.export:ExportConfig", "export"),
    Command("asr-serve", "Serve a checkpoint or an exported model over HTTP: a web page to upload or record, "
            "POST /transcribe, GET /health.",
            ("asr-serve checkpoint=runs/demo", "asr-serve exported=runs/demo/export/model.onnx port=8080 workers=4"),
            "asr.serve.cli:cli", "asr.config.serve:ServeConfig", "serve"),
)}


def _load(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def help_text(cmd: Command) -> str:
    """Purpose, examples, and every key with its value after the command's presets and its comment."""
    from asr.config.docs import describe

    schema = _load(cmd.schema)
    try:
        from hydra import compose, initialize_config_dir
        from hydra.core.config_store import ConfigStore

        from asr.config import config_dir
        ConfigStore.instance().store(name=f"{cmd.config}_schema", node=schema)
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            values = compose(config_name=cmd.config)
    except Exception:  # the help must come out even if the presets cannot be composed
        values = None
    examples = "\n".join(f"  {e}" for e in cmd.examples)
    return (f"{cmd.name}: {cmd.purpose}\n\nExamples:\n{examples}\n\n"
            f"Keys (key=value on the command line; values after the presets in configs/{cmd.config}.yaml):\n"
            f"{describe(schema, values)}\n\n"
            f"Hydra's own options: {cmd.name} --hydra-help. Every key is checked before anything runs: an unknown key "
            f"or a bad value is one line naming the key.\n")


def run(name: str) -> None:
    """Every `asr-*` command starts here; its signal handlers (Ctrl-C's too) run on an alternate stack, never on
    that of a native kernel they interrupt (asr/signal_stack.py)."""
    ensure_alternate_signal_stack()
    cmd = COMMANDS[name]
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        stdout_closed_quietly(lambda: sys.stdout.write(help_text(cmd)))
        sys.exit(0)
    stdout_closed_quietly(_load(cmd.target))


def asr_train() -> None:
    run("asr-train")


def asr_eval() -> None:
    run("asr-eval")


def asr_transcribe() -> None:
    run("asr-transcribe")


def asr_export() -> None:
    run("asr-export")


def asr_serve() -> None:
    run("asr-serve")
