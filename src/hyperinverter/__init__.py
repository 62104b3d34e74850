"""hyperinverter: StyleGAN2 inversion with hypernetworks (HyperInverter, CVPR 2022) in plain PyTorch.

The names below are imported on first use (PEP 562), so ``import hyperinverter`` and the command line's
``--help`` do not pay for importing torch.
"""

from __future__ import annotations

from .lazy import lazy_exports

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "CheckpointError": ".errors",
    "DeclaredSizeError": ".errors",
    "HyperInverterError": ".errors",
    "UnsafePickleError": ".errors",
    "Discriminator": ".stylegan2",
    "Generator": ".stylegan2",
    "GeneratorConfig": ".stylegan2",
    "config_f": ".stylegan2",
    "load_discriminator": ".stylegan2.formats",
    "load_generator": ".stylegan2.formats",
    "HyperInverter": ".inverter",
    "HyperInverterConfig": ".inverter",
    "InversionResult": ".inverter",
    "RefineConfig": ".tuning",
    "refine": ".tuning",
}

__all__ = sorted([*_EXPORTS, "__version__"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
