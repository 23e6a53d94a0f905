"""Run an exported model (ONNX through onnxruntime, or TorchScript) from its file and sidecar JSON alone.

`ExportedModel` offers what inference code uses of a checkpoint's `LoadedModel` (log_probs, tokenizer,
sample_rate, frame_seconds, samples_per_frame, output_frames), so `asr-transcribe backend=onnx` and
`asr-serve exported=...` run the very file a user ships, with the same decoders.

Shapes: B batch, S samples, T' output frames, C vocabulary incl. blank.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr.checkpoint import run_dir_of
from asr.errors import UserError
from asr.model.features import frame_lengths
from asr.model.frontends import subsampled_lengths
from asr.text import tokenizer_from_dict


class ExportError(UserError):
    """An exported model that cannot be written, found or run (the message names the file and what to do)."""


def sidecar_path(model_path: str | Path) -> Path:
    """model.onnx -> model.onnx.json (the sidecar `asr-export` writes beside it; one per file, so an ONNX and a
    TorchScript export of one model may share a folder)."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def default_export_path(checkpoint_file: Path, fmt: str) -> Path:
    """Where `asr-export` puts a checkpoint's export by default: <run dir>/export/model.onnx (or model.pt)."""
    base = run_dir_of(checkpoint_file) or checkpoint_file.parent
    return base / "export" / ("model.onnx" if fmt == "onnx" else "model.pt")


# The key under which an exported file records the digest of its sidecar's contract (ONNX metadata_props,
# TorchScript extra file), so a sidecar edited or swapped after export is caught at load.
CONTRACT_KEY = "asr_sidecar_contract"
# What the exported graph was built with: a runtime that reads other values from the sidecar misreads its outputs.
CONTRACT_FIELDS = ("vocab", "blank", "sample_rate", "samples_per_frame", "features", "model")


def contract_digest(meta: dict[str, Any]) -> str:
    """sha256 of the sidecar fields the exported graph was built with (canonical JSON)."""
    import hashlib
    fields = {k: meta.get(k) for k in CONTRACT_FIELDS}
    if "tokenizer" in meta:  # sidecars written before subword units have none; their digests stay as they were
        fields["tokenizer"] = meta["tokenizer"]
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def frames_for_samples(num_samples: int, hop: int, conv_time_strides: list[int], output_upsample: int = 1) -> int:
    """T' for num_samples samples: the front-end's frame count, then the conv subsampling's, times the head's output
    upsampling (the same arithmetic as LogMel.output_lengths and AcousticModel.output_lengths, from the sidecar's
    numbers alone)."""
    frames = frame_lengths(torch.tensor([num_samples]), hop)
    return int(subsampled_lengths(frames, conv_time_strides)[0]) * output_upsample


