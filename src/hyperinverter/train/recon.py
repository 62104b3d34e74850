"""The reconstruction objective of both inversion phases: L2, L1, edges, LPIPS, identity, MoCo or attributes, each
optional."""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..losses.pixel import box_crop, check_box, gradient_loss, l1_loss
from .config import LossConfig

log = logging.getLogger("hyperinverter")


class ReconstructionLoss(nn.Module):
    """Weighted sum of the configured terms on images average-pooled to ``loss_resolution`` (official: 256).

    A term whose weight file is not given is switched off once, with one message; nothing is downloaded.
    ``forward`` returns the total (with its graph) and each term as a detached 0-d tensor on the device: no
    host sync (a trainer sums them on the device and pulls them every ``run.log_every`` steps).
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()
        from ..losses import LPIPS, IDLoss, MocoLoss, optional_loss

        self.cfg = cfg
        self.lpips = optional_loss("lpips", cfg.lpips_backbone_path,
                                   lambda p: LPIPS(cfg.lpips_net, backbone_path=p, head_path=cfg.lpips_head_path)
                                   ) if cfg.lpips > 0 else None
        self.id = optional_loss("id", cfg.id_path, IDLoss) if cfg.id > 0 else None
        # official=True: the e4e/HyperInverter preprocessing (nearest resize to 224 of the [-1, 1] image).
        self.moco = optional_loss("moco", cfg.moco_path, lambda p: MocoLoss(p, official=True)) if cfg.moco > 0 else None
        self.attr = optional_loss("attr", cfg.attr_path, _attribute_regressor) if cfg.attr > 0 else None
        self.attr_columns = None  # indices of losses.attr_attributes in the regressor's outputs (None = all)
        if self.attr is not None and cfg.attr_attributes is not None:
            unknown = [n for n in cfg.attr_attributes if n not in self.attr.attributes]
            if unknown:
                raise CheckpointError(f"{cfg.attr_path}: the attribute regressor does not predict {unknown} "
                                      f"(losses.attr_attributes; it predicts {self.attr.attributes})")
            self.attr_columns = [self.attr.attributes.index(n) for n in cfg.attr_attributes]
        # losses.l2_box_region as checked floats (config.validate has said what is wrong with it already)
        self.box = check_box(cfg.l2_box_region) if cfg.l2_box > 0 else None
        for net in (self.lpips, self.id, self.moco, self.attr):
            if net is not None:
                net.eval().requires_grad_(False)

    @property
    def active(self) -> bool:
        """Whether any image term is on (with none, a trainer need not synthesise images at all)."""
        c = self.cfg
        return (c.l2 > 0 or c.l2_box > 0 or c.l1 > 0 or c.grad > 0 or self.lpips is not None or self.id is not None
                or self.moco is not None or self.attr is not None)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        size = self.cfg.loss_resolution
        return F.adaptive_avg_pool2d(x, size) if x.shape[-1] > size else x

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out, tgt = self.pool(output), self.pool(target)
        logs: dict[str, torch.Tensor] = {}
        total = out.new_zeros([])
        if self.cfg.l2 > 0:
            l2 = F.mse_loss(out, tgt)
            total = total + self.cfg.l2 * l2
            logs["l2"] = l2.detach()
        if self.box is not None:
            l2_box = F.mse_loss(box_crop(out, self.box), box_crop(tgt, self.box))
            total = total + self.cfg.l2_box * l2_box
            logs["l2_box"] = l2_box.detach()
        if self.cfg.l1 > 0:
            l1 = l1_loss(out, tgt)
            total = total + self.cfg.l1 * l1
            logs["l1"] = l1.detach()
        if self.cfg.grad > 0:
            grad = gradient_loss(out, tgt)
            total = total + self.cfg.grad * grad
            logs["grad"] = grad.detach()
        if self.lpips is not None:
            lp = self.lpips(out, tgt).mean()
            total = total + self.cfg.lpips * lp
            logs["lpips"] = lp.detach()
        if self.id is not None:
            idl = self.id(out, tgt)
            total = total + self.cfg.id * idl
            logs["id"] = idl.detach()
        if self.moco is not None:
            mo = self.moco(out, tgt)
            total = total + self.cfg.moco * mo
            logs["moco"] = mo.detach()
        if self.attr is not None:
            at = attribute_distance(self.attr, out, tgt, self.attr_columns)
            total = total + self.cfg.attr * at
            logs["attr"] = at.detach()
        logs["loss"] = total.detach()
        return total, logs


def _attribute_regressor(path: str) -> nn.Module:
    from ..evaluation.attributes import AttributeRegressor

    return AttributeRegressor.from_pretrained(path)


def attribute_distance(regressor: nn.Module, output: torch.Tensor, target: torch.Tensor,
                       columns: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Mean squared difference of ``regressor.predict_normalized`` on ``output`` and ``target`` ``[B, 3, H, W]``:
    every attribute on the regressor's common [0, 1] scale (binary ones as probabilities), so a smile, a yaw and
    glasses weigh alike; ``columns``: only those outputs. Gradients flow to ``output`` only."""
    assert output.shape == target.shape and output.ndim == 4, (output.shape, target.shape)
    with torch.no_grad():
        want = regressor.predict_normalized(target)
    got = regressor.predict_normalized(output)
    if columns is not None:
        columns = list(columns)
        got, want = got[:, columns], want[:, columns]
    return F.mse_loss(got, want)
