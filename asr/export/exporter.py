"""Write a checkpoint as ONNX or TorchScript, check the written file against the PyTorch model, then write its
sidecar: a model is only published (atomically renamed into place) once its parity check passed.

Parity: on real utterances of several lengths, run alone and padded together in one batch, the exported file's
log-probs must match the PyTorch model's (torchaudio front-end + AcousticModel, i.e. what `asr-eval` runs) on
every valid frame within `tolerance`, and the greedy transcripts must be identical.

Shapes: B batch, S samples, T' output frames, C vocabulary incl. blank.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from asr.decoding import settings as decoding_settings
from asr.decoding.greedy import greedy_decode
from asr.export.graph import INPUTS, OUTPUTS, Deployable, sidecar
from asr.fileio import atomic_write, current_umask
from asr.inference.exported import CONTRACT_KEY, ExportedModel, ExportError, contract_digest, sidecar_path
from asr.inference.loading import LoadedModel, recorded_decoding
from asr.lengths import pad_waves

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_OPSET = 17
DEFAULT_TOLERANCE = 1e-3  # max |log-prob difference| on valid frames; measured ~1e-4 (docs/BENCHMARKS.md)


def _trace_example(sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of different lengths (1.0 s, 0.7 s): the tracer must see a padded batch, not one fixed shape."""
    g = torch.Generator().manual_seed(0)
    return pad_waves([0.1 * torch.randn(sample_rate, generator=g),
                      0.1 * torch.randn(7 * sample_rate // 10, generator=g)])


def write_model(module: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path, fmt: str,
                inputs: Sequence[str], outputs: Sequence[str], axes: dict[str, dict[int, str]],
                digest: str | None = None) -> None:
    """Trace `module` on `example` into `path` as ONNX (named inputs/outputs, `axes` dynamic) or TorchScript,
    recording `digest` (the sidecar's `contract_digest`) in the file itself when given."""
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based ONNX exporter (dynamo=False: it handles nn.LSTM with dynamic batch and time axes
        # without onnxscript) warns about its own deprecation and about batch_first LSTMs, the tracer about
        # shape-derived ints; none is actionable, and the parity check after writing is what tells.
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(module, example, str(path), input_names=list(inputs), output_names=list(outputs),
                              dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
            if digest is not None:
                import onnx
                proto = onnx.load(str(path))
                onnx.helper.set_model_props(proto, {CONTRACT_KEY: digest})
                onnx.save(proto, str(path))
        else:
            torch.jit.trace(module, example, check_trace=False).save(
                str(path), _extra_files={CONTRACT_KEY: digest} if digest is not None else {})


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary file beside `out` to write and check a model in; it and its sidecar are gone on leaving
    (after `publish` moved them into place, or after a failure left them unpublished)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=out.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        sidecar_path(tmp).unlink(missing_ok=True)


def publish(tmp: Path, out: Path, meta: dict[str, Any]) -> None:
    """Put a checked model in place: its sidecar atomically, then the model renamed over `out`."""
    with atomic_write(sidecar_path(out)) as f:
        f.write(json.dumps(meta, indent=1) + "\n")
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's private 0600 is not what a model to ship should have
    os.replace(tmp, out)


def measure_parity(reference: LoadedModel, exported: ExportedModel, waves: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Compare exported vs PyTorch log-probs on `waves`, each alone and all padded in one batch."""
    worst, texts_equal, frames = 0.0, True, 0
    batch, lengths = pad_waves(waves)
    ref_lp, ref_n = reference.log_probs(batch, lengths)
    ref_lp, ref_n = ref_lp.cpu(), ref_n.cpu()
    runs = [(batch, lengths, slice(0, len(waves)))] + [(w[None], torch.tensor([w.numel()]), slice(k, k + 1))
                                                      for k, w in enumerate(waves)]
    for x, n, rows in runs:
        lp, out_n = exported.log_probs(x, n)
        if not torch.equal(out_n, ref_n[rows]):
            raise ExportError(f"{exported.path}: output lengths {out_n.tolist()} differ from the model's "
                              f"{ref_n[rows].tolist()}")
        for k, r in enumerate(range(rows.start, rows.stop)):
            t = int(ref_n[r])
            worst = max(worst, float((lp[k, :t] - ref_lp[r, :t]).abs().max()))
            frames += t
        texts_equal &= (greedy_decode(lp, out_n, reference.tokenizer)
                        == greedy_decode(ref_lp[rows], ref_n[rows], reference.tokenizer))
    return {"utterances": len(waves), "seconds": [round(w.numel() / reference.sample_rate, 3) for w in waves],
            "frames_compared": frames, "max_abs_diff": worst, "greedy_identical": bool(texts_equal)}


def export(loaded: LoadedModel, fmt: str, out: str | Path, check_waves: Sequence[torch.Tensor],
           tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Export `loaded` (on the CPU) to `out` in `fmt`; returns the sidecar written beside it
    (`sidecar_path(out)`, e.g. model.onnx.json).

    The file is written under a temporary name, checked (`measure_parity`), and renamed into place only if
    the check holds; otherwise ExportError says by how much it missed and nothing is left behind.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    loaded.model.cpu().eval()
    loaded.featurizer.cpu().eval()
    loaded.device = torch.device("cpu")
    axes = {"waves": {0: "batch", 1: "samples"}, "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "frames"}, "out_lengths": {0: "batch"}}
    meta = sidecar(loaded, fmt, out.name, {})
    with staged(out) as tmp:
        write_model(Deployable(loaded).eval(), _trace_example(loaded.sample_rate), tmp, fmt, INPUTS, OUTPUTS, axes,
                    digest=contract_digest(meta))
        sidecar_path(tmp).write_text(json.dumps(meta))
        parity = measure_parity(loaded, ExportedModel(tmp, threads=1), check_waves)
        parity["tolerance"] = tolerance
        if parity["max_abs_diff"] > tolerance or not parity["greedy_identical"]:
            raise ExportError(f"{out}: the exported model does not match the PyTorch model (max |log-prob diff| "
                              f"{parity['max_abs_diff']:.2e}, tolerance {tolerance:.0e}, greedy identical: "
                              f"{parity['greedy_identical']}); nothing was written")
        meta["parity"] = parity
        # The LM and weights `asr-eval tune_lm=true` recorded travel with the export (files copied beside it).
        meta["decoding"] = decoding_settings.for_export(recorded_decoding(loaded), out.parent)
        publish(tmp, out, meta)
    log.info("wrote %s and %s: %d utterances checked, max |log-prob diff| %.2e, greedy identical",
             out, sidecar_path(out).name, parity["utterances"], parity["max_abs_diff"])
    if meta["decoding"]:
        log.info("with the recorded beam_lm settings: LM %s, lm_weight=%g, word_score=%g", meta["decoding"]["lm_path"],
                 meta["decoding"]["lm_weight"], meta["decoding"]["word_score"])
    return meta
