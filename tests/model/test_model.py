"""Acoustic model: exact output lengths, padding independence, causality, presets, mixed precision."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from asr.config import ModelConfig, to_object
from asr.model.acoustic import AcousticModel, reverse_padded
from asr.model.ctc import ctc_loss

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
N_MELS, VOCAB = 16, 7


def tiny(**kw) -> ModelConfig:
    base = dict(conv_channels=[4, 4], conv_time_strides=[2, 2], rnn_hidden=12, rnn_layers=2, dropout=0.0)
    base.update(kw)
    return ModelConfig(**base)


def build(cfg: ModelConfig, seed: int = 0) -> AcousticModel:
    torch.manual_seed(seed)
    return AcousticModel(cfg, N_MELS, VOCAB).eval()


def padded_batch(lengths: list[int], seed: int = 0, max_len: int | None = None):
    """Random features, zero past each length (as the log-mel front-end delivers them)."""
    g = torch.Generator().manual_seed(seed)
    T = max_len or max(lengths)
    x = torch.randn(len(lengths), T, N_MELS, generator=g)
    L = torch.tensor(lengths)
    x[torch.arange(T)[None, :] >= L[:, None]] = 0.0
    return x, L


VARIANTS = {
    "bilstm": tiny(),
    "bigru": tiny(rnn_type="gru"),
    "lstm_lookahead": tiny(bidirectional=False, lookahead=3),
    "one_conv_x2": tiny(conv_channels=[4], conv_time_strides=[2], rnn_layers=1),
    "three_convs_x2": tiny(conv_channels=[4, 4, 4], conv_time_strides=[1, 2, 1], rnn_layers=1),
    "full_rate_first_conv": tiny(conv_channels=[4, 4, 4], conv_time_strides=[1, 2, 2], conv_freq_strides=[2, 1, 2],
                                 rnn_layers=1),
    "self_conditioned": tiny(rnn_layers=3, inter_ctc_weight=0.3, self_condition=True),
    "vgg_dnn": tiny(frontend="vgg", dnn_neurons=10, rnn_layers=3, inter_ctc_weight=0.3, self_condition=True),
    "vgg_one_pool": tiny(frontend="vgg", conv_channels=[4, 4], conv_time_strides=[1, 2], rnn_layers=1),
    "no_layer_norm": tiny(rnn_layer_norm=False),
    "ten_ms": tiny(conv_time_strides=[1, 1]),  # no time subsampling: the recurrent layers at the feature rate
    "thirty_ms": tiny(conv_time_strides=[3, 1]),  # an odd stride: most lengths are not a multiple of it
    "sixty_ms": tiny(conv_time_strides=[2, 3]),
    "upsampled": tiny(output_upsample=2),
    "upsampled_self_conditioned": tiny(rnn_layers=3, inter_ctc_weight=0.3, self_condition=True, output_upsample=2,
                                       dnn_neurons=10),
}


@pytest.mark.parametrize("name", ["bilstm", "one_conv_x2", "three_convs_x2", "full_rate_first_conv", "vgg_dnn",
                                  "vgg_one_pool", "upsampled", "ten_ms", "thirty_ms", "sixty_ms"])
def test_output_lengths_exact_for_odd_and_even_lengths(name):
    model = build(VARIANTS[name])
    lengths = list(range(1, 51))
    x, L = padded_batch(lengths)
    with torch.no_grad():
        lp, out = model(x, L)
        assert torch.equal(out, model.output_lengths(L))
        assert lp.shape[1] == int(model.output_lengths(torch.tensor([50]))[0]) == int(out.max())
        for n in lengths:
            lp1, out1 = model(x[n - 1:n, :n], L[n - 1:n])
            assert lp1.shape[1] == int(out1[0]) == int(model.output_lengths(torch.tensor([n]))[0]), n


@pytest.mark.parametrize("name", ["bilstm", "bigru", "lstm_lookahead", "three_convs_x2", "full_rate_first_conv",
                                  "self_conditioned", "vgg_dnn", "vgg_one_pool", "no_layer_norm", "upsampled",
                                  "upsampled_self_conditioned", "ten_ms", "thirty_ms", "sixty_ms"])
def test_padded_batch_equals_each_utterance_alone(name):
    model = build(VARIANTS[name])
    x, L = padded_batch([37, 50, 12, 1, 2, 23, 49])
    with torch.no_grad():
        lp, out = model(x, L)
        for b, n in enumerate(L.tolist()):
            lp1, out1 = model(x[b:b + 1, :n], L[b:b + 1])
            k = int(out1[0])
            assert k == int(out[b])
            torch.testing.assert_close(lp[b, :k], lp1[0], atol=1e-5, rtol=1e-5)


def test_training_mode_outputs_do_not_depend_on_padding_amount():
    """Masked batch norm: batch statistics come from valid frames only, so extra padding changes nothing."""
    model = build(tiny()).train()
    x, L = padded_batch([30, 17, 41])
    x_more = torch.cat([x, torch.zeros(3, 24, N_MELS)], dim=1)
    lp, out = model(x, L)
    lp_more, out_more = model(x_more, L)
    assert torch.equal(out, out_more)
    for b, k in enumerate(out.tolist()):
        torch.testing.assert_close(lp[b, :k], lp_more[b, :k], atol=1e-5, rtol=1e-5)
    bn = model.conv.norms[0]
    assert int(bn.num_batches_tracked) == 2 and torch.isfinite(bn.running_var).all()


def test_recurrent_layer_norm_can_be_left_out():
    """model.rnn_layer_norm=false (CRDNN's recurrent stack): no LayerNorm parameters, the layers' raw outputs."""
    with_norm, without = build(tiny()), build(tiny(rnn_layer_norm=False))
    assert with_norm.num_parameters() - without.num_parameters() == 2 * 2 * (2 * 12)  # 2 layers x (weight + bias)
    assert all(isinstance(layer.norm, torch.nn.Identity) for layer in without.rnns)


@pytest.mark.parametrize("rnn_type, gates", [("lstm", 4), ("gru", 3)])
def test_orthogonal_init_gives_the_recurrent_matrices_orthonormal_columns(rnn_type, gates):
    """model.rnn_init=orthogonal (SpeechBrain's `rnn_init`): each direction's (gates x H, H) weight_hh has
    orthonormal columns; PyTorch's uniform default has not. The LSTM keeps its forget-gate bias of 1."""
    H = 12
    ortho = build(tiny(rnn_type=rnn_type, rnn_init="orthogonal"))
    for layer in ortho.rnns:
        for rnn in (layer.fwd, layer.bwd):
            w = rnn.weight_hh_l0.detach()
            assert w.shape == (gates * H, H)
            torch.testing.assert_close(w.T @ w, torch.eye(H), atol=1e-5, rtol=0)
            if rnn_type == "lstm":
                assert bool((rnn.bias_ih_l0[H:2 * H] == 1).all())
    w = build(tiny(rnn_type=rnn_type)).rnns[0].fwd.weight_hh_l0.detach()
    assert float((w.T @ w - torch.eye(H)).abs().max()) > 0.1
    assert float(w.abs().max()) <= 1 / H ** 0.5


@pytest.mark.parametrize("frontend", ["conv", "vgg"])
def test_conv_dropout_drops_whole_channels_of_an_utterance_in_training_only(frontend):
    """model.conv_dropout (CRDNN's Dropout2d): in training each (utterance, channel) map is zeroed whole or kept and
    scaled by 1 / (1 - p), against the same front-end without dropout; in eval mode it changes nothing."""
    # One conv layer / block, so the dropped output is the last thing that happens (a second layer would mix it).
    model = build(tiny(conv_dropout=0.5, frontend=frontend, conv_channels=[6], conv_time_strides=[4])).train()
    plain = copy.deepcopy(model)
    plain.conv.drop.p = 0.0
    x, L = padded_batch([30, 17, 41])
    torch.manual_seed(0)
    y, _ = model.conv(x, L)
    y0, _ = plain.conv(x, L)
    B, T, _ = y.shape
    C = model.cfg.conv_channels[-1]
    y, y0 = y.reshape(B, T, C, -1), y0.reshape(B, T, C, -1)
    dropped = (y == 0).all(dim=3).all(dim=1)  # (B, C): the whole (T, F) map is zero
    assert dropped.any() and not dropped.all()
    kept = ~dropped
    torch.testing.assert_close(y.permute(0, 2, 1, 3)[kept], 2 * y0.permute(0, 2, 1, 3)[kept])
    model.eval(), plain.eval()
    torch.testing.assert_close(model.conv(x, L)[0], plain.conv(x, L)[0], rtol=0, atol=0)


def test_reverse_padded_reverses_within_length_and_is_its_own_inverse():
    x = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1)
    L = torch.tensor([3, 5])
    r = reverse_padded(x, L)
    assert r[0, :, 0].tolist() == [2, 1, 0, 3, 4]
    assert r[1, :, 0].tolist() == [9, 8, 7, 6, 5]
    assert torch.equal(reverse_padded(r, L), x)


@pytest.mark.parametrize("lookahead", [0, 2, 5])
def test_unidirectional_model_sees_exactly_its_future_context(lookahead):
    model = build(tiny(bidirectional=False, lookahead=lookahead))
    if model.lookahead is not None:  # it starts as the identity; give the future frames weight
        torch.nn.init.normal_(model.lookahead.conv.weight)
    future, sub = model.future_frames(), model.subsampling
    assert future is not None and future >= lookahead * sub
    x, L = padded_batch([80])
    t = 57
    x2 = x.clone()
    x2[0, t] += 3.0
    with torch.no_grad():
        a, _ = model(x, L)
        b, _ = model(x2, L)
    changed = (a - b).abs().amax(dim=-1)[0] > 1e-6  # (T',)
    # Output frame j covers input frames up to j * sub + future: unchanged before that reaches t, changed after.
    first = next(j for j in range(a.shape[1]) if j * sub + future >= t)
    assert not changed[:first].any()
    assert changed[first]


def test_bidirectional_model_has_no_bounded_future():
    assert build(tiny()).future_frames() is None


def test_log_probs_are_normalized_fp32():
    model = build(tiny())
    x, L = padded_batch([20, 9])
    with torch.no_grad():
        lp, _ = model(x, L)
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(lp.shape[:2]))


