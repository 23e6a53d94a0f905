"""`asr-<command> --help`: what the command does, two examples, and its keys with their values and comments,
answered without importing torch (fast); anything else goes to the command."""
from __future__ import annotations

import subprocess
import sys

import pytest

from asr.commands import COMMANDS, help_text

PROBE = ("import sys; sys.argv = [{name!r}, '--help']; from asr import commands\n"
         "try:\n    commands.run({name!r})\nexcept SystemExit as e:\n    code = e.code\n"
         "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_explains_the_command_without_importing_torch(name):
    out = subprocess.run([sys.executable, "-c", PROBE.format(name=name)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("NO-TORCH 0")
    text = out.stdout
    cmd = COMMANDS[name]
    assert text.startswith(f"{name}: {cmd.purpose}") and all(e in text for e in cmd.examples)
    assert "hydra_cli is powered by Hydra" not in text


def test_help_lists_keys_with_preset_values_and_their_comments():
    train = help_text(COMMANDS["asr-train"])
    # the value after configs/train.yaml's presets (data=synthetic sets 36 s), not the schema's 120 s
    assert "data.max_batch_seconds=36.0" in train and "sampler budget: total padded audio seconds" in train
    assert "optim.lr=0.003" in train and "trainer.max_minutes=null" in train
    transcribe = help_text(COMMANDS["asr-transcribe"])
    assert "output_format=null" in transcribe and "jsonl, csv, srt, vtt or ctm" in transcribe
    # a comment written above a field belongs to it
    assert "beam.lm_weight=null" in transcribe and "recorded with the" in transcribe


def test_other_arguments_go_to_the_command(monkeypatch):
    from asr import commands
    called = []
    monkeypatch.setattr(commands, "_load", lambda spec: (lambda: called.append(spec)) if ":cli" in spec else None)
    monkeypatch.setattr(sys, "argv", ["asr-eval", "checkpoint=x"])
    commands.asr_eval()
    assert called == ["asr.inference.evaluate:cli"]


def test_every_asr_data_option_is_documented():
    import argparse

    from asr.data.cli import _build_parser

    def parsers(p):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)
    missing = [f"{p.prog} {a.dest}" for p in parsers(_build_parser()) for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert not missing, f"options without help: {missing}"
