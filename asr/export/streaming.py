"""Streaming inference for unidirectional models (`model=streaming`): audio arrives in pieces, log-probs leave
chunk by chunk, and the result equals the whole-utterance model's on every frame (tests/export/test_streaming.py).

`StreamingStep` is the exported graph: one window of samples + the carried state -> the next `chunk` output
frames' log-probs + the new state. The carried state is the recurrent layers' (h, c) and the last `lookahead`
recurrent outputs (the row convolution looks that far ahead); the overlap of consecutive sample windows (the
STFT's and the conv front-end's context) is kept by `StreamingSession`, which also masks the stream's end exactly
as the whole-utterance model masks its padding. Frames are numbered from the start of the stream, so the graph
knows which of its window's frames lie before the start or past the end (given once the stream has ended).

Shapes: B streams, W window samples, N chunk output frames, L recurrent layers, H hidden size, D recurrent
output size, tau lookahead frames, C vocabulary incl. blank.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from asr.inference.exported import (
    ExportError,
    frames_for_samples,
    load_torchscript,
    onnx_session,
    run_torchscript,
    sidecar_path,
)
from asr.inference.loading import LoadedModel
from asr.model.acoustic import AcousticModel
from asr.model.features import frame_lengths

NOT_ENDED = 1 << 40  # total frames while a stream is still open: nothing is past its end yet


@dataclass(frozen=True)
class StreamGeometry:
    """The sizes a `StreamingSession` works with (the sidecar's "streaming" entry, `to_dict` / `from_dict`)."""

    chunk_frames: int  # N: output frames per step
    lookahead: int  # tau: output frames the row convolution looks ahead (they delay the output)
    window_samples: int  # W: samples one step reads
    samples_per_frame: int  # samples per output frame (hop x subsampling): how far a step moves
    lead_samples: int  # zeros before the stream's first sample (the STFT's centring and the convs' left context)
    hop: int  # samples per feature frame
    conv_layers: tuple[tuple[int, int], ...]  # per conv layer (time stride, time padding)
    layers: int  # L recurrent layers
    hidden: int  # H
    ahead_dim: int  # D, the recurrent output the lookahead keeps
    vocab_size: int  # C
    chunk_seconds: float
    latency_seconds: float  # worst-case wait for a frame to be final

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "conv_layers": [list(x) for x in self.conv_layers]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StreamGeometry":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        return cls(**{**values, "conv_layers": tuple(tuple(x) for x in d["conv_layers"])})

    def output_frames(self, num_samples: int) -> int:
        """T' of a stream of num_samples samples."""
        return frames_for_samples(num_samples, self.hop, [st for st, _ in self.conv_layers])


class StreamingStep(nn.Module):
    """(window (B, W), h (L, B, H), c (L, B, H), ahead (B, tau, D), first (B,), frames (B,), out_frames (B,))
    -> (log_probs (B, N, C), h', c', ahead').

    The front-end as a conv1d DFT, then `AcousticModel.stream_step` (each layer's own `step`). `first` is the
    index of the chunk's first recurrent frame t0 (a multiple of N); the window holds the samples of feature
    frames a0 .. a0 + n0 - 1 (`StreamingSession`). log_probs are those of output frames t0 - tau .. t0 + N - tau
    - 1 (the lookahead delays them by tau). frames / out_frames: the stream's feature and output frame counts once
    it has ended (NOT_ENDED before), so the end is zero-masked as in training.
    """

    def __init__(self, loaded: LoadedModel, chunk: int):
        super().__init__()
        model: AcousticModel = loaded.model.cpu().eval()
        cfg = loaded.config
        if cfg.model.bidirectional:
            raise ExportError("streaming export needs a unidirectional model (model=streaming); a bidirectional "
                              "layer needs the whole utterance")
        if cfg.features.normalize != "none":
            raise ExportError(f"streaming export needs features.normalize=none (this model was trained with "
                              f"{cfg.features.normalize}: per-utterance statistics need the whole utterance); "
                              f"train with model=streaming, whose preset sets it")
        if cfg.model.frontend != "conv":
            raise ExportError(f"streaming export runs the strided conv front-end (model.frontend=conv); this model "
                              f"has model.frontend={cfg.model.frontend}")
        if cfg.model.rnn_type != "lstm":
            raise ExportError(f"streaming export supports LSTM layers; this model has {cfg.model.rnn_type}")
        from asr.export.frontend import ConvLogMel

        self.frontend = ConvLogMel(loaded.featurizer.cpu())
        self.model = model
        self.conv_window = model.conv.window(chunk)
        self.hop, self.n_fft = self.frontend.hop, self.frontend.n_fft
        self.window = (self.conv_window.counts[0] - 1) * self.hop + self.n_fft

    def forward(self, window, h, c, ahead, first, frames, out_frames):
        # Features of the window's frames (no centre padding: the window already starts n_fft / 2 early).
        feats = self.frontend.log_mel(window)  # (B, n0, F)
        return self.model.stream_step(feats, self.conv_window, first, frames, out_frames, h, c, ahead)


class StreamingSession:
    """Feed audio in pieces of any size; get log-probs as soon as they are final.

        session = StreamingSession(step_fn, geometry)
        for piece in audio_pieces: frames = session.feed(piece)   # (n, C), maybe n = 0
        frames = session.finish()                                    # the rest

    `step_fn(window, h, c, ahead, first, frames, out_frames)` is a `StreamingStep` (PyTorch) or an exported one
    (`load_streaming`); `geometry` its sizes.
    """

    def __init__(self, step_fn: Callable, geometry: StreamGeometry):
        self.step_fn, self.geometry = step_fn, geometry
        self.chunk, self.tau, self.window = geometry.chunk_frames, geometry.lookahead, geometry.window_samples
        self.advance = geometry.chunk_frames * geometry.samples_per_frame
        self.buffer = torch.zeros(geometry.lead_samples)  # samples before the stream's start are zeros
        self.received, self.t0, self.emitted = 0, 0, 0
        L, H, D = geometry.layers, geometry.hidden, geometry.ahead_dim
        self.h, self.c = torch.zeros(L, 1, H), torch.zeros(L, 1, H)
        self.ahead = torch.zeros(1, max(self.tau, 1), D)  # one unused frame without a lookahead (no empty axes)

    def _step(self, window: torch.Tensor, frames: int, out_frames: int) -> torch.Tensor:
        lp, self.h, self.c, self.ahead = self.step_fn(
            window[None], self.h, self.c, self.ahead, torch.tensor([self.t0]), torch.tensor([frames]),
            torch.tensor([out_frames]))
        first = self.t0 - self.tau  # output frame of lp[0, 0]
        self.t0 += self.chunk
        keep = lp[0, max(0, -first): max(0, min(self.chunk, out_frames - first))]
        self.emitted += keep.shape[0]
        return keep

    def feed(self, samples: torch.Tensor) -> torch.Tensor:
        """Append samples (S,) fp32; returns the (n, C) log-probs that became final."""
        self.buffer = torch.cat([self.buffer, samples.float().flatten()])
        self.received += samples.numel()
        out = []
        while self.buffer.numel() >= self.window:
            out.append(self._step(self.buffer[: self.window], NOT_ENDED, NOT_ENDED))
            self.buffer = self.buffer[self.advance:]
        return torch.cat(out) if out else torch.zeros(0, self.geometry.vocab_size)

    def finish(self) -> torch.Tensor:
        """End the stream: the log-probs of its remaining frames (zero-padded as the whole model pads)."""
        frames = int(frame_lengths(torch.tensor(self.received), self.geometry.hop))
        out_frames = self.geometry.output_frames(self.received)
        out = []
        while self.emitted < out_frames:
            if self.buffer.numel() < self.window:
                self.buffer = torch.cat([self.buffer, torch.zeros(self.window - self.buffer.numel())])
            out.append(self._step(self.buffer[: self.window], frames, out_frames))
            self.buffer = self.buffer[self.advance:]
        return torch.cat(out) if out else torch.zeros(0, self.geometry.vocab_size)


def stream_geometry(step: StreamingStep, loaded: LoadedModel) -> StreamGeometry:
    """The sizes a `StreamingSession` needs for `step` (stored in the streaming model's sidecar)."""
    window = step.conv_window
    lead = -(int(window.first_frames(torch.tensor([0]))[0][0]) * step.hop - step.n_fft // 2)
    spf, model = loaded.samples_per_frame, step.model
    future = model.future_frames() or 0
    return StreamGeometry(
        chunk_frames=window.chunk, lookahead=model.cfg.lookahead, window_samples=step.window, samples_per_frame=spf,
        lead_samples=lead, hop=step.hop, conv_layers=window.layers, layers=len(model.rnns),
        hidden=model.cfg.rnn_hidden, ahead_dim=model.rnns[-1].out_dim, vocab_size=loaded.tokenizer.size,
        chunk_seconds=window.chunk * spf / loaded.sample_rate,
        # A frame is final once the audio of its future context (convs + lookahead) and of its whole chunk has
        # arrived: the worst case is the chunk's first frame.
        latency_seconds=round((window.chunk * spf + future * step.hop + step.n_fft // 2) / loaded.sample_rate, 3))


def _example(g: StreamGeometry) -> tuple[torch.Tensor, ...]:
    L, H, D = g.layers, g.hidden, g.ahead_dim
    return (0.1 * torch.randn(1, g.window_samples, generator=torch.Generator().manual_seed(0)), torch.zeros(L, 1, H),
            torch.zeros(L, 1, H), torch.zeros(1, max(g.lookahead, 1), D), torch.tensor([0]), torch.tensor([NOT_ENDED]),
            torch.tensor([NOT_ENDED]))


STEP_INPUTS = ["window", "h", "c", "ahead", "first", "frames", "out_frames"]
STEP_OUTPUTS = ["log_probs", "h_out", "c_out", "ahead_out"]


def stream_transcript_log_probs(step_fn: Callable, geometry: StreamGeometry, wave: torch.Tensor,
                                piece: int) -> torch.Tensor:
    """Run `wave` (S,) through a StreamingSession in pieces of `piece` samples -> (T', C) log-probs."""
    session = StreamingSession(step_fn, geometry)
    out = [session.feed(wave[i: i + piece]) for i in range(0, wave.numel(), piece)]
    out.append(session.finish())
    return torch.cat(out)


def load_streaming(path: str | Path) -> tuple[Callable, StreamGeometry]:
    """An exported streaming step (.stream.onnx / .stream.pt + sidecar) -> (step_fn, geometry) for StreamingSession."""
    path = Path(path)
    meta = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    if meta["format"] == "onnx":
        session = onnx_session(path, threads=1)

        def step_fn(*args):
            outs = session.run(STEP_OUTPUTS, {n: a.numpy() for n, a in zip(STEP_INPUTS, args)})
            return tuple(torch.from_numpy(o) for o in outs)
    else:
        module = load_torchscript(path)

        def step_fn(*args):
            return run_torchscript(module, *args)
    return step_fn, StreamGeometry.from_dict(meta["streaming"])


def export_streaming(loaded: LoadedModel, fmt: str, out: Path, check_waves: Sequence[torch.Tensor],
                     chunk: int, tolerance: float) -> dict[str, Any]:
    """Write the streaming step of `loaded` to `out` (+ sidecar) after checking, on `check_waves` fed in odd-sized
    pieces, that the streamed log-probs match the whole-utterance PyTorch model within `tolerance` and the greedy
    transcripts are identical. Returns the sidecar's "streaming" entry (with "path" and "parity")."""
    from asr.decoding.greedy import greedy_decode
    from asr.export.exporter import publish, staged, write_model
    from asr.export.graph import sidecar

    step = StreamingStep(loaded, chunk).eval()
    geometry = stream_geometry(step, loaded)
    axes = {n: {0: "batch"} for n in ["window", "first", "frames", "out_frames", "log_probs", "ahead", "ahead_out"]}
    axes.update({n: {1: "batch"} for n in ["h", "c", "h_out", "c_out"]})
    meta = {**sidecar(loaded, fmt, out.name, {}), "streaming": geometry.to_dict()}
    with staged(out) as tmp:
        write_model(step, _example(geometry), tmp, fmt, STEP_INPUTS, STEP_OUTPUTS, axes)
        sidecar_path(tmp).write_text(json.dumps(meta))
        step_fn, _ = load_streaming(tmp)
        worst, same = 0.0, True
        for k, w in enumerate(check_waves):
            ref, n = loaded.log_probs(w[None], torch.tensor([w.numel()]))
            got = stream_transcript_log_probs(step_fn, geometry, w, piece=997 + 331 * k)
            if got.shape[0] != int(n[0]):
                raise ExportError(f"{out}: streaming gave {got.shape[0]} frames, the model {int(n[0])}")
            worst = max(worst, float((got - ref[0, : int(n[0])].cpu()).abs().max()))
            same &= greedy_decode(got[None], n, loaded.tokenizer) == greedy_decode(ref.cpu(), n, loaded.tokenizer)
        meta["parity"] = {"utterances": len(check_waves), "max_abs_diff": worst, "greedy_identical": bool(same),
                          "tolerance": tolerance, "fed_in_pieces_of": "997 + 331 k samples"}
        if not same or worst > tolerance:
            raise ExportError(f"{out}: streamed log-probs differ from the whole-utterance model (max {worst:.2e}, "
                              f"tolerance {tolerance:.0e}, greedy identical: {same}); nothing was written")
        publish(tmp, out, meta)
    return {**geometry.to_dict(), "path": str(out), "parity": meta["parity"]}
