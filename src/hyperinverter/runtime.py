"""Process-wide run-time options of the command line: threads, precision, compilation, cuDNN/TF32.

``add_runtime_args`` puts ``--threads N`` on every command and the speed options (``--precision``,
``--compile``, ``--channels-last``, ``--tf32``, ``--cudnn-benchmark``) on the inference commands;
``apply_runtime_args`` applies them once, before the command runs. In Python, use
``model.precision = "bf16"`` / ``hyperinverter.precision.default_precision(...)``, ``model.optimize(...)``
and ``configure_backends(...)`` directly.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

#: Commands that run a HyperInverter and take the speed options.
INFERENCE_COMMANDS = ("invert", "edit", "interpolate", "evaluate", "serve", "video")


@dataclass
class InferenceOptions:
    """Applied by ``HyperInverter.invert`` to itself on first use (see ``HyperInverter.optimize``)."""

    compile: bool = False  # torch.compile the encoders, regressors and synthesis network.
    channels_last: bool = False  # channels-last encoders.


_options = InferenceOptions()


def inference_options() -> InferenceOptions:
    return _options


def set_inference_options(compile: bool = False, channels_last: bool = False) -> None:
    global _options
    _options = InferenceOptions(compile=compile, channels_last=channels_last)


def configure_backends(tf32: Optional[bool] = None, cudnn_benchmark: Optional[bool] = None) -> None:
    """TF32 for CUDA matmuls and convolutions, and cuDNN autotuning (None leaves PyTorch's setting)."""
    import torch

    if tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = cudnn_benchmark


def set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def _leaf_parsers(parser: argparse.ArgumentParser, name: str = ""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, parser
        return
    for action in subs:
        for child_name, child in action.choices.items():
            yield from _leaf_parsers(child, child_name if not name else name)


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads`` to every leaf command of ``parser`` (where it has none) and the speed options
    to :data:`INFERENCE_COMMANDS`."""
    from .precision_names import PRECISIONS

    for name, p in _leaf_parsers(parser):
        if "--threads" not in p._option_string_actions:
            p.add_argument("--threads", type=int, default=None,
                           help="CPU threads (default: PyTorch's; on a busy machine 1 or 2 is often faster)")
        if name not in INFERENCE_COMMANDS or "--precision" in p._option_string_actions:
            continue
        g = p.add_argument_group("speed")
        g.add_argument("--precision", choices=PRECISIONS, default=None,
                       help="fp32, bf16 or fp16: autocast for the encoders and hypernetworks, the highest-"
                            "resolution generator blocks in that dtype (default: the weights' dtype, usually fp32; "
                            "fp16 falls back to bf16 where the device cannot run it)")
        g.add_argument("--compile", action="store_true", help="torch.compile the networks (slow first call)")
        g.add_argument("--channels-last", action="store_true", help="channels-last encoders")
        g.add_argument("--tf32", choices=["on", "off"], default=None, help="TF32 matmuls/convolutions on CUDA")
        g.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN pick the fastest convolutions")


def apply_runtime_args(args: argparse.Namespace) -> None:
    """Apply what :func:`add_runtime_args` parsed (options a command lacks are skipped)."""
    if getattr(args, "threads", None) is not None:
        set_threads(args.threads)
    if getattr(args, "precision", None) is not None:
        from .precision import set_default_precision

        set_default_precision(args.precision)
    if getattr(args, "compile", False) or getattr(args, "channels_last", False):
        set_inference_options(compile=args.compile, channels_last=args.channels_last)
    tf32 = getattr(args, "tf32", None)
    if tf32 is not None or getattr(args, "cudnn_benchmark", False):
        configure_backends(tf32=None if tf32 is None else tf32 == "on",
                           cudnn_benchmark=True if getattr(args, "cudnn_benchmark", False) else None)
