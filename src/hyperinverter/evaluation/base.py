"""The interface every inversion method of the evaluation implements, and its timing.

An :class:`InversionMethod` turns a batch of images ``[B, 3, R, R]`` in [-1, 1] (``R`` = the generator's
resolution) into a :class:`MethodOutput`: reconstructions, latent codes and the wall time it took.

Codes follow one convention for every method, so that rendering and editing are the same for all:

* ``"ws"`` ``[B, num_ws, w_dim]``: always (a W code repeated, or a W+ code);
* ``"w"`` ``[B, w_dim]``: when the code lies in W (encoders, W optimisation, the PTI pivot);
* ``"delta.<name>"`` ``[B, *param.shape]``: per-image residuals of generator synthesis parameters
  (HyperInverter's predicted Δθ, PTI's tuned weights minus the originals).

``model.render(codes["ws"], deltas)`` reproduces the reconstructions; an edit moves ``ws`` and keeps the
residuals (:func:`render_codes`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch

from ..inverter import HyperInverter

#: The ``Type`` column of the paper's tables, per method kind.
METHOD_KINDS = ("encoder", "optimisation", "hybrid")


@dataclass
class MethodOutput:
    """What one :meth:`InversionMethod.invert` call returns (tensors detached, on the method's device)."""

    reconstructions: torch.Tensor  # [B, 3, R, R] in about [-1, 1].
    codes: dict[str, torch.Tensor]  # "ws" [B, num_ws, w_dim], "w" [B, w_dim] (W codes), "delta.<name>" [B, ...].
    seconds: float  # Wall time of the call, device synchronised before reading the clock.
    history: list[float] = field(default_factory=list)  # Mean loss per image at every step (optimisation only).

    def __len__(self) -> int:
        return self.reconstructions.shape[0]

    @property
    def ws(self) -> torch.Tensor:
        """``[B, num_ws, w_dim]``."""
        return self.codes["ws"]

    def deltas(self) -> dict[str, torch.Tensor]:
        """The residuals ``{synthesis parameter name: [B, *shape]}`` (empty for pure latent codes)."""
        return {k[len("delta."):]: v for k, v in self.codes.items() if k.startswith("delta.")}


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (CUDA) so that a wall clock measures the computation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def render_codes(model: HyperInverter, ws: torch.Tensor, deltas: Optional[dict[str, torch.Tensor]] = None,
                 batch_size: Optional[int] = None) -> torch.Tensor:
    """Images ``[B, 3, R, R]`` of ``ws`` ``[B, num_ws, w_dim]`` with optional per-image residuals (no grad)."""
    with torch.no_grad():
        return model.render(ws, deltas or None, batch_size=batch_size)


class InversionMethod(ABC):
    """Base class of the evaluated methods: ``invert(images) -> MethodOutput``.

    Subclasses set ``name`` (the ``--methods`` key), ``kind`` (one of :data:`METHOD_KINDS`), ``label``
    (the table's row name) and ``config_class`` (a dataclass), and implement :meth:`_run`.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    label: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(
        self,
        model: HyperInverter,  # The inverter whose generator (and encoders) is used; put in eval mode.
        config: Any = None,  # An instance of ``config_class``; None = its defaults.
        lpips: Optional[torch.nn.Module] = None,  # LPIPS module for optimisation losses (None = MSE only).
        progress: bool = False,  # Show tqdm bars over optimisation steps.
    ):
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name}: config must be a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.model = model.eval()  # BatchNorm running statistics, never updated by an evaluation
        self.config = config
        self.lpips = lpips
        self.progress = progress

    @property
    def device(self) -> torch.device:
        return self.model.generator.w_avg.device

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` on the model's device, after checking shape, range and resolution."""
        r = self.model.resolution
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
                or images.shape[0] < 1:
            got = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{self.name}: images must be a tensor [B, 3, {r}, {r}], got {got}")
        if tuple(images.shape[-2:]) != (r, r):
            raise ValueError(f"{self.name}: images are {images.shape[-1]}x{images.shape[-2]}, the generator renders "
                             f"{r}x{r}; resize them first (e.g. load_images(paths, size={r}))")
        if not images.is_floating_point() or not torch.isfinite(images).all():
            raise ValueError(f"{self.name}: images must be finite floats in [-1, 1]")
        return images.to(self.device, torch.float32)

    def invert(self, images: torch.Tensor) -> MethodOutput:
        """Invert ``images`` ``[B, 3, R, R]`` in [-1, 1]; ``seconds`` covers the whole call."""
        images = self.check_images(images)
        synchronize(self.device)
        start = time.perf_counter()
        recon, codes, history = self._run(images, warmup=False)
        synchronize(self.device)
        seconds = time.perf_counter() - start
        return MethodOutput(recon.detach(), {k: v.detach() for k, v in codes.items()}, seconds, history)

    def warmup(self, images: torch.Tensor) -> None:
        """One short untimed run (kernels, allocator, caches); optimisation methods take only a few steps."""
        self._run(self.check_images(images), warmup=True)
        synchronize(self.device)

    @abstractmethod
    def _run(self, images: torch.Tensor, warmup: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[float]]:
        """``(reconstructions [B, 3, R, R], codes, loss history)`` for checked images on the device."""

    def describe(self) -> dict:
        """Name, kind and config, for reports."""
        import dataclasses

        return {"name": self.name, "label": self.label, "kind": self.kind,
                "config": dataclasses.asdict(self.config), "lpips_loss": self.lpips is not None}
