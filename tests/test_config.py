"""Typed configs: defaults are valid; bad values raise ConfigError naming the full key."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from asr.config import (
    AugmentConfig,
    ConfigError,
    DataConfig,
    FeatureConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    TrainerConfig,
    register_configs,
    to_object,
)
from asr.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_valid():
    cfg = TrainConfig()
    assert cfg.model.subsampling == 4
    assert (cfg.features.win_length, cfg.features.hop_length) == (400, 160)
    assert to_object({}, TrainConfig) == cfg
    assert to_object(cfg, TrainConfig) is cfg


def test_mutable_defaults_are_not_shared():
    a, b = DataConfig(), DataConfig()
    a.train_manifests.append("x.jsonl")
    assert b.train_manifests == ["data/synthetic/manifests/train.jsonl"]


@pytest.mark.parametrize("make, key", [
    (lambda: ModelConfig(conv_channels=[32] * 4, conv_time_strides=[2, 2, 2, 2]), "model.conv_time_strides"),
    (lambda: ModelConfig(conv_channels=[32], conv_time_strides=[5]), "model.conv_time_strides"),
    (lambda: ModelConfig(conv_channels=[32, 32], conv_time_strides=[2]), "model.conv_time_strides"),
    (lambda: ModelConfig(conv_channels=[32, 32], conv_time_strides=[1, 1], output_upsample=2), "model.output_upsample"),
    (lambda: ModelConfig(conv_channels=[32, 32], conv_freq_strides=[2]), "model.conv_freq_strides"),
    (lambda: ModelConfig(conv_channels=[32, 32], conv_freq_strides=[2, 3]), "model.conv_freq_strides"),
    (lambda: ModelConfig(rnn_type="transformer"), "model.rnn_type"),
    (lambda: ModelConfig(rnn_init="xavier"), "model.rnn_init"),
    (lambda: ModelConfig(tokenizer="bpe"), "model.tokenizer"),
    (lambda: ModelConfig(piece_model="wordpiece"), "model.piece_model"),
    (lambda: ModelConfig(vocab_size=20), "model.vocab_size"),
    (lambda: ModelConfig(lookahead=2), "model.lookahead"),
    (lambda: ModelConfig(dropout=1.0), "model.dropout"),
    (lambda: DataConfig(max_duration=200.0), "data.max_duration"),
    (lambda: DataConfig(min_duration=5.0, max_duration=5.0), "data.min_duration"),
    (lambda: DataConfig(train_manifests=[]), "data.train_manifests"),
    (lambda: DataConfig(max_bad_fraction=1.5), "data.max_bad_fraction"),
    (lambda: FeatureConfig(n_fft=256), "features.n_fft"),  # window is 400 samples
    (lambda: FeatureConfig(hop_ms=30.0), "features.hop_ms"),
    (lambda: FeatureConfig(normalize="speaker"), "features.normalize"),
    (lambda: FeatureConfig(sample_rate=4000), "features.sample_rate"),
    (lambda: AugmentConfig(speed_perturb=[3.0]), "augment.speed_perturb"),
    (lambda: AugmentConfig(time_mask_max_frac=0.5), "augment.time_mask_max_frac"),
    (lambda: OptimConfig(warmup_steps=100, total_steps=100), "optim.total_steps"),
    (lambda: OptimConfig(betas=[0.9]), "optim.betas"),
    (lambda: OptimConfig(schedule="step"), "optim.schedule"),
    (lambda: OptimConfig(schedule="wsd", decay_frac=0.0), "optim.decay_frac"),
    (lambda: TrainerConfig(precision="fp8"), "trainer.precision"),
    (lambda: TrainerConfig(max_steps=0), "trainer.max_steps"),
])
def test_cross_field_errors_name_the_key(make, key):
    with pytest.raises(ConfigError) as err:
        make()
    msg = str(err.value)
    assert msg.startswith(f"{key}: ") and "\n" not in msg
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)


def test_error_states_the_legal_range():
    with pytest.raises(ConfigError, match="must be 1, 2, 3, 4, 6 or 8, got 16"):
        ModelConfig(conv_channels=[8] * 4, conv_time_strides=[2, 2, 2, 2])
    with pytest.raises(ConfigError, match=r"max_batch_seconds \(120.0\)"):
        DataConfig(max_duration=121.0)


def test_legal_subsampling_layouts():
    assert ModelConfig(conv_channels=[32], conv_time_strides=[2]).subsampling == 2
    assert ModelConfig(conv_channels=[32], conv_time_strides=[4]).subsampling == 4
    assert ModelConfig(conv_channels=[32, 32], conv_time_strides=[1, 4]).subsampling == 4
    assert ModelConfig(conv_channels=[32] * 3, conv_time_strides=[2, 2, 2]).subsampling == 8  # for subword pieces
    assert ModelConfig(conv_channels=[32, 32], conv_time_strides=[1, 1]).subsampling == 1  # 10 ms recurrent frames
    assert ModelConfig(conv_channels=[32, 32], conv_time_strides=[3, 1]).subsampling == 3  # 30 ms recurrent frames
    assert ModelConfig(conv_channels=[32, 32], conv_time_strides=[2, 3]).subsampling == 6
    assert ModelConfig(bidirectional=False, lookahead=3).lookahead == 3


@pytest.mark.parametrize("overrides, key", [
    ({"model": {"conv_time_strides": [2, 2, 2, 2], "conv_channels": [8] * 4}}, "model.conv_time_strides"),
    ({"data": {"max_duration": 500.0}}, "data.max_duration"),
    ({"model": {"hidden": 512}}, "model.hidden"),  # unknown key (typo of rnn_hidden)
    ({"bogus": 1}, "bogus"),
    ({"optim": {"lr": "fast"}}, "optim.lr"),  # wrong type
    ({"trainer": {"max_epochs": 2.5}}, "trainer.max_epochs"),
    ({"model": {"conv_channels": None}}, "model.conv_channels"),
    ({"data": {"train_manifests": "train.jsonl"}}, "data.train_manifests"),
])
def test_to_object_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        to_object(OmegaConf.create(overrides), TrainConfig)
    assert str(err.value).startswith(f"{key}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, key", [
    ({"data": {"dev_manifests": ["dev.jsonl"]}}, "data.dev_manifests"),  # a list where a name -> path dict goes
    ({"model": 3}, "model"),
])
def test_to_object_wrong_node_kind_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        to_object(overrides, TrainConfig)
    assert str(err.value).startswith(f"{key}: ")


def test_to_object_coerces_and_merges():
    cfg = to_object({"optim": {"lr": "3e-4"}, "data": {"train_manifests": ["a.jsonl"]}}, TrainConfig)
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.data.train_manifests == ["a.jsonl"]
    assert cfg.model == ModelConfig()  # untouched groups keep their defaults
    assert isinstance(to_object({"lr": 1e-3}, OptimConfig), OptimConfig)


def test_data_preset_replaces_the_default_dev_sets():
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = to_object(compose(config_name="train", overrides=["data=librispeech_100"]), TrainConfig)
    assert set(cfg.data.dev_manifests) == {"dev-clean", "dev-other"}


def test_register_configs():
    from hydra.core.config_store import ConfigStore

    register_configs()
    assert ConfigStore.instance().load("train_schema.yaml").node is not None
