"""Training: typed configs, the shared loop (processes, checkpoints, resume), and the three trainings."""

from .config import (ConfigError, DataConfig, GanTeacherTrainConfig, GanTrainConfig, HypernetTrainConfig, LossConfig,
                     RunConfig, WEncoderTrainConfig, load_train_config, to_yaml)
from .trainer import Trainer, TrainingError

__all__ = ["ConfigError", "DataConfig", "GanTeacherTrainConfig", "GanTrainConfig", "HypernetTrainConfig", "LossConfig",
           "RunConfig", "Trainer", "TrainingError", "WEncoderTrainConfig", "get_trainer", "load_train_config",
           "to_yaml"]


def get_trainer(kind: str):
    """The trainer class of ``train <kind>`` (imported lazily: each pulls in its own networks)."""
    if kind == "gan":
        from .gan import GanTrainer

        return GanTrainer
    if kind == "gan-teacher":
        from .gan_teacher import GanTeacherTrainer

        return GanTeacherTrainer
    if kind == "w-encoder":
        from .w_encoder import WEncoderTrainer

        return WEncoderTrainer
    if kind == "hypernet":
        from .hypernet import HypernetTrainer

        return HypernetTrainer
    raise ConfigError(f"unknown training {kind!r}")
