"""Every configuration schema of the project, in one package, validated at the door (`to_object`).

    base.py       ConfigError, check (the one validation style), Choice (enum fields), to_object, config_dir
    train.py      asr-train: features, augment, data, model, optim, trainer -> TrainConfig
    inference.py  asr-eval / asr-transcribe: InferenceConfig (checkpoint or exported model, device, beam) -> EvalConfig,
                  TranscribeConfig; BeamConfig; Decoder
    serve.py      asr-serve: ServeConfig (a checkpoint or an exported model, host/port, decoders, limits)

Hydra composes configs/*.yaml over these schemas (registered in its ConfigStore by asr.hydra_cli).
"""
from hydra.core.config_store import ConfigStore

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
    RNNType,
    Schedule,
    TrainConfig,
    TrainerConfig,
)

__all__ = ["Choice", "ConfigError", "check", "config_dir", "to_container", "to_object", "register_configs",
           "DATASETS", "DECODERS", "Backend", "BeamConfig", "Decoder", "EvalConfig", "InferenceConfig",
           "TranscribeConfig", "ServeConfig",
           "AugmentConfig", "DataConfig", "FeatureConfig", "ModelConfig", "Normalize", "OptimConfig", "Precision",
           "RNNType", "Schedule", "TrainConfig", "TrainerConfig"]


def register_configs() -> None:
    """Register the schema that configs/train.yaml extends, so presets are typed (unknown keys are errors)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
