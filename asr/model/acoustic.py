"""DeepSpeech2-style acoustic model: 2-D conv subsampling -> recurrent stack -> linear head -> log-probs.

Shapes: B batch, T input frames, F mel bins, T' frames after time subsampling, C vocabulary incl. blank,
D channels/features of an intermediate sequence.

Padded batches, no packing. DESIGN.md: packed sequences make cuDNN LSTMs much slower, so the model runs on
plain padded tensors and masks instead. Every stage is written so that an utterance's outputs on its valid
frames are exactly what it would get alone in a batch of one (the tests check this):

* conv front-end: padded frames are zeroed before each conv (so they look like the conv's own zero padding)
  and batch-norm statistics are taken over valid frames only (`MaskedBatchNorm2d`);
* forward recurrences only look back, so trailing padding cannot reach valid frames;
* the backward direction of a bidirectional layer would start at the padded end of the batch and carry the
  padding into the valid frames. It is therefore a separate unidirectional RNN fed each sequence reversed
  *within its own length* (`reverse_padded`): valid frames first, padding still at the end. The price is two
  RNN calls per layer instead of one fused bidirectional cuDNN call: measured on an H200 (fp16 autocast,
  32 x 15 s), the large preset's training step took 319 ms against 291 ms fused (+10%); the small preset's
  was no slower (53 ms, 64 x 15 s), and on CPU the two are the same;
* the lookahead (row) convolution sees zeroed padding, exactly like its own zero padding when alone.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from asr.config import ModelConfig
from asr.lengths import lengths_to_mask

# (time, frequency) kernel of each conv layer; layers past the end of this tuple reuse the last entry.
# Time kernels must be odd (centred, padding k // 2) for `output_lengths` to hold. Small 3 x 3 kernels rather
# than DeepSpeech2's (11, 41)/(11, 21): measured on 2 CPU cores (B=12 x 1000 frames x 80 mels, small preset),
# forward+backward takes 0.8 s with 3 x 3 against 1.8 s with the DS2 kernels, whose 32->32 (11, 21) conv costs
# as much as the whole 3 x BiLSTM-256 stack. The recurrent layers supply the long context anyway.
CONV_KERNELS: tuple[tuple[int, int], ...] = ((3, 3), (3, 3))
FREQ_STRIDE = 2  # default mel-axis stride: every conv halves the mel bins (rounding up); model.conv_freq_strides


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of x (B, T, D) within its own length; padding frames stay where they are.

    Frame t < L_b of row b goes to L_b - 1 - t. The map is its own inverse, so the same call undoes it.
    """
    B, T = x.shape[0], x.shape[1]
    t = torch.arange(T, device=x.device).expand(B, T)
    L = lengths.to(x.device)[:, None]
    idx = torch.where(t < L, L - 1 - t, t)  # (B, T)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


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


