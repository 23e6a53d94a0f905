"""`asr-export`: a checkpoint -> a self-contained ONNX or TorchScript model + its JSON sidecar, parity-checked.

    asr-export checkpoint=runs/synthetic_small_adamw                      # -> <run>/export/model.onnx
    asr-export checkpoint=RUN format=torchscript out=deploy/model.pt
    asr-export checkpoint=RUN check_audio=[a.flac,b.wav] tolerance=1e-4

The written model takes (waves (B, S) float32, lengths (B,) int64) and returns (log_probs (B, T', C),
out_lengths (B,)); the sidecar (`model.onnx.json`) holds the vocabulary, sample rate, feature settings and the
parity figures measured on `check_audio` (default: four utterances of the run's own dev set, shortest to longest).
A streaming model (unidirectional, `model=streaming`) also gets `model.stream.onnx` (or `.stream.pt`): one chunk
of audio + the carried state in, that chunk's log-probs + the new state out (asr/export/streaming.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from asr import hydra_cli
from asr.audio import AudioLoadError, load_audio
from asr.config import ConfigError, to_object
from asr.config.export import ExportConfig
from asr.data.manifest import read_manifest
from asr.export.exporter import SUFFIXES, export
from asr.inference.exported import default_export_path
from asr.inference.loading import LoadedModel, load_model

log = logging.getLogger("asr.export")
CHECK_UTTERANCES = 4
CHECK_MAX_SECONDS = 20.0


def check_waves(loaded: LoadedModel, files: list[str]) -> list[torch.Tensor]:
    """The parity utterances: `files` when given, else up to four of the run's dev utterances spread over their
    durations (read relative to the working directory, as training did), else four generated signals."""
    sr = loaded.sample_rate
    if files:
        out = []
        for k, f in enumerate(files):
            if not Path(f).is_file():
                raise ConfigError(f"check_audio[{k}]: file not found: {f}")
            out.append(load_audio(f, sr))
        return out
    for name, manifest in loaded.config.data.dev_manifests.items():
        if not Path(manifest).is_file():
            continue
        utts = sorted((u for u in read_manifest(manifest) if 0 < u.duration <= CHECK_MAX_SECONDS),
                      key=lambda u: u.duration)
        picks = [utts[round(i * (len(utts) - 1) / (CHECK_UTTERANCES - 1))] for i in range(CHECK_UTTERANCES)] \
            if len(utts) >= CHECK_UTTERANCES else utts
        try:
            waves = [load_audio(u.audio_filepath, sr, utt_id=u.id) for u in picks]
        except AudioLoadError as exc:
            log.warning("dev set %s not usable for the parity check (%s)", name, exc)
            continue
        if waves:
            log.info("parity check on %d utterances of dev set %s (%s)", len(waves), name, manifest)
            return waves
    log.warning("no dev audio of the run found (pass check_audio=[...] for real speech); checking parity on "
                "generated signals")
    g = torch.Generator().manual_seed(0)
    t = [torch.arange(int(s * sr)) / sr for s in (0.5, 1.7, 3.1, 6.4)]
    return [0.3 * torch.sin(2 * torch.pi * (150 + 400 * x) * x) + 0.02 * torch.randn(x.numel(), generator=g)
            for x in t]


def main(cfg: DictConfig | ExportConfig | dict) -> dict[str, Any]:
    """Export cfg.checkpoint; returns the sidecar (with the measured parity) of the whole-utterance model."""
    cfg = to_object(cfg, ExportConfig)
    loaded = load_model(cfg.checkpoint, "cpu", cfg.average_last)
    fmt = str(cfg.format)
    out = Path(cfg.out) if cfg.out else default_export_path(loaded.path, fmt)
    if out.suffix != SUFFIXES[fmt]:
        raise ConfigError(f"out: {out} should end in {SUFFIXES[fmt]} for format={fmt}")
    waves = check_waves(loaded, cfg.check_audio)
    meta = export(loaded, fmt, out, waves, cfg.tolerance)
    p = meta["parity"]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {fmt}) and {out.name}.json: "
          f"{p['utterances']} utterances ({', '.join(f'{s:g}' for s in p['seconds'])} s) alone and in one padded "
          f"batch, max |log-prob diff| {p['max_abs_diff']:.1e} (tolerance {p['tolerance']:.0e}), greedy identical")
    if not loaded.config.model.bidirectional:
        from asr.export.streaming import export_streaming
        stream = export_streaming(loaded, fmt, out.with_suffix(f".stream{SUFFIXES[fmt]}"), waves,
                                  cfg.streaming_chunk_frames, cfg.tolerance)
        print(f"wrote {stream['path']}: streaming, {stream['chunk_frames']} frames "
              f"({stream['chunk_seconds']:g} s) a step, latency {stream['latency_seconds']:g} s; chunked transcripts "
              f"identical to the whole-utterance model's on {stream['parity']['utterances']} utterances")
        meta["streaming"] = stream
    return meta


def cli() -> None:
    """Hydra entry point (`asr-export checkpoint=RUN format=onnx out=model.onnx`)."""
    hydra_cli.run("asr-export", "export", "export_schema", ExportConfig, main, output_keys="out=...")


if __name__ == "__main__":
    cli()