def test_ctc_gradients_are_finite_for_every_parameter():
    model = build(tiny(dropout=0.1)).train()
    x, L = padded_batch([40, 33])
    lp, out = model(x, L)
    targets = torch.tensor([[1, 2, 3, 3], [4, 5, 0, 0]])
    losses, zeroed = ctc_loss(lp, out, targets, torch.tensor([4, 2]))
    losses.mean().backward()
    assert not zeroed.any()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_describe_and_num_parameters():
    model = build(tiny(name="t"))
    n = sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == n
    line = model.describe()
    assert "\n" not in line and "BiLSTM-12" in line and f"{n / 1e6:.2f} M parameters" in line


@pytest.mark.parametrize("preset,low,high", [("small", 3e6, 6e6), ("large", 40e6, 80e6), ("streaming", 3e6, 8e6)])
def test_presets_load_and_have_expected_sizes(preset, low, high):
    path = CONFIGS / f"{preset}.yaml"
    raw = OmegaConf.load(path)
    if preset == "streaming":  # a global-package preset: the model plus the features streaming needs
        assert path.read_text().startswith("# @package _global_") and raw.features.normalize == "none"
        raw = raw.model
    else:
        assert path.read_text().startswith("name:")
    assert set(raw.keys()) == {f.name for f in dataclasses.fields(ModelConfig)}
    cfg = to_object(raw, ModelConfig)
    assert cfg.name == preset
    with torch.device("meta"):  # count parameters without allocating the large preset
        model = AcousticModel(cfg, 80, 29)
    assert low <= model.num_parameters() <= high, model.describe()
    if preset == "streaming":
        assert not cfg.bidirectional and cfg.lookahead > 0