def subsampled_lengths(lengths: torch.Tensor, time_strides: Sequence[int]) -> torch.Tensor:
    """T' (B,) after the conv front-end for T (B,) feature frames: `ConvSubsampling`'s arithmetic (each layer's
    time kernel from CONV_KERNELS, centred padding), for code that needs T' without building a model (the doctor)."""
    for i, st in enumerate(time_strides):
        kt = CONV_KERNELS[min(i, len(CONV_KERNELS) - 1)][0]
        lengths = torch.div(lengths + 2 * (kt // 2) - kt, st, rounding_mode="floor") + 1
    return lengths


class ConvSubsampling(nn.Module):
    """(feats (B, T, F), lengths (B,)) -> (x (B, T', D), lengths' (B,)), D = channels x reduced mel bins.

    Conv2d over (time, freq) -> masked BatchNorm2d -> Hardtanh(0, 20) (DeepSpeech2's clipped ReLU), per layer.
    `freq_strides` (default FREQ_STRIDE for every layer) sets each layer's stride along the mel bins, so a layer
    that keeps the full frame rate (time stride 1) need not halve the mel bins once more as well.
    """

    def __init__(self, n_mels: int, channels: Sequence[int], time_strides: Sequence[int],
                 freq_strides: Sequence[int] | None = None):
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
            lengths = torch.div(lengths + 2 * (kt // 2) - kt, st, rounding_mode="floor") + 1
            x = self.act(norm(x, lengths_to_mask(lengths, x.shape[2])))
        B, D, T, F = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T, D * F), lengths


class VGGSubsampling(nn.Module):
    """(feats (B, T, F), lengths (B,)) -> (x (B, T', D), lengths' (B,)): SpeechBrain CRDNN's front-end.

    Per block: [3 x 3 conv -> LayerNorm over (channels, mel bins) -> LeakyReLU] twice at the block's input rate,
    then max-pooling by (time stride, 2). LayerNorm is per frame, so no statistic crosses frames and padding cannot
    leak into valid frames; the pooling sees padded frames as -inf (ceil mode), so an utterance's last odd frame is
    pooled alone, exactly as without padding. T' follows the same rule as `ConvSubsampling`: ceil(T / stride) per
    block (`subsampled_lengths`).
    """

    def __init__(self, n_mels: int, channels: Sequence[int], time_strides: Sequence[int]):
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
            x = x.masked_fill(~lengths_to_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
        B, D, T, F = x.shape
        return x.permute(0, 2, 1, 3).reshape(B, T, D * F), lengths


class RecurrentLayer(nn.Module):
    """(x (B, T', D_in), lengths) -> (B, T', H * directions): RNN -> LayerNorm -> dropout.

    Directions are concatenated (not summed, as DeepSpeech2 does); the next layer's input weights or the head
    project them. The backward direction runs on `reverse_padded` input (module docstring says why).
    """

    def __init__(self, rnn_type: str, d_in: int, hidden: int, bidirectional: bool, dropout: float):
        super().__init__()
        rnn_cls = nn.LSTM if rnn_type == "lstm" else nn.GRU
        self.fwd = rnn_cls(d_in, hidden, batch_first=True)
        self.bwd = rnn_cls(d_in, hidden, batch_first=True) if bidirectional else None
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.norm = nn.LayerNorm(self.out_dim)
        self.dropout = nn.Dropout(dropout)
        if rnn_type == "lstm":
            # Forget-gate bias 1 (gate order i, f, g, o): remember by default early in training
            # (Jozefowicz et al. 2015, "An Empirical Exploration of Recurrent Network Architectures").
            for rnn in (self.fwd, self.bwd):
                if rnn is not None:
                    with torch.no_grad():
                        rnn.bias_ih_l0[hidden:2 * hidden].fill_(1.0)
                        rnn.bias_hh_l0[hidden:2 * hidden].zero_()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y, _ = self.fwd(x)
        if self.bwd is not None:
            yb, _ = self.bwd(reverse_padded(x, lengths))
            y = torch.cat([y, reverse_padded(yb, lengths)], dim=-1)
        return self.dropout(self.norm(y))


class Lookahead(nn.Module):
    """DeepSpeech2's row convolution: out[t] = sum_{k=0..tau} w[k] * x[t + k], per feature (depthwise)."""

    def __init__(self, dim: int, tau: int):
        super().__init__()
        self.tau = tau
        self.conv = nn.Conv1d(dim, dim, kernel_size=tau + 1, groups=dim, bias=False)
        with torch.no_grad():  # start as the identity (all weight on the current frame)
            self.conv.weight.zero_()
            self.conv.weight[:, 0, 0] = 1.0

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = x.masked_fill(~lengths_to_mask(lengths, x.shape[1])[:, :, None], 0.0)  # padding = the conv's zeros
        y = nn.functional.pad(x.transpose(1, 2), (0, self.tau))  # (B, D, T' + tau)
        return self.conv(y).transpose(1, 2)


def intermediate_ctc(x: torch.Tensor, head: nn.Linear, cond: nn.Linear | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Output x (B, T', D) of the intermediate CTC layer -> (the next layer's input (B, T', D), the layer's CTC
    log-probs through the shared head (B, T', C) fp32). The next layer gets x itself, or with self-conditioning
    (`cond`: C -> D) x + cond(posteriors); frame by frame, so padding frames cannot reach valid ones."""
    log_probs = head(x).float().log_softmax(dim=-1)
    if cond is not None:
        x = x + cond(log_probs.exp().to(x.dtype))
    return x, log_probs


class AcousticModel(nn.Module):
    """(feats (B, T, F), lengths (B,)) -> (log_probs (B, T', C) fp32, out_lengths (B,)).

    conv subsampling (time / cfg.subsampling, freq / 2 per layer) -> cfg.rnn_layers recurrent layers
    (bidirectional, or unidirectional + lookahead for streaming) -> linear head -> log_softmax.
    Frames past out_lengths in log_probs are padding (finite, meaningless).
    """

    def __init__(self, cfg: ModelConfig, n_mels: int, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.subsampling = cfg.subsampling
        self.conv = (VGGSubsampling(n_mels, cfg.conv_channels, cfg.conv_time_strides) if cfg.frontend == "vgg" else
                     ConvSubsampling(n_mels, cfg.conv_channels, cfg.conv_time_strides, cfg.conv_freq_strides))
        layers, d = [], self.conv.out_dim
        for _ in range(cfg.rnn_layers):
            layers.append(RecurrentLayer(cfg.rnn_type, d, cfg.rnn_hidden, cfg.bidirectional, cfg.dropout))
            d = layers[-1].out_dim
        self.rnns = nn.ModuleList(layers)
        self.lookahead = Lookahead(d, cfg.lookahead) if cfg.lookahead > 0 else None
        # The head: a linear layer, or (model.dnn_neurons > 0) CRDNN's DNN block before it, per frame. Intermediate
        # CTC reads its layer through the same head, DNN block included.
        linear = nn.Linear(cfg.dnn_neurons or d, vocab_size)
        self.head = linear if not cfg.dnn_neurons else nn.Sequential(
            nn.Linear(d, cfg.dnn_neurons), nn.LayerNorm(cfg.dnn_neurons), nn.LeakyReLU(), nn.Dropout(cfg.dropout),
            linear)
        # Self-conditioned CTC: posteriors (C) of the intermediate layer back to its width (D).
        self.inter_cond = nn.Linear(vocab_size, layers[cfg.inter_layer - 1].out_dim) if cfg.self_condition else None

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """T' for input lengths T (B,): exactly the out_lengths forward() returns."""
        return self.conv.output_lengths(lengths)

    def future_frames(self) -> int | None:
        """Input frames of future context an output frame sees (None: bidirectional = whole utterance)."""
        if self.cfg.bidirectional:
            return None
        return self.conv.future_frames() + self.cfg.lookahead * self.subsampling

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> str:
        c = self.cfg
        rnn = f"{'Bi' if c.bidirectional else ''}{c.rnn_type.upper()}-{c.rnn_hidden}"
        ahead = "" if self.lookahead is None else f" + lookahead {c.lookahead}"
        if self.inter_cond is not None:
            ahead += f", self-conditioned CTC at layer {c.inter_layer}"
        fut = self.future_frames()
        ctx = "" if fut is None else f", future context {fut} frames"
        return (f"AcousticModel '{c.name}': {len(c.conv_channels)} conv {list(c.conv_channels)} ch "
                f"(time /{self.subsampling}), {c.rnn_layers} x {rnn}{ahead}, vocab {self.vocab_size}{ctx}: "
                f"{self.num_parameters() / 1e6:.2f} M parameters")

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, intermediate: bool = False
                ) -> tuple[torch.Tensor, ...]:
        """-> (log_probs (B, T', C), out_lengths (B,)); with `intermediate` (training with model.inter_ctc_weight
        > 0) also the log-probs of recurrent layer cfg.inter_layer through the same head, (B, T', C)."""
        lengths = lengths.to(feats.device).clamp(max=feats.shape[1])
        x, out_lengths = self.conv(feats, lengths)  # (B, T', D)
        inter = None
        for i, layer in enumerate(self.rnns, start=1):
            x = layer(x, out_lengths)
            if i == self.cfg.inter_layer and (intermediate or self.inter_cond is not None):
                x, inter_log_probs = intermediate_ctc(x, self.head, self.inter_cond)
                inter = inter_log_probs if intermediate else None
        if self.lookahead is not None:
            x = self.lookahead(x, out_lengths)
        logits = self.head(x)  # (B, T', C)
        log_probs = logits.float().log_softmax(dim=-1)
        return (log_probs, out_lengths) if inter is None else (log_probs, out_lengths, inter)