class ExportedModel:
    """An exported model ready to run on the CPU: `.log_probs(waves, lengths)` like `LoadedModel.log_probs`."""

    device = torch.device("cpu")  # inputs may live anywhere; outputs come back on the CPU

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        meta_path = sidecar_path(self.path)
        if not self.path.is_file():
            raise ExportError(f"exported model not found: {self.path}; write one with `asr-export checkpoint=RUN "
                              f"out={self.path}`")
        if not meta_path.is_file():
            raise ExportError(f"{self.path}: its sidecar {meta_path.name} is missing (vocabulary, sample rate, "
                              f"features); keep the .json `asr-export` wrote beside the model")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
            self.tokenizer = tokenizer_from_dict({**self.meta.get("tokenizer", {}), "vocab": self.meta["vocab"]})
            self.format = str(self.meta["format"])
            self._strides = list(self.meta["model"]["conv_time_strides"])
            self._upsample = int(self.meta["model"].get("output_upsample", 1))  # absent before the option existed
            self._hop = int(self.meta["samples_per_frame"]) * self._upsample // int(np.prod(self._strides))
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"{meta_path}: not a usable sidecar ({type(exc).__name__}: {exc}); re-export the "
                              f"model") from None
        self.threads = threads or min(4, os.cpu_count() or 1)
        self._stored_digest: str | None = None
        self._run = self._onnx_runner() if self.format == "onnx" else self._torchscript_runner()
        self._check_sidecar(meta_path)

    def _check_sidecar(self, meta_path: Path) -> None:
        """Refuse, in one line, a sidecar that does not describe this model: one sample rate, the digest the
        export recorded in the model file (a changed or permuted vocabulary, rate or feature setting), and, for
        files exported before digests, the output size against the vocabulary (one probe run)."""
        redo = "re-export the model with `asr-export` (the sidecar must be the one written with it)"
        features_rate = (self.meta.get("features") or {}).get("sample_rate", self.sample_rate)
        if int(features_rate) != self.sample_rate:
            raise ExportError(f"{meta_path}: sample_rate {self.sample_rate} contradicts features.sample_rate "
                              f"{features_rate}; {redo}")
        if self._stored_digest is not None:
            if self._stored_digest != contract_digest(self.meta):
                raise ExportError(f"{meta_path}: does not match {self.path.name} (vocabulary, sample rate or features "
                                  f"differ from what the model was exported with); {redo}")
            return
        n = max(self.samples_per_frame * 4, self.sample_rate // 4)
        lp, _ = self.log_probs(torch.zeros(1, n), torch.tensor([n]))
        if lp.shape[-1] != len(self.tokenizer.vocab):
            raise ExportError(f"{meta_path}: its vocabulary has {len(self.tokenizer.vocab)} symbols but "
                              f"{self.path.name} outputs {lp.shape[-1]} classes; {redo}")

    # --- what inference code reads -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def samples_per_frame(self) -> int:
        return int(self.meta["samples_per_frame"])

    @property
    def frame_seconds(self) -> float:
        return self.samples_per_frame / self.sample_rate

    def describe(self) -> str:
        return f"{self.format} export of {self.meta.get('description', 'an acoustic model')} ({self.path.name})"

    def output_frames(self, num_samples: int) -> int:
        """T' the model gives for num_samples samples (the front-end's, the conv subsampling's and the head's output
        upsampling's arithmetic)."""
        return frames_for_samples(num_samples, self._hop, self._strides, self._upsample)

    @torch.no_grad()
    def log_probs(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(waves (B, S) fp32, lengths (B,)) -> (log_probs (B, T', C) fp32, out_lengths (B,) int64) on the CPU."""
        return self._run(waves.float().cpu().contiguous(), lengths.to(torch.int64).cpu())

    # --- the two runtimes ----------------------------------------------------------------------------------
    def _onnx_runner(self):
        session = onnx_session(self.path, self.threads)
        self._stored_digest = session.get_modelmeta().custom_metadata_map.get(CONTRACT_KEY)

        def run(waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lp, n = session.run(["log_probs", "out_lengths"], {"waves": waves.numpy(), "lengths": lengths.numpy()})
            return torch.from_numpy(lp), torch.from_numpy(n).to(torch.int64)

        return run

    def _torchscript_runner(self):
        extra = {CONTRACT_KEY: ""}
        module = load_torchscript(self.path, extra)
        stored = extra[CONTRACT_KEY]  # torch.jit.load fills it with the file's bytes
        self._stored_digest = (stored.decode("utf-8") if isinstance(stored, bytes) else stored) or None

        def run(waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lp, n = run_torchscript(module, waves, lengths)
            return lp.float(), n.to(torch.int64)

        return run


def onnx_session(path: Path, threads: int):
    """An onnxruntime CPU session for `path` (whole-utterance model or streaming step); ExportError if it won't load."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # warnings about unused initialisers etc. are not the user's concern
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ExportError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]}); "
                          f"re-export with `asr-export format=onnx`") from None


def load_torchscript(path: Path, extra_files: dict[str, Any] | None = None) -> torch.jit.ScriptModule:
    """A TorchScript file in eval mode on the CPU (filling `extra_files` {name: ""} with the file's own, as
    torch.jit.load does; absent ones stay empty); ExportError if it won't load."""
    try:
        with warnings.catch_warnings():  # torch 2.11 marks TorchScript deprecated; the format still loads
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files).eval()
    except (RuntimeError, ValueError) as exc:
        raise ExportError(f"{path}: torch.jit cannot load it ({str(exc).splitlines()[0][:200]}); "
                          f"re-export with `asr-export format=torchscript`") from None


def run_torchscript(module: torch.jit.ScriptModule, *args: torch.Tensor):
    """Call an exported TorchScript module without autograd and without the graph executor's optimisation pass.

    The profiling executor re-profiles and re-optimises the graph on its first calls and again for new input shapes
    (every file's length is new). Measured on 2 cores (scripts/bench_torchscript.py, docs/BENCHMARKS.md): idle, a
    fresh process's first call took 0.06-0.11 s against 0.024 s plain, 12 calls 0.27 against 0.20 s; with a training
    run on the same cores, single calls of 1-3 s against 0.03-0.2 s. The model's work is ATen's LSTM and conv kernels
    either way, so the optimised graph gains nothing worth those pauses."""
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return module(*args)


def load_exported(path: str | Path, threads: int | None = None) -> ExportedModel:
    """An exported model file (.onnx or TorchScript .pt with its .json sidecar), ready to run."""
    return ExportedModel(path, threads)
