"""Which generator weights receive a predicted residual, and which E2 slot feeds each.

Everything here is read off the generator itself: the synthesis blocks in order, the conv layers
inside each block and their toRGB layer. The slot of a layer follows the official rule: in block
``k`` (``b4`` is 0), the block's ``j``-th conv reads slot ``2k + j`` and the toRGB layer reads
slot ``2k + 1`` (so ``b4.conv1`` -> 0, ``b4.torgb`` -> 1, ``b8.conv0`` -> 2, ``b8.conv1`` and
``b8.torgb`` -> 3, ...). That uses every slot from 0 to ``num_ws - 1`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stylegan2.synthesis import SynthesisLayer, SynthesisNetwork, ToRGBLayer

#: ``conv``: conv + toRGB kernels (the official ``conv_without_bias``); ``conv_no_torgb``: conv kernels
#: only; ``conv_affine``: conv + toRGB kernels and the affine (style) matrices (``all_without_bias``).
TARGET_SETS = ("conv", "conv_no_torgb", "conv_affine")


@dataclass(frozen=True)
class TargetLayer:
    """One generator parameter that gets a per-sample residual."""

    name: str  # Parameter name under G.synthesis, e.g. "b8.conv0.weight".
    shape: tuple  # Parameter shape, e.g. (512, 512, 3, 3).
    slot: int  # Index into E2's output slots.

    @property
    def key(self) -> str:
        """Name usable as a ModuleDict key (the official ``b8_conv0_weight``)."""
        return self.name.replace(".", "_")


def target_layers(synthesis: SynthesisNetwork, targets: str = "conv", max_resolution: int | None = None
                  ) -> list[TargetLayer]:
    """The target weights of ``synthesis`` in block order (the official OrderedDict order).

    Args:
        targets: one of :data:`TARGET_SETS`.
        max_resolution: leave out blocks above this resolution (None = all).
    """
    if targets not in TARGET_SETS:
        raise ValueError(f"targets must be one of {TARGET_SETS}, got {targets!r}")
    out: list[TargetLayer] = []
    for k, (block, res) in enumerate(zip(synthesis.blocks(), synthesis.block_resolutions)):
        if max_resolution is not None and res > max_resolution:
            break
        prefix = f"b{res}"
        convs = [(n, m) for n, m in block.named_children() if isinstance(m, SynthesisLayer)]
        rgbs = [(n, m) for n, m in block.named_children() if isinstance(m, ToRGBLayer)]
        layers = [(n, m, 2 * k + j) for j, (n, m) in enumerate(convs)]
        if targets != "conv_no_torgb":
            layers += [(n, m, 2 * k + 1) for n, m in rgbs]
        for n, m, slot in layers:
            out.append(TargetLayer(f"{prefix}.{n}.weight", tuple(m.weight.shape), slot))
            if targets == "conv_affine":
                out.append(TargetLayer(f"{prefix}.{n}.affine.weight", tuple(m.affine.weight.shape), slot))
    return out
