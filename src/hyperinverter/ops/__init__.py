"""Pure-PyTorch operators of StyleGAN2 (CPU and CUDA from the same code)."""

from .bias_act import ACTIVATION_GAINS, bias_act
from .conv2d_resample import conv2d_resample
from .modulated_conv2d import modulated_conv2d
from .upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATION_GAINS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "modulated_conv2d",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
]