def test_bf16_autocast_forward_on_cpu_is_finite():
    model = build(tiny())
    x, L = padded_batch([30, 21])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        lp, out = model(x, L)
    assert lp.dtype == torch.float32 and torch.isfinite(lp).all()
    assert torch.equal(out, model.output_lengths(L))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [None, torch.float16, torch.bfloat16])
def test_runs_on_cuda_and_matches_cpu(dtype):
    model = build(tiny())
    x, L = padded_batch([30, 21])
    with torch.no_grad():
        ref, _ = model(x, L)
        cuda_model = model.cuda()
        with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
            lp, out = cuda_model(x.cuda(), L)  # lengths may stay on the CPU
    assert lp.device.type == "cuda" and lp.dtype == torch.float32 and torch.isfinite(lp).all()
    atol = 1e-3 if dtype is None else 0.1  # fp32 on CUDA: cuDNN convs use TF32 by default
    for b, k in enumerate(out.tolist()):
        torch.testing.assert_close(lp[b, :k].cpu(), ref[b, :k], atol=atol, rtol=0)


def intermediate_by_hand(model: AcousticModel, x: torch.Tensor, L: torch.Tensor):
    """Oracle: the conv front-end and recurrent layers 1..cfg.inter_layer run one by one, then the head and
    log_softmax: (that layer's output (B, T', D), lengths (B,), its CTC log-probs (B, T', C))."""
    h, n = model.conv(x, L)
    for layer in model.rnns[:model.cfg.inter_layer]:
        h = layer(h, n)
    return h, n, model.head(h).log_softmax(-1)


