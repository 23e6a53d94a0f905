"""DeepSpeech2-style acoustic model: 2-D conv subsampling -> recurrent stack -> linear head -> log-probs.

Shapes: B batch, T input frames, F mel bins, T' frames after time subsampling, C vocabulary incl. blank,
D channels/features of an intermediate sequence.

Padded batches, no packing. DESIGN.md: packed sequences make cuDNN LSTMs much slower, so the model runs on
plain padded tensors and masks instead. Every stage is written so that an utterance's outputs on its valid
frames are exactly what it would get alone in a batch of one (the tests check this):

* conv front-end (`frontends.py`): padded frames are zeroed before each conv (so they look like the conv's own
  zero padding) and batch-norm statistics are taken over valid frames only (`MaskedBatchNorm2d`);
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

import torch
from torch import nn

from asr.config import ModelConfig
from asr.lengths import lengths_to_mask
from asr.model.frontends import ConvSubsampling, ConvWindow, VGGSubsampling


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of x (B, T, D) within its own length; padding frames stay where they are.

    Frame t < L_b of row b goes to L_b - 1 - t. The map is its own inverse, so the same call undoes it.
    """
    B, T = x.shape[0], x.shape[1]
    t = torch.arange(T, device=x.device).expand(B, T)
    L = lengths.to(x.device)[:, None]
    idx = torch.where(t < L, L - 1 - t, t)  # (B, T)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class RecurrentLayer(nn.Module):
    """(x (B, T', D_in), lengths) -> (B, T', H * directions): RNN -> LayerNorm (unless off) -> dropout.

    Directions are concatenated (not summed, as DeepSpeech2 does); the next layer's input weights or the head
    project them. The backward direction runs on `reverse_padded` input (module docstring says why).
    """

    def __init__(self, rnn_type: str, d_in: int, hidden: int, bidirectional: bool, dropout: float,
                 layer_norm: bool = True, init: str = "uniform"):
        super().__init__()
        rnn_cls = nn.LSTM if rnn_type == "lstm" else nn.GRU
        self.fwd = rnn_cls(d_in, hidden, batch_first=True)
        self.bwd = rnn_cls(d_in, hidden, batch_first=True) if bidirectional else None
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.norm = nn.LayerNorm(self.out_dim) if layer_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        for rnn in (self.fwd, self.bwd):
            if rnn is None:
                continue
            if init == "orthogonal":
                # The whole (gates x H, H) recurrent matrix gets orthonormal columns, as SpeechBrain's `rnn_init`.
                nn.init.orthogonal_(rnn.weight_hh_l0)
            if rnn_type == "lstm":
                # Forget-gate bias 1 (gate order i, f, g, o): remember by default early in training
                # (Jozefowicz et al. 2015, "An Empirical Exploration of Recurrent Network Architectures").
                with torch.no_grad():
                    rnn.bias_ih_l0[hidden:2 * hidden].fill_(1.0)
                    rnn.bias_hh_l0[hidden:2 * hidden].zero_()

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Streaming (unidirectional LSTM, eval): x (B, N, D_in) and the carried state h, c (1, B, H) -> (y
        (B, N, H), h', c'); frame for frame what forward() gives for the same frames."""
        if self.bwd is not None or not isinstance(self.fwd, nn.LSTM):
            raise ValueError("only a unidirectional LSTM layer streams")
        y, (h, c) = self.fwd(x, (h, c))
        return self.norm(y), h, c

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

    def step(self, x: torch.Tensor, ahead: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Streaming: x (B, N, D) and the previous tau inputs `ahead` (B, tau, D) -> (outputs of frames
        t0 - tau .. t0 + N - tau - 1 (B, N, D), the new last tau inputs)."""
        z = torch.cat([ahead, x], dim=1)  # (B, tau + N, D)
        return self.conv(z.transpose(1, 2)).transpose(1, 2), z[:, -self.tau:]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = x.masked_fill(~lengths_to_mask(lengths, x.shape[1])[:, :, None], 0.0)  # padding = the conv's zeros
        y = nn.functional.pad(x.transpose(1, 2), (0, self.tau))  # (B, D, T' + tau)
        return self.conv(y).transpose(1, 2)


