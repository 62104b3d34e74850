"""hyperinverter: StyleGAN2 inversion with hypernetworks (HyperInverter, CVPR 2022) in plain PyTorch."""

__version__ = "0.1.0"

from .errors import CheckpointError, HyperInverterError, UnsafePickleError  # noqa: E402
from .stylegan2 import Discriminator, Generator, GeneratorConfig, config_f  # noqa: E402
from .stylegan2.formats import load_discriminator, load_generator  # noqa: E402
from .inverter import HyperInverter, HyperInverterConfig, InversionResult  # noqa: E402
from .tuning import RefineConfig, refine  # noqa: E402

__all__ = [
    "CheckpointError",
    "Discriminator",
    "Generator",
    "GeneratorConfig",
    "HyperInverter",
    "HyperInverterConfig",
    "HyperInverterError",
    "InversionResult",
    "RefineConfig",
    "UnsafePickleError",
    "__version__",
    "config_f",
    "load_discriminator",
    "load_generator",
    "refine",
]