def test_intermediate_ctc_reads_the_chosen_layer_through_the_same_head():
    """Oracle: the layers run by hand up to cfg.inter_ctc_layer, then the head and log_softmax; the final
    log-probs are those of the plain call (inference never asks for the intermediate output)."""
    model = build(tiny(rnn_layers=3, inter_ctc_weight=0.3))
    assert model.cfg.inter_layer == 2  # the middle layer by default
    x, L = padded_batch([30, 17])
    with torch.no_grad():
        lp, out, inter = model(x, L, intermediate=True)
        plain_lp, plain_out = model(x, L)
        _, _, expected = intermediate_by_hand(model, x, L)
    torch.testing.assert_close(lp, plain_lp)
    assert torch.equal(out, plain_out)
    torch.testing.assert_close(inter, expected)
    assert not torch.allclose(inter, lp)


def test_self_conditioning_adds_projected_posteriors_to_the_intermediate_layer():
    """Oracle (Nozaki & Komatsu 2021, eq. 5-6): layer 3 gets h2 + W softmax(head(h2)) + b, at inference too; the
    intermediate log-probs are read before the addition; a zero projection gives back plain intermediate CTC."""
    cfg = tiny(rnn_layers=3, inter_ctc_weight=0.3, self_condition=True)
    model = build(cfg)
    assert model.inter_cond is not None and model.inter_cond.in_features == VOCAB
    assert "self-conditioned CTC at layer 2" in model.describe()
    x, L = padded_batch([30, 17])
    with torch.no_grad():
        lp, out, inter = model(x, L, intermediate=True)
        plain_lp, _ = model(x, L)
        h, n, expected_inter = intermediate_by_hand(model, x, L)
        h = model.rnns[2](h + model.inter_cond(expected_inter.exp()), n)
        expected = model.head(h).log_softmax(-1)
        torch.testing.assert_close(inter, expected_inter)
        torch.testing.assert_close(lp, expected)
        torch.testing.assert_close(plain_lp, expected)
        model.inter_cond.weight.zero_()
        model.inter_cond.bias.zero_()
        unconditioned = build(tiny(rnn_layers=3, inter_ctc_weight=0.3))
        unconditioned.load_state_dict({k: v for k, v in model.state_dict().items() if "inter_cond" not in k})
        torch.testing.assert_close(model(x, L)[0], unconditioned(x, L)[0])