def upsample_frames(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Head output (B, T', k x C) -> (B, k x T', C): encoder frame t' gives output frames k t' .. k t' + k - 1."""
    # Static sizes only (k and C), so traced / exported graphs keep T' dynamic.
    return logits if k == 1 else logits.unflatten(-1, (k, -1)).flatten(1, 2)


def intermediate_ctc(x: torch.Tensor, head: nn.Module, cond: nn.Linear | None, k: int = 1
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Output x (B, T', D) of the intermediate CTC layer -> (the next layer's input (B, T', D), the layer's CTC
    log-probs through the shared head (B, k T', C) fp32, k = model.output_upsample). The next layer gets x itself, or
    with self-conditioning (`cond`: k x C -> D) x + cond(posteriors of the encoder frame's k output frames); frame by
    frame, so padding frames cannot reach valid ones."""
    log_probs = upsample_frames(head(x), k).float().log_softmax(dim=-1)
    if cond is not None:
        x = x + cond(log_probs.exp().to(x.dtype).reshape(x.shape[0], x.shape[1], -1))
    return x, log_probs


class AcousticModel(nn.Module):
    """(feats (B, T, F), lengths (B,)) -> (log_probs (B, T', C) fp32, out_lengths (B,)).

    conv subsampling (time / cfg.encoder_subsampling, freq / 2 per layer) -> cfg.rnn_layers recurrent layers
    (bidirectional, or unidirectional + lookahead for streaming) -> linear head -> log_softmax; the head gives
    cfg.output_upsample CTC frames per encoder frame, so T' = T / cfg.subsampling.
    Frames past out_lengths in log_probs are padding (finite, meaningless).
    """

    def __init__(self, cfg: ModelConfig, n_mels: int, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.subsampling = cfg.subsampling  # feature frames per output frame
        self.upsample = cfg.output_upsample  # output frames per encoder frame
        self.conv = (VGGSubsampling(n_mels, cfg.conv_channels, cfg.conv_time_strides, cfg.conv_dropout)
                     if cfg.frontend == "vgg" else
                     ConvSubsampling(n_mels, cfg.conv_channels, cfg.conv_time_strides, cfg.conv_freq_strides,
                                     cfg.conv_dropout))
        layers, d = [], self.conv.out_dim
        for _ in range(cfg.rnn_layers):
            layers.append(RecurrentLayer(cfg.rnn_type, d, cfg.rnn_hidden, cfg.bidirectional, cfg.dropout,
                                         cfg.rnn_layer_norm, cfg.rnn_init))
            d = layers[-1].out_dim
        self.rnns = nn.ModuleList(layers)
        self.lookahead = Lookahead(d, cfg.lookahead) if cfg.lookahead > 0 else None
        # The head: a linear layer, or (model.dnn_neurons > 0) CRDNN's DNN block before it, per frame. Intermediate
        # CTC reads its layer through the same head, DNN block included.
        linear = nn.Linear(cfg.dnn_neurons or d, vocab_size * cfg.output_upsample)
        self.head = linear if not cfg.dnn_neurons else nn.Sequential(
            nn.Linear(d, cfg.dnn_neurons), nn.LayerNorm(cfg.dnn_neurons), nn.LeakyReLU(), nn.Dropout(cfg.dropout),
            linear)
        # Self-conditioned CTC: posteriors (C) of the intermediate layer back to its width (D).
        self.inter_cond = (nn.Linear(vocab_size * cfg.output_upsample, layers[cfg.inter_layer - 1].out_dim)
                           if cfg.self_condition else None)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """T' for input lengths T (B,): exactly the out_lengths forward() returns."""
        return self.conv.output_lengths(lengths) * self.upsample

    def future_frames(self) -> int | None:
        """Input frames of future context an output frame sees (None: bidirectional = whole utterance)."""
        if self.cfg.bidirectional:
            return None
        return self.conv.future_frames() + self.cfg.lookahead * self.cfg.encoder_subsampling

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
        up = f", CTC frames x{self.upsample}" if self.upsample > 1 else ""
        return (f"AcousticModel '{c.name}': {len(c.conv_channels)} conv {list(c.conv_channels)} ch "
                f"(time /{c.encoder_subsampling}{up}), {c.rnn_layers} x {rnn}{ahead}, vocab {self.vocab_size}{ctx}: "
                f"{self.num_parameters() / 1e6:.2f} M parameters")

    def stream_step(self, feats: torch.Tensor, window: ConvWindow, t0: torch.Tensor, frames: torch.Tensor,
                    out_frames: torch.Tensor, h: torch.Tensor, c: torch.Tensor, ahead: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One streaming chunk, each layer through its own `step`: feats (B, window.counts[0], F) for output frames
        t0 .. t0 + N - 1, the recurrent state h, c (L, B, H) and the lookahead's last inputs (B, tau, D) ->
        (log_probs (B, N, C) of frames t0 - tau .., h', c', ahead'). frames / out_frames (B,): the stream's feature
        and output frames once it has ended (huge before); what lies past them is masked as forward() masks
        padding."""
        x = self.conv.step(feats, window, t0, frames)  # (B, N, D)
        hs, cs = [], []
        for i, layer in enumerate(self.rnns):
            x, hi, ci = layer.step(x, h[i: i + 1], c[i: i + 1])
            if self.inter_cond is not None and i + 1 == self.cfg.inter_layer:
                x, _ = intermediate_ctc(x, self.head, self.inter_cond)
            hs.append(hi)
            cs.append(ci)
        t = t0[:, None] + torch.arange(window.chunk)[None, :]  # (B, N)
        x = x.masked_fill((t >= out_frames[:, None])[:, :, None], 0.0)  # past the end: the lookahead's zeros
        if self.lookahead is not None:
            x, ahead = self.lookahead.step(x, ahead)
        return self.head(x).float().log_softmax(dim=-1), torch.cat(hs), torch.cat(cs), ahead

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
                x, inter_log_probs = intermediate_ctc(x, self.head, self.inter_cond, self.upsample)
                inter = inter_log_probs if intermediate else None
        if self.lookahead is not None:
            x = self.lookahead(x, out_lengths)
        logits = upsample_frames(self.head(x), self.upsample)  # (B, k T', C)
        log_probs = logits.float().log_softmax(dim=-1)
        out_lengths = out_lengths * self.upsample
        return (log_probs, out_lengths) if inter is None else (log_probs, out_lengths, inter)
