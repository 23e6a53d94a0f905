"""The conv front-ends of the acoustic model: (feats (B, T, F), lengths (B,)) -> (x (B, T', D), lengths' (B,)).

`ConvSubsampling` (DeepSpeech2: strided 3 x 3 convs, masked BatchNorm, Hardtanh) and `VGGSubsampling`
(SpeechBrain CRDNN's blocks), the one length rule (`conv_lengths`, `subsampled_lengths`) and the strided
front-end's streaming step (`ConvSubsampling.window` / `.step`). Padding never reaches valid frames (see
`asr.model.acoustic`'s docstring).

Shapes: B batch, T input frames, F mel bins, T' frames after time subsampling, D channels x reduced mel bins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from asr.lengths import lengths_to_mask

# (time, frequency) kernel of each conv layer; layers past the end of this tuple reuse the last entry.
# Time kernels must be odd (centred, padding k // 2) for `output_lengths` to hold. Small 3 x 3 kernels rather
# than DeepSpeech2's (11, 41)/(11, 21): measured on 2 CPU cores (B=12 x 1000 frames x 80 mels, small preset),
# forward+backward takes 0.8 s with 3 x 3 against 1.8 s with the DS2 kernels, whose 32->32 (11, 21) conv costs
# as much as the whole 3 x BiLSTM-256 stack. The recurrent layers supply the long context anyway.
CONV_KERNELS: tuple[tuple[int, int], ...] = ((3, 3), (3, 3))
FREQ_STRIDE = 2  # default mel-axis stride: every conv halves the mel bins (rounding up); model.conv_freq_strides



class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over (B, D, T, F) whose training statistics use only valid frames.

    With plain BatchNorm2d, the zeroed padding of a batch would pull the batch mean towards 0 and shrink the
    variance, so an utterance's normalised values (and the running statistics) would depend on how much
    padding its batch-mates brought. Statistics are computed in fp32 (also under autocast).
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training:
            return super().forward(x)
        m = mask[:, None, :, None]  # (B, 1, T, 1)
        xf = x.float().masked_fill(~m, 0.0)
        n = (mask.sum() * x.shape[3]).clamp(min=1).to(xf.dtype)
        mean = xf.sum(dim=(0, 2, 3)) / n
        var = ((xf - mean[None, :, None, None]).masked_fill(~m, 0.0) ** 2).sum(dim=(0, 2, 3)) / n
        with torch.no_grad():
            assert self.running_mean is not None and self.running_var is not None
            self.num_batches_tracked += 1  # type: ignore[operator]
            mom = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean, mom)
            self.running_var.lerp_(var * n / (n - 1).clamp(min=1), mom)  # unbiased, as nn.BatchNorm does
        scale = self.weight * torch.rsqrt(var + self.eps)  # (D,)
        shift = self.bias - mean * scale
        return (xf * scale[None, :, None, None] + shift[None, :, None, None]).to(x.dtype)


def conv_lengths(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Output frames of one conv layer (odd time kernel, centred padding) for `lengths` input frames: the one
    length rule that the front-end, `subsampled_lengths` and the streaming step all use."""
    return torch.div(lengths + 2 * (kernel // 2) - kernel, stride, rounding_mode="floor") + 1


def subsampled_lengths(lengths: torch.Tensor, time_strides: Sequence[int]) -> torch.Tensor:
    """T' (B,) after the conv front-end for T (B,) feature frames: `ConvSubsampling`'s arithmetic (each layer's
    time kernel from CONV_KERNELS, centred padding), for code that needs T' without building a model (the doctor)."""
    for i, st in enumerate(time_strides):
        lengths = conv_lengths(lengths, CONV_KERNELS[min(i, len(CONV_KERNELS) - 1)][0], st)
    return lengths


@dataclass(frozen=True)
class ConvWindow:
    """The conv front-end's view of one streaming chunk of `chunk` output frames: per layer (time stride, time
    padding), first to last, and the input frames each layer needs (`counts[0]`: feature frames)."""

    chunk: int
    layers: tuple[tuple[int, int], ...]
    counts: tuple[int, ...]

    def first_frames(self, t0: torch.Tensor) -> list[torch.Tensor]:
        """Absolute index of the first input frame of each conv layer (features first) for output frame t0 (B,)."""
        starts, a = [], t0
        for st, pad in reversed(self.layers):
            a = st * a - pad
            starts.append(a)
        return list(reversed(starts))


class ConvSubsampling(nn.Module):
    """(feats (B, T, F), lengths (B,)) -> (x (B, T', D), lengths' (B,)), D = channels x reduced mel bins.

    Conv2d over (time, freq) -> masked BatchNorm2d -> Hardtanh(0, 20) (DeepSpeech2's clipped ReLU) -> Dropout2d
    (whole channels of an utterance; `dropout` 0 = none), per layer.
    `freq_strides` (default FREQ_STRIDE for every layer) sets each layer's stride along the mel bins, so a layer
    that keeps the full frame rate (time stride 1) need not halve the mel bins once more as well.
    """

    def __init__(self, n_mels: int, channels: Sequence[int], time_strides: Sequence[int],
                 freq_strides: Sequence[int] | None = None, dropout: float = 0.0):
        super().__init__()
        freq_strides = list(freq_strides) if freq_strides is not None else [FREQ_STRIDE] * len(channels)
        self.kernels = [CONV_KERNELS[min(i, len(CONV_KERNELS) - 1)] for i in range(len(channels))]
        self.time_strides = list(time_strides)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in, f = 1, n_mels
        for c_out, (kt, kf), st, sf in zip(channels, self.kernels, self.time_strides, freq_strides):
            assert kt % 2 == 1, "time kernels must be odd for output_lengths to hold"
            self.convs.append(nn.Conv2d(c_in, c_out, (kt, kf), stride=(st, sf), padding=(kt // 2, kf // 2),
                                        bias=False))  # the batch norm's shift is the bias
            self.norms.append(MaskedBatchNorm2d(c_out))
            f = (f + 2 * (kf // 2) - kf) // sf + 1
            c_in = c_out
        self.out_dim = c_in * f
        self.act = nn.Hardtanh(0.0, 20.0)
        self.drop = nn.Dropout2d(dropout)  # identity in eval mode, so the streaming step needs none

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return subsampled_lengths(lengths, self.time_strides)

    def future_frames(self) -> int:
        """Input frames past t that output frame t' = t / subsampling can see (the convs' centred kernels)."""
        ahead, stride = 0, 1
        for (kt, _), st in zip(self.kernels, self.time_strides):
            ahead += (kt // 2) * stride
            stride *= st
        return ahead

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.unsqueeze(1)  # (B, 1, T, F)
        for conv, norm, (kt, _), st in zip(self.convs, self.norms, self.kernels, self.time_strides):
            # Zero the padding so the kernel sees the same zeros an utterance alone gets from conv padding.
            x = x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
            x = conv(x)
            lengths = conv_lengths(lengths, kt, st)
            x = self.drop(self.act(norm(x, lengths_to_mask(lengths, x.shape[2]))))
        B, D, T, F = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T, D * F), lengths

    def window(self, chunk: int) -> ConvWindow:
        """The input frames `chunk` consecutive output frames need, layer by layer (streaming)."""
        layers = tuple((st, kt // 2) for (kt, _), st in zip(self.kernels, self.time_strides))
        counts, n = [], chunk
        for st, pad in reversed(layers):
            n = st * (n - 1) + 2 * pad + 1
            counts.append(n)
        return ConvWindow(chunk, layers, tuple(reversed(counts)))

    def step(self, feats: torch.Tensor, window: ConvWindow, t0: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Streaming: feats (B, counts[0], F) of feature frames first_frames(t0)[0] .. -> x (B, chunk, D), equal
        to forward()'s frames t0 .. t0 + chunk - 1 (eval mode). Frames before the stream's start or past its end
        (`frames` (B,) feature frames; huge while it is open) are the zeros forward() pads with."""
        x, limits = feats.unsqueeze(1), frames  # (B, 1, n0, F)
        for conv, norm, (kt, _), st, start in zip(self.convs, self.norms, self.kernels, self.time_strides,
                                                  window.first_frames(t0)):
            idx = start[:, None] + torch.arange(x.shape[2])[None, :]  # (B, n_i): absolute frame numbers
            valid = (idx >= 0) & (idx < limits[:, None])
            x = x.masked_fill(~valid[:, None, :, None], 0.0)
            x = nn.functional.conv2d(x, conv.weight, None, stride=(st, conv.stride[1]), padding=(0, conv.padding[1]))
            x = self.act(norm(x, None))
            limits = conv_lengths(limits, kt, st)
        B, D, T, F = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T, D * F)


class VGGSubsampling(nn.Module):
    """(feats (B, T, F), lengths (B,)) -> (x (B, T', D), lengths' (B,)): SpeechBrain CRDNN's front-end.

    Per block: [3 x 3 conv -> LayerNorm over (channels, mel bins) -> LeakyReLU] twice at the block's input rate,
    then max-pooling by (time stride, 2), then Dropout2d (`dropout`; CRDNN uses its model dropout, 0.15). LayerNorm
    is per frame, so no statistic crosses frames and padding cannot leak into valid frames; the pooling sees padded
    frames as -inf (ceil mode), so an utterance's last odd frame is pooled alone, exactly as without padding. T'
    follows the same rule as `ConvSubsampling`: ceil(T / stride) per block (`subsampled_lengths`).
    """

    def __init__(self, n_mels: int, channels: Sequence[int], time_strides: Sequence[int], dropout: float = 0.0):
        super().__init__()
        self.time_strides = list(time_strides)
        self.kernels = [(3, 3)] * len(channels)  # per block (both convs); used by the length rule only
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in, f = 1, n_mels
        for c_out in channels:
            for c_a, c_b in ((c_in, c_out), (c_out, c_out)):
                self.convs.append(nn.Conv2d(c_a, c_b, (3, 3), padding=(1, 1)))
                self.norms.append(nn.LayerNorm([c_b, f]))
            f = (f + 1) // 2
            c_in = c_out
        self.out_dim = c_in * f
        self.act = nn.LeakyReLU()
        self.drop = nn.Dropout2d(dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return subsampled_lengths(lengths, self.time_strides)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.unsqueeze(1)  # (B, 1, T, F)
        for b, st in enumerate(self.time_strides):
            for conv, norm in zip(self.convs[2 * b: 2 * b + 2], self.norms[2 * b: 2 * b + 2]):
                x = x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
                x = self.act(norm(conv(x).transpose(1, 2)).transpose(1, 2))  # LayerNorm over (C, F) per frame
            pad = ~lengths_to_mask(lengths, x.shape[2])[:, None, :, None]
            x = nn.functional.max_pool2d(x.masked_fill(pad, float("-inf")), (st, 2), ceil_mode=True)
            lengths = torch.div(lengths - 1, st, rounding_mode="floor") + 1
            x = self.drop(x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0.0))
        B, D, T, F = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T, D * F), lengths