@pytest.mark.parametrize("kw, key", [({"inter_ctc_weight": 1.0}, "model.inter_ctc_weight"),
                                     ({"inter_ctc_weight": 0.3, "inter_ctc_layer": 3}, "model.inter_ctc_layer"),
                                     ({"inter_ctc_weight": 0.3, "inter_ctc_layer": 0}, "model.inter_ctc_layer"),
                                     ({"self_condition": True}, "model.self_condition")])
def test_intermediate_ctc_settings_are_validated(kw, key):
    from asr.config import ConfigError

    with pytest.raises(ConfigError, match=key):
        tiny(rnn_layers=3, **kw)


def test_one_recurrent_layer_with_intermediate_ctc_names_the_key_the_user_set():
    """`asr-train model.rnn_layers=1` (the small preset has intermediate CTC on) must name model.rnn_layers and
    the two ways out, not model.inter_ctc_layer, which the user never set (issue 24)."""
    from asr.config import ConfigError

    with pytest.raises(ConfigError) as exc:
        tiny(rnn_layers=1, inter_ctc_weight=0.3)
    msg = str(exc.value)
    assert msg.startswith("model.rnn_layers: 1 recurrent layer leaves none below the last for intermediate CTC")
    assert "model.rnn_layers >= 2" in msg and "model.inter_ctc_weight=0" in msg and "inter_ctc_layer" not in msg
    tiny(rnn_layers=1, inter_ctc_weight=0.0)  # the way out works


def test_output_upsampling_gives_each_encoder_frame_k_ctc_frames():
    """Oracle: a plain model whose head is copied into both halves of the upsampled model's head gives every frame
    twice (frames 2t and 2t + 1 = the plain frame t); with distinct halves, frame 2t reads the first C outputs of
    the head and 2t + 1 the next C. Lengths double; the output frame stride halves."""
    plain = build(tiny(inter_ctc_weight=0.3))
    up = build(tiny(inter_ctc_weight=0.3, output_upsample=2))
    assert up.cfg.subsampling == 2 and up.cfg.encoder_subsampling == 4 and "CTC frames x2" in up.describe()
    state = plain.state_dict()
    state["head.weight"] = state["head.weight"].repeat(2, 1)
    state["head.bias"] = state["head.bias"].repeat(2)
    up.load_state_dict(state)
    x, L = padded_batch([30, 17, 5])
    with torch.no_grad():
        lp, out, inter = plain(x, L, intermediate=True)
        lp2, out2, inter2 = up(x, L, intermediate=True)
        assert torch.equal(out2, 2 * out) and torch.equal(up.output_lengths(L), out2)
        torch.testing.assert_close(lp2, lp.repeat_interleave(2, dim=1))
        torch.testing.assert_close(inter2, inter.repeat_interleave(2, dim=1))
        up.head.bias[VOCAB:] += torch.arange(VOCAB, dtype=torch.float32)  # the second frame of each pair differs
        lp3, _ = up(x, L)
        torch.testing.assert_close(lp3[:, 0::2], lp)
        h, n = plain.conv(x, L.clamp(max=x.shape[1]))
        for layer in plain.rnns:
            h = layer(h, n)
        logits = h @ up.head.weight[VOCAB:].T + up.head.bias[VOCAB:]
        torch.testing.assert_close(lp3[:, 1::2], logits.log_softmax(-1))  # the odd frames by hand: second half


@pytest.mark.parametrize("kw, message", [({"output_upsample": 3}, "must be 1 or 2"),
                                         ({"output_upsample": 2, "bidirectional": False}, "streaming")])
def test_output_upsampling_settings_are_validated(kw, message):
    from asr.config import ConfigError

    with pytest.raises(ConfigError, match=f"model.output_upsample.*{message}"):
        tiny(**kw)
