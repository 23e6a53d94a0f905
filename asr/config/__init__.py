"""Every configuration schema of the project, in one package, validated at the door (`to_object`).

    base.py       ConfigError, check (the one validation style), Choice (enum fields), to_object, config_dir
    train.py      asr-train: features, augment, data, model, optim, trainer -> TrainConfig
    inference.py  asr-eval / asr-transcribe: InferenceConfig (checkpoint or exported model, device, beam) -> EvalConfig,
                  TranscribeConfig; BeamConfig; Decoder
    serve.py      asr-serve: ServeConfig (a checkpoint or an exported model, host/port, decoders, limits)

Hydra composes configs/*.yaml over these schemas (registered in its ConfigStore by asr.hydra_cli).
"""
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from asr.config.base import Choice, ConfigError, check, config_dir, to_container, to_object
from asr.config.inference import (
    DATASETS,
    DECODERS,
    Backend,
    BeamConfig,
    Decoder,
    EvalConfig,
    InferenceConfig,
    TranscribeConfig,
)
from asr.config.serve import ServeConfig
from asr.config.train import (
    AugmentConfig,
    DataConfig,
    FeatureConfig,
    ModelConfig,
    Normalize,
    OptimConfig,
    Precision,
    RNNInit,
    RNNType,
    Schedule,
    TrainConfig,
    TrainerConfig,
)

__all__ = ["Choice", "ConfigError", "check", "config_dir", "to_container", "to_object", "register_configs", "compose",
           "DATASETS", "DECODERS", "Backend", "BeamConfig", "Decoder", "EvalConfig", "InferenceConfig",
           "TranscribeConfig", "ServeConfig",
           "AugmentConfig", "DataConfig", "FeatureConfig", "ModelConfig", "Normalize", "OptimConfig", "Precision",
           "RNNInit", "RNNType", "Schedule", "TrainConfig", "TrainerConfig"]


def register_configs() -> None:
    """Register the schema that configs/train.yaml extends, so presets are typed (unknown keys are errors)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """configs/<config_name>.yaml composed with `overrides` exactly as the command line does (no run dir, no
    logging set-up): for tests and benchmarks that must build what the CLI builds. Validate with `to_object`."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)
