"""Shared plumbing of the loss networks: reading weight files safely and keeping the networks frozen."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from torch import nn

from ..checkpoints.pretrained import load_state_dict_checked
from ..errors import CheckpointError

PathLike = Union[str, os.PathLike]


def read_weight_file(path: PathLike, what: str) -> Any:
    """``torch.load`` of a weight file (tensors and plain containers only), with readable errors.

    Args:
        path: the file.
        what: what the file should hold, for messages (e.g. ``"IR-SE-50 face recognition"``).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: {what} weight file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: expected a {what} weight file, found a folder or special file")
    from ..utils.safe_load import load_error_reason

    try:
        # weights_only: a weight file must never be able to run code when it is read.
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle errors come in many types; all mean "not a usable file"
        raise CheckpointError(f"{path}: cannot read as a {what} weight file ({load_error_reason(e)})") from None


def as_state_dict(obj: Any, path: PathLike, what: str) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` mapping in ``obj``: ``obj`` itself, or its ``"state_dict"`` entry."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # training checkpoints ({"epoch", "state_dict", "optimizer", ...})
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: expected a {what} state dict (name -> tensor), got {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} entries are not named tensors (e.g. {bad[:4]})")
    return dict(obj)


def load_weights_into(module: nn.Module, state: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Strict loading that names the file and every missing / unexpected / mis-shaped key.

    BatchNorm ``num_batches_tracked`` counters may be absent: files saved before PyTorch 0.4.1
    (the 2018 ArcFace and torchvision releases among them) have none, and they are unused in eval mode.
    """
    own = module.state_dict()
    state = dict(state)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    load_state_dict_checked(module, state, str(path))


class FrozenModule(nn.Module):
    """A fixed, pretrained network used as a loss: no trainable parameters and always in eval mode.

    ``train()`` is a no-op for the submodules, so a trainer that calls ``.train()`` on a container
    holding the loss cannot switch BatchNorm to batch statistics or turn Dropout on.
    Gradients still flow to the *inputs*.
    """

    def freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenModule:
        return super().train(False)


def cosine_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product of unit embeddings ``[B, D]`` x ``[B, D]`` -> ``[B]`` (the cosine)."""
    return (a * b).sum(dim=1)


def embedding_loss(embed: Callable[[torch.Tensor], torch.Tensor], y_hat: torch.Tensor,
                   y: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(embed(y_hat), embed(y)))`` with the target side computed without a graph (pSp/e4e)."""
    check_pair(y_hat, y)
    with torch.no_grad():
        target = embed(y)
    return (1 - cosine_per_sample(embed(y_hat), target)).mean()


def check_pair(x: torch.Tensor, y: torch.Tensor, min_size: int = 1) -> None:
    """Raise ValueError unless ``x`` and ``y`` are image batches ``[B, 3, H, W]`` of the same shape."""
    for name, t in (("x", x), ("y", y)):
        if t.ndim != 4 or t.shape[0] < 1 or t.shape[1] != 3 or min(t.shape[2:]) < min_size:
            raise ValueError(f"{name} must be images [B, 3, H, W] with B >= 1 and H, W >= {min_size}, "
                             f"got {list(t.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"the two image batches must have the same shape, got {list(x.shape)} and {list(y.shape)}")
