"""StyleGAN2 in plain PyTorch: generator, discriminator and readers of the published file formats."""

from .discriminator import Discriminator, DiscriminatorConfig
from .generator import Generator, GeneratorConfig, config_f
from .synthesis import NOISE_MODES

__all__ = ["Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "NOISE_MODES", "config_f"]
