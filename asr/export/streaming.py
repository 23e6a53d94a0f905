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

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from asr.inference.exported import ExportError, frames_for_samples, load_torchscript, onnx_session, sidecar_path
from asr.model.features import frame_lengths
from asr.inference.loading import LoadedModel
from asr.model.acoustic import AcousticModel, intermediate_ctc

NOT_ENDED = 1 << 40  # total frames while a stream is still open: nothing is past its end yet


def _span(kernels: Sequence[int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """Per conv layer (first to last): (stride, pad), for the window arithmetic."""
    return [(st, kt // 2) for kt, st in zip(kernels, strides)]


class StreamingStep(nn.Module):
    """(window (B, W), h (L, B, H), c (L, B, H), ahead (B, tau, D), first (B,), frames (B,), out_frames (B,))
    -> (log_probs (B, N, C), h', c', ahead').

    `first` is the index of the chunk's first recurrent frame t0 (a multiple of N); the window holds the samples
    of feature frames a0 .. a0 + n0 - 1 (`StreamingSession.window_start`). log_probs are those of output frames
    t0 - tau .. t0 + N - tau - 1 (the lookahead delays them by tau). frames / out_frames: the stream's feature
    and output frame counts once it has ended (NOT_ENDED before), so the end is zero-masked as in training.
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
        self.conv, self.rnns, self.lookahead, self.head = model.conv, model.rnns, model.lookahead, model.head
        self.inter_cond = model.inter_cond  # self-conditioned CTC (None: off), applied after layer `cond_layer`
        self.cond_layer = model.cfg.inter_layer
        self.chunk = chunk
        self.tau = model.lookahead.tau if model.lookahead is not None else 0
        self.layers = _span([k[0] for k in model.conv.kernels], model.conv.time_strides)
        self.hop, self.n_fft = self.frontend.hop, self.frontend.n_fft
        # Input frames of each conv layer needed for N outputs, from the last layer back to the features.
        counts, n = [], chunk
        for st, pad in reversed(self.layers):
            n = st * (n - 1) + 2 * pad + 1
            counts.append(n)
        self.in_counts = list(reversed(counts))  # [features, conv1 outputs, ...]
        self.window = (self.in_counts[0] - 1) * self.hop + self.n_fft

    def first_frames(self, t0: torch.Tensor) -> list[torch.Tensor]:
        """Index of the first input frame of each conv layer (features first) for recurrent frame t0."""
        starts, a = [], t0
        for st, pad in reversed(self.layers):
            a = st * a - pad
            starts.append(a)
        return list(reversed(starts))

    def forward(self, window, h, c, ahead, first, frames, out_frames):
        # Features of the window's frames (no centre padding: the window already starts n_fft / 2 early).
        x = self.frontend.log_mel(window).unsqueeze(1)  # (B, 1, n0, F)
        limits = frames
        starts = self.first_frames(first)
        for conv, norm, (st, pad), start in zip(self.conv.convs, self.conv.norms, self.layers, starts):
            idx = start[:, None] + torch.arange(x.shape[2])[None, :]  # (B, n_i): absolute frame numbers
            valid = (idx >= 0) & (idx < limits[:, None])  # before the start / past the end = the conv's zeros
            x = x.masked_fill(~valid[:, None, :, None], 0.0)
            x = nn.functional.conv2d(x, conv.weight, None, stride=(st, conv.stride[1]), padding=(0, conv.padding[1]))
            x = self.conv.act(norm(x, None))
            limits = torch.div(limits + 2 * pad - (2 * pad + 1), st, rounding_mode="floor") + 1
        Bx, D, T, F = x.shape
        x = x.permute(0, 2, 1, 3).reshape(Bx, T, D * F)  # (B, N, D_conv)
        hs, cs = [], []
        for i, layer in enumerate(self.rnns):
            x, (hi, ci) = layer.fwd(x, (h[i: i + 1], c[i: i + 1]))
            x = layer.norm(x)
            if self.inter_cond is not None and i + 1 == self.cond_layer:
                x, _ = intermediate_ctc(x, self.head, self.inter_cond)
            hs.append(hi)
            cs.append(ci)
        t = first[:, None] + torch.arange(self.chunk)[None, :]  # (B, N)
        x = x.masked_fill((t >= out_frames[:, None])[:, :, None], 0.0)  # past the end: the lookahead's zeros
        if self.tau > 0:
            z = torch.cat([ahead, x], dim=1)  # (B, tau + N, D): frames t0 - tau .. t0 + N - 1
            ahead = z[:, -self.tau:]
            x = self.lookahead.conv(z.transpose(1, 2)).transpose(1, 2)  # (B, N, D): frames t0 - tau ..
        return self.head(x).float().log_softmax(dim=-1), torch.cat(hs), torch.cat(cs), ahead


class StreamingSession:
    """Feed audio in pieces of any size; get log-probs as soon as they are final.

        session = StreamingSession(step_fn, spec)
        for piece in audio_pieces: frames = session.feed(piece)   # (n, C), maybe n = 0
        frames = session.finish()                                    # the rest

    `step_fn(window, h, c, ahead, first, frames, out_frames)` is a `StreamingStep` (PyTorch) or an exported one
    (`load_streaming`); `spec` its sizes (the sidecar's "streaming" entry).
    """

    def __init__(self, step_fn: Callable, spec: dict[str, Any]):
        self.step_fn, self.spec = step_fn, spec
        self.chunk, self.tau = int(spec["chunk_frames"]), int(spec["lookahead"])
        self.window = int(spec["window_samples"])
        self.advance = int(spec["chunk_frames"]) * int(spec["samples_per_frame"])
        self.buffer = torch.zeros(int(spec["lead_samples"]))  # samples before the stream's start are zeros
        self.received, self.t0, self.emitted = 0, 0, 0
        L, H, D = int(spec["layers"]), int(spec["hidden"]), int(spec["ahead_dim"])
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
        return torch.cat(out) if out else torch.zeros(0, int(self.spec["vocab_size"]))

    def finish(self) -> torch.Tensor:
        """End the stream: the log-probs of its remaining frames (zero-padded as the whole model pads)."""
        frames = int(frame_lengths(torch.tensor(self.received), int(self.spec["hop"])))
        out_frames = output_frames(self.spec, self.received)
        out = []
        while self.emitted < out_frames:
            if self.buffer.numel() < self.window:
                self.buffer = torch.cat([self.buffer, torch.zeros(self.window - self.buffer.numel())])
            out.append(self._step(self.buffer[: self.window], frames, out_frames))
            self.buffer = self.buffer[self.advance:]
        return torch.cat(out) if out else torch.zeros(0, int(self.spec["vocab_size"]))


def output_frames(spec: dict[str, Any], num_samples: int) -> int:
    """T' of a stream of num_samples samples (from the spec's hop and conv strides)."""
    return frames_for_samples(num_samples, int(spec["hop"]), [st for st, _ in spec["conv_layers"]])


def step_spec(step: StreamingStep, loaded: LoadedModel) -> dict[str, Any]:
    """The sizes a `StreamingSession` needs (stored in the streaming model's sidecar)."""
    lead = -(int(step.first_frames(torch.tensor([0]))[0][0]) * step.hop - step.n_fft // 2)
    spf = loaded.samples_per_frame
    future = loaded.model.future_frames() or 0
    return {"chunk_frames": step.chunk, "lookahead": step.tau, "window_samples": step.window,
            "samples_per_frame": spf, "lead_samples": lead, "hop": step.hop,
            "conv_layers": [list(x) for x in step.layers], "layers": len(step.rnns),
            "hidden": loaded.config.model.rnn_hidden, "ahead_dim": step.rnns[-1].out_dim,
            "vocab_size": loaded.tokenizer.size, "chunk_seconds": step.chunk * spf / loaded.sample_rate,
            # A frame is final once the audio of its future context (convs + lookahead) and of its whole chunk
            # has arrived: the worst case is the chunk's first frame.
            "latency_seconds": round((step.chunk * spf + future * step.hop + step.n_fft // 2) / loaded.sample_rate, 3)}


def _example(step: StreamingStep, spec: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    L, H, D = spec["layers"], spec["hidden"], spec["ahead_dim"]
    return (0.1 * torch.randn(1, step.window, generator=torch.Generator().manual_seed(0)), torch.zeros(L, 1, H),
            torch.zeros(L, 1, H), torch.zeros(1, max(step.tau, 1), D), torch.tensor([0]), torch.tensor([NOT_ENDED]),
            torch.tensor([NOT_ENDED]))


STEP_INPUTS = ["window", "h", "c", "ahead", "first", "frames", "out_frames"]
STEP_OUTPUTS = ["log_probs", "h_out", "c_out", "ahead_out"]


def stream_transcript_log_probs(step_fn: Callable, spec: dict[str, Any], wave: torch.Tensor,
                                piece: int) -> torch.Tensor:
    """Run `wave` (S,) through a StreamingSession in pieces of `piece` samples -> (T', C) log-probs."""
    session = StreamingSession(step_fn, spec)
    out = [session.feed(wave[i: i + piece]) for i in range(0, wave.numel(), piece)]
    out.append(session.finish())
    return torch.cat(out)


def load_streaming(path: str | Path) -> tuple[Callable, dict[str, Any]]:
    """An exported streaming step (.stream.onnx / .stream.pt + sidecar) -> (step_fn, spec) for StreamingSession."""
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
            with torch.no_grad():
                return module(*args)
    return step_fn, meta["streaming"]


def export_streaming(loaded: LoadedModel, fmt: str, out: Path, check_waves: Sequence[torch.Tensor],
                     chunk: int, tolerance: float) -> dict[str, Any]:
    """Write the streaming step of `loaded` to `out` (+ sidecar) after checking, on `check_waves` fed in odd-sized
    pieces, that the streamed log-probs match the whole-utterance PyTorch model within `tolerance` and the greedy
    transcripts are identical. Returns the sidecar's "streaming" entry (with "path" and "parity")."""
    from asr.decoding.greedy import greedy_decode
    from asr.export.exporter import publish, staged, write_model
    from asr.export.graph import sidecar

    step = StreamingStep(loaded, chunk).eval()
    spec = step_spec(step, loaded)
    axes = {n: {0: "batch"} for n in ["window", "first", "frames", "out_frames", "log_probs", "ahead", "ahead_out"]}
    axes.update({n: {1: "batch"} for n in ["h", "c", "h_out", "c_out"]})
    meta = {**sidecar(loaded, fmt, out.name, {}), "streaming": spec}
    with staged(out) as tmp:
        write_model(step, _example(step, spec), tmp, fmt, STEP_INPUTS, STEP_OUTPUTS, axes)
        sidecar_path(tmp).write_text(json.dumps(meta))
        step_fn, _ = load_streaming(tmp)
        worst, same = 0.0, True
        for k, w in enumerate(check_waves):
            ref, n = loaded.log_probs(w[None], torch.tensor([w.numel()]))
            got = stream_transcript_log_probs(step_fn, spec, w, piece=997 + 331 * k)
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
    return {**spec, "path": str(out), "parity": meta["parity"]}
