"""HyperInverter: W-encoder (E1) + layer-wise encoder (E2) + hypernetworks + a frozen StyleGAN2.

Phase I: ``w = E1(x) + w_avg``, repeated ``num_ws`` times, renders ``image_w``.
Phase II: E2 reads the input and ``image_w``; per target layer, a regressor fuses the two feature
maps of its slot and predicts a residual Δθ; the generator renders ``image`` from the same ``w``
with θ + Δθ, for the whole batch at once (per-sample weights through ``weight_deltas``).
Module names follow the official checkpoint (``w_encoder``, ``w_bar_encoder``, ``hypernet``).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import PretrainedMixin
from .encoders import LayerWiseEncoder, LayerWiseEncoderConfig, WEncoder, WEncoderConfig
from .hypernet import TARGET_SETS, Hypernetwork, target_layers
from .precision import DTYPES, REDUCED_BLOCKS, autocast, check_precision, get_default_precision
from .precision import precision_of_dtype, resolve_precision
from .stylegan2 import Generator, GeneratorConfig
from .stylegan2.residuals import Residuals, add_residuals, cat_residuals, lerp_residuals, raw_items
from .stylegan2.synthesis import NOISE_MODES
from .utils.dataclass_config import dataclass_from_dict

#: Input images beyond [-INPUT_RANGE_LIMIT, INPUT_RANGE_LIMIT] are refused (the model expects [-1, 1]; the margin
#: leaves room for resampling overshoot).
INPUT_RANGE_LIMIT = 1.5
#: The largest change of any w coordinate an edit may make (w of a StyleGAN2 lies within a few tens).
EDIT_STEP_LIMIT = 1e4


# On a CPU a synthesis batch whose feature maps are far larger than the caches runs slower per image than a
# small one (measured in one process, one thread, on the 2-core VM: churches-256 with residuals 3.3 s/image in
# passes of 1 image (33 MB maps) against 4.5-4.9 s in one pass of 8; the 64 px demo model 54-57 ms/image in
# passes of 4-16 (4-16 MB) against 101 in one of 64; churches E1 + E2 2.7 s/image in passes of 2 against 3.6
# in one of 16), so inference there runs in passes under this size.
CPU_PASS_BYTES = 16 << 20


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}"[:200])

Deltas = Mapping[str, torch.Tensor]  # a dict of dense tensors, or Residuals (factored entries, dense on access)

#: Ways to store an inversion's codes (:meth:`InversionResult.codes`): ``full`` = dense Δθ in float32,
#: ``half`` = dense Δθ in float16, ``compact`` = the hypernetwork's per-layer codes (expanded on load).
CODES_FORMATS = ("full", "half", "compact")
LayerRange = Union[None, slice, range, Sequence[int], tuple]
#: Scale of the difference channels of a 6-channel E2 (HyperInverterConfig). The differences are small next to the
#: images (their standard deviation is about 0.17 after phase I and 0.07 after a hypernetwork pass, against 0.5), and
#: E2 learns to read them from zero stem weights when it is widened: at scale 1 those weights had moved by 0.0014
#: in 500 steps (the image weights are 0.1). This is part of the model's definition; changing it changes every
#: 6-channel model.
DIFFERENCE_GAIN = 4.0

#: The most refinement passes a config may ask for (each costs one E2 pass and one synthesis per image).
MAX_REFINEMENT_PASSES = 8


@dataclass
class HyperInverterConfig:
    """Everything needed to build a :class:`HyperInverter` (stored in ``config.json``).

    E2's trunk takes 3 or 6 input channels (``layer_encoder.backbone.in_channels``). With 6 it reads every image
    next to the input's difference from it, ``cat(image, DIFFERENCE_GAIN * (input - image))`` (the input itself
    with a zero difference), so the errors of the phase-I image and of each refinement pass are in its input, as
    HFGI's consultation encoder reads its distortion map. The official models read 3."""

    # Nested configs: their dataclasses, or the dicts config.json stores (converted and validated).
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)  # The frozen StyleGAN2.
    w_encoder: WEncoderConfig = field(default_factory=WEncoderConfig)  # E1.
    layer_encoder: LayerWiseEncoderConfig = field(default_factory=LayerWiseEncoderConfig)  # E2.
    hidden_dim: int = 128  # D: size of each layer's code (official scripts 128, paper 256).
    targets: str = "conv"  # Which generator weights get residuals (see hypernet.TARGET_SETS).
    encoder_input_size: int = 256  # Images are resized to this (bilinear, no antialias) before E1 and E2.
    noise_mode: str = "const"  # Generator noise used for both renders.
    refinement_passes: int = 0  # Extra hypernetwork passes (0 = the paper's single pass). Pass k reads E2's codes of
    #                             the previous pass's image and of the input through its own hypernetwork, and its
    #                             residual is added to the previous ones (HyperStyle's iterations, weights not shared).

    def __post_init__(self):
        self.generator = g = dataclass_from_dict(GeneratorConfig, self.generator, path="generator")
        self.w_encoder = dataclass_from_dict(WEncoderConfig, self.w_encoder, path="w_encoder")
        self.layer_encoder = dataclass_from_dict(LayerWiseEncoderConfig, self.layer_encoder, path="layer_encoder")
        if self.targets not in TARGET_SETS:
            raise ValueError(f"targets must be one of {TARGET_SETS}, got {self.targets!r}")
        if self.noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {self.noise_mode!r}")
        if not isinstance(self.hidden_dim, int) or self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be a positive integer, got {self.hidden_dim!r}")
        if not isinstance(self.refinement_passes, int) or isinstance(self.refinement_passes, bool) or \
                not 0 <= self.refinement_passes <= MAX_REFINEMENT_PASSES:
            raise ValueError(f"refinement_passes must be an integer from 0 to {MAX_REFINEMENT_PASSES}, got "
                             f"{self.refinement_passes!r}")
        if self.w_encoder.w_dim != g.w_dim:
            raise ValueError(f"the W-encoder outputs w_dim={self.w_encoder.w_dim}, the generator takes {g.w_dim}")
        if self.w_encoder.backbone.in_channels != 3:
            raise ValueError(f"the W-encoder reads RGB images: w_encoder.backbone.in_channels must be 3, got "
                             f"{self.w_encoder.backbone.in_channels}")
        if self.layer_encoder.backbone.in_channels not in (3, 6):
            raise ValueError("layer_encoder.backbone.in_channels must be 3 (images) or 6 (each image with the input's "
                             f"difference from it), got {self.layer_encoder.backbone.in_channels}")
        if self.layer_encoder.num_slots < g.num_ws:
            raise ValueError(f"the layer-wise encoder has {self.layer_encoder.num_slots} slots; a "
                             f"{g.img_resolution}px generator needs {g.num_ws}")
        if self.encoder_input_size < 32 or self.encoder_input_size % 32:
            raise ValueError(f"encoder_input_size must be a positive multiple of 32, got {self.encoder_input_size}")


def _shape(t) -> str:
    return str(list(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


@dataclass
class InversionResult:
    """Codes and images of a batch of inversions (images in about [-1, 1])."""

    w: torch.Tensor  # [B, w_dim], w_avg included.
    ws: torch.Tensor  # [B, num_ws, w_dim]; w repeated (W), or edited rows.
    deltas: Deltas  # {synthesis parameter name: [B, *shape]} (Residuals: factored, dense when read).
    image: Optional[torch.Tensor] = None  # [B, C, R, R] phase II (θ + Δθ).
    image_w: Optional[torch.Tensor] = None  # [B, C, R, R] phase I (θ).
    #: {target parameter name: [B, passes * hidden_dim]}: the hypernetworks' per-layer codes that Δθ is expanded from
    #: (:meth:`HyperInverter.expand_layer_codes`); set by inference, None for training passes and dense Δθ.
    layer_codes: Optional[dict[str, torch.Tensor]] = None

    def __len__(self) -> int:
        return self.ws.shape[0]

    def __getitem__(self, index: Union[int, slice]) -> "InversionResult":
        """The sub-batch ``index`` (an int keeps a batch dimension of 1)."""
        idx = slice(index, index + 1) if isinstance(index, int) else index
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        codes = None if self.layer_codes is None else {k: v[idx] for k, v in self.layer_codes.items()}
        return InversionResult(self.w[idx], self.ws[idx], Residuals(raw_items(self.deltas)).select(idx),
                               pick(self.image), pick(self.image_w), codes)

    def detach(self) -> "InversionResult":
        f = lambda t: None if t is None else t.detach()  # noqa: E731
        codes = None if self.layer_codes is None else {k: v.detach() for k, v in self.layer_codes.items()}
        return InversionResult(self.w.detach(), self.ws.detach(), Residuals(raw_items(self.deltas)).detach(),
                               f(self.image), f(self.image_w), codes)

    @classmethod
    def cat(cls, parts: Sequence["InversionResult"]) -> "InversionResult":
        """Concatenate results along the batch (factored Δθ stays factored; images and per-layer codes are
        kept only when every part has them)."""
        if not parts:
            raise ValueError("InversionResult.cat needs at least one result")
        if len(parts) == 1:
            return parts[0]
        both = lambda get: None if any(get(p) is None for p in parts) else torch.cat([get(p) for p in parts])  # noqa
        codes = None
        if all(p.layer_codes is not None and set(p.layer_codes) == set(parts[0].layer_codes) for p in parts):
            codes = {k: torch.cat([p.layer_codes[k] for p in parts]) for k in parts[0].layer_codes}
        return cls(w=torch.cat([p.w for p in parts]), ws=torch.cat([p.ws for p in parts]),
                   deltas=cat_residuals([p.deltas for p in parts]), image=both(lambda p: p.image),
                   image_w=both(lambda p: p.image_w), layer_codes=codes)

    def codes(self, format: str = "full") -> dict[str, torch.Tensor]:
        """Flat tensor dict for a safetensors file (CPU, contiguous, no shared memory).

        Args:
            format: one of :data:`CODES_FORMATS`:

                * ``"full"``: ``w``, ``ws`` and the dense Δθ ``delta.<name>`` in float32 (self-contained);
                * ``"half"``: the same with Δθ in float16 (half the size, self-contained; Δθ rounded to about
                  3 significant digits);
                * ``"compact"``: ``w``, ``ws`` and the per-layer codes ``code.<name>`` ``[B, passes * hidden_dim]``
                  (a few KB per image); Δθ is rebuilt by the model that made them
                  (:meth:`HyperInverter.expand_layer_codes`, :func:`hyperinverter.workflows.load_codes`).

        Raises:
            ValueError: an unknown format; ``compact`` for a result without per-layer codes (dense Δθ, a
                training pass); ``half`` where a Δθ value exceeds the float16 range.
        """
        if format not in CODES_FORMATS:
            raise ValueError(f"codes format must be one of {', '.join(CODES_FORMATS)}, got {format!r}")
        out = {"w": self.w, "ws": self.ws}
        if format == "compact":
            if self.layer_codes is None:
                raise ValueError("this result has no per-layer codes (dense residuals, or a training pass); save it "
                                 "with format='full' or 'half'")
            out.update({f"code.{k}": v.float() for k, v in self.layer_codes.items()})
        else:
            for k in self.deltas:
                v = self.deltas[k]  # dense, one layer at a time
                if format == "half":
                    v = v.detach().to(torch.float16)
                    if not torch.isfinite(v).all():
                        raise ValueError(f"the residual of {k} exceeds the float16 range; save with format='full'")
                out[f"delta.{k}"] = v
        # clone: an edit's w is a view of its ws, and safetensors refuses tensors that share memory
        return {k: v.detach().cpu().clone().contiguous() for k, v in out.items()}

    @classmethod
    def from_codes(cls, codes: Mapping[str, torch.Tensor], model: Optional["HyperInverter"] = None
                   ) -> "InversionResult":
        """The result stored by :meth:`codes` (any format; float16 Δθ comes back as float32).

        Args:
            codes: the tensor dict (``w``, ``ws`` and ``delta.<name>`` or ``code.<name>`` entries).
            model: needed for per-layer codes (``compact``), which it expands into Δθ; when given, the shapes
                are also checked against it.

        Raises:
            ValueError: missing, unexpected, mis-shaped or non-finite entries, or per-layer codes without a model.
        """
        missing = [k for k in ("w", "ws") if k not in codes]
        if missing:
            raise ValueError(f"codes are missing {missing} (expected 'w', 'ws' and 'delta.<name>' or 'code.<name>' "
                             "entries)")
        other = [k for k in codes if k not in ("w", "ws") and not k.startswith(("delta.", "code."))]
        if other:
            raise ValueError(f"unexpected entries {sorted(other)[:5]} (expected 'w', 'ws' and 'delta.<name>' or "
                             "'code.<name>')")
        w, ws = codes["w"], codes["ws"]
        if not (isinstance(w, torch.Tensor) and isinstance(ws, torch.Tensor) and w.ndim == 2 and ws.ndim == 3
                and w.shape[0] == ws.shape[0] >= 1 and w.shape[1] == ws.shape[2]):
            raise ValueError(f"'w' must be [B, w_dim] and 'ws' [B, num_ws, w_dim], got {_shape(w)} and {_shape(ws)}")
        if model is not None and (ws.shape[1], ws.shape[2]) != (model.num_ws, model.generator.w_dim):
            raise ValueError(f"'ws' is {_shape(ws)}; this model takes [B, {model.num_ws}, {model.generator.w_dim}]")
        if not (w.is_floating_point() and ws.is_floating_point()) or not (torch.isfinite(w).all()
                                                                           and torch.isfinite(ws).all()):
            raise ValueError("'w' and 'ws' must hold finite floating-point values")
        batch = w.shape[0]
        deltas = {k[len("delta."):]: v for k, v in codes.items() if k.startswith("delta.")}
        layer = {k[len("code."):]: v for k, v in codes.items() if k.startswith("code.")}
        if deltas and layer:
            raise ValueError("codes hold both 'delta.<name>' and 'code.<name>' entries; expected one kind")
        params = dict(model.generator.synthesis.named_parameters()) if model is not None else {}
        for name, v in deltas.items():
            shown = name[:60]  # for messages (the names come from a file)
            if not v.is_floating_point() or v.ndim < 2 or v.shape[0] != batch:
                raise ValueError(f"'delta.{shown}' must be a float tensor [{batch}, ...], got {_shape(v)} {v.dtype}")
            if model is not None and (name not in params or tuple(v.shape[1:]) != tuple(params[name].shape)):
                want = list(params[name].shape) if name in params else "no such synthesis parameter"
                raise ValueError(f"'delta.{shown}' is {_shape(v)}; this model: {want}")
            if not torch.isfinite(v).all():
                raise ValueError(f"'delta.{shown}' holds NaN or infinite values")
        deltas = {k: (v.float() if v.dtype in (torch.float16, torch.bfloat16) else v) for k, v in deltas.items()}
        if layer:
            if model is None:
                raise ValueError("these are per-layer codes (the compact format): they expand into residuals only "
                                 "with the model that made them (pass model=...)")
            model_device = model.generator.w_avg.device
            w, ws = w.to(model_device), ws.to(model_device)
            return cls(w, ws, model.expand_layer_codes(layer),
                       layer_codes={k: v.to(model_device).float() for k, v in layer.items()})
        if model is not None:
            model_device = model.generator.w_avg.device
            w, ws, deltas = w.to(model_device), ws.to(model_device), {k: v.to(model_device) for k, v in deltas.items()}
        return cls(w, ws, deltas)


class HyperInverter(PretrainedMixin, nn.Module):
    """Image ``[B, 3, H, W]`` in [-1, 1] -> :class:`InversionResult` in one encoder pass."""

    config_class = HyperInverterConfig

    def __init__(
        self,
        generator: Union[GeneratorConfig, dict, None] = None,
        w_encoder: Union[WEncoderConfig, dict, None] = None,
        layer_encoder: Union[LayerWiseEncoderConfig, dict, None] = None,
        hidden_dim: int = 128,
        targets: str = "conv",
        encoder_input_size: int = 256,
        noise_mode: str = "const",
        refinement_passes: int = 0,
    ):
        """A new (untrained) inverter; the defaults are the official FFHQ model (config-f 1024 px generator,
        IR-SE-50 encoders, 18 slots, hidden_dim 128). :meth:`from_pretrained` loads a trained one,
        :meth:`from_generator` wraps the weights of an existing generator.

        The arguments are the fields of :class:`HyperInverterConfig` (kept as ``self.config``, the record that
        ``save_pretrained`` writes). Nested configs are given as their dataclasses or as the dicts ``config.json``
        stores; ``self.config`` holds them as dataclasses (``model.config.generator.w_dim``).

        Args:
            generator: the frozen StyleGAN2 (:class:`GeneratorConfig`); None = config-f at 1024 px.
            w_encoder: E1 (:class:`WEncoderConfig`); its ``w_dim`` must be the generator's. None = IR-SE-50, 512.
            layer_encoder: E2 (:class:`LayerWiseEncoderConfig`), with at least the generator's ``num_ws`` slots.
                None = IR-SE-50 with 18 slots.
            hidden_dim: D, the size of each target layer's code (official scripts 128, paper 256).
            targets: which generator weights get residuals, one of :data:`~hyperinverter.hypernet.TARGET_SETS`.
            encoder_input_size: images are resized to this side (bilinear, no antialias) before E1 and E2; a
                multiple of 32 that leaves E2 maps of at least 2x2.
            noise_mode: generator noise for both renders, one of
                :data:`~hyperinverter.stylegan2.synthesis.NOISE_MODES`.
            refinement_passes: hypernetwork passes after the first (0 = the paper's model). Each has its own
                hypernetwork (``refiners.<k>``), reads E2's codes of the previous pass's image and of the input, and
                adds its residual; ``layer_codes`` then hold every pass's code side by side.
        Raises:
            ValueError, TypeError: values the configs refuse, or parts that do not fit together.
        """
        super().__init__()
        self.config = cfg = HyperInverterConfig(
            generator=GeneratorConfig() if generator is None else generator,
            w_encoder=WEncoderConfig() if w_encoder is None else w_encoder,
            layer_encoder=LayerWiseEncoderConfig() if layer_encoder is None else layer_encoder,
            hidden_dim=hidden_dim, targets=targets, encoder_input_size=encoder_input_size, noise_mode=noise_mode,
            refinement_passes=refinement_passes)
        self.generator = Generator.from_config(cfg.generator).requires_grad_(False).eval()
        self.w_encoder = WEncoder.from_config(cfg.w_encoder)
        self.w_bar_encoder = LayerWiseEncoder.from_config(cfg.layer_encoder)
        self.targets = target_layers(self.generator.synthesis, cfg.targets)
        code_size = cfg.encoder_input_size // self.w_bar_encoder.output_reduction
        if code_size < 2:  # the fusion's InstanceNorm needs more than one spatial element
            raise ValueError(f"encoder_input_size {cfg.encoder_input_size} gives {code_size}x{code_size} E2 maps; "
                             f"use at least {2 * self.w_bar_encoder.output_reduction}")
        make = lambda: Hypernetwork(self.targets, input_channels=self.w_bar_encoder.style_channels,  # noqa: E731
                                    input_size=code_size, hidden_dim=cfg.hidden_dim)
        self.hypernet = make()
        #: One hypernetwork per refinement pass (empty for the paper's model: no state_dict keys).
        self.refiners = nn.ModuleList([make() for _ in range(cfg.refinement_passes)])
        self._factor_cache: dict = {}  # {pass: add_residuals' cache}: the stacked W2/b2 at inference
        #: "fp32" | "bf16" | "fp16", or None: the process default (hyperinverter.precision), else the weights' dtype.
        self.precision: Optional[str] = None
        #: How residuals are applied in the generator (see SynthesisNetwork.forward): "auto" | "lowrank" | "grouped".
        self.residual_path = "auto"
        #: Images per forward / synthesis pass at inference: None = :meth:`pass_size` decides by device; an int
        #: forces it. Results are the same to float rounding whatever it is.
        self.pass_batch: Optional[int] = None

    @classmethod
    def from_generator(cls, generator: Generator, w_encoder: Union[WEncoderConfig, dict],
                       layer_encoder: Union[LayerWiseEncoderConfig, dict], **config) -> "HyperInverter":
        """A new (untrained) inverter around a copy of ``generator``'s weights."""
        model = cls(generator=generator.config, w_encoder=w_encoder, layer_encoder=layer_encoder, **config)
        model.generator.load_state_dict(generator.state_dict())
        return model

    # ------------------------------------------------------------------------------------ properties
    @property
    def num_ws(self) -> int:
        return self.generator.num_ws

    @property
    def resolution(self) -> int:
        return self.generator.img_resolution

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (float32 unless loaded or cast otherwise)."""
        return self.generator.synthesis.b4.conv1.weight.dtype

    def effective_precision(self, device: Optional[torch.device] = None) -> str:
        """The precision an inference runs in: ``self.precision``, else the process default, else the
        weights' dtype; ``fp16`` becomes ``bf16`` (with a warning) where the device cannot run it."""
        name = self.precision or get_default_precision() or precision_of_dtype(self.dtype)
        return resolve_precision(check_precision(name), device or self.generator.w_avg.device)

    def optimize(self, compile: bool = False, channels_last: bool = False, backend: str = "inductor",
                 mode: Optional[str] = None) -> "HyperInverter":
        """Opt-in speed-ups for inference; returns ``self``.

        Args:
            compile: ``torch.compile`` the encoders, the hypernetwork's regressors and the synthesis
                network (``nn.Module.compile``; the first call of each input shape compiles).
            channels_last: store the encoders' weights (and feed their inputs) as channels-last, which
                lets oneDNN / cuDNN pick NHWC kernels.
            backend, mode: passed to ``torch.compile``.
        """
        if channels_last:
            self.w_encoder.to(memory_format=torch.channels_last)
            self.w_bar_encoder.to(memory_format=torch.channels_last)
        self._channels_last = channels_last
        if compile:
            for module in (self.w_encoder, self.w_bar_encoder, self.generator.synthesis,
                           *(r for h in self.hypernets for r in h.weight_regressors.values())):
                module.compile(backend=backend, mode=mode)
        return self

    def _apply_process_options(self) -> None:
        """``--compile`` / ``--channels-last`` of the command line (hyperinverter.runtime), once per model."""
        from .runtime import inference_options

        opts = inference_options()
        if (opts.compile or opts.channels_last) and not getattr(self, "_optimized", False):
            self.optimize(compile=opts.compile, channels_last=opts.channels_last)
            self._optimized = True

    def train(self, mode: bool = True) -> "HyperInverter":
        super().train(mode)
        self.generator.eval()  # frozen; kept in eval whatever the rest does
        return self

    # --------------------------------------------------------------------------------------- passes
    @staticmethod
    def check_images(x: torch.Tensor) -> None:
        """Type, shape, finiteness and range of an input batch (the one host sync; done where inputs enter).

        Images are floating point in [-1, 1] (``x / 127.5 - 1`` of 8-bit values); values beyond
        ``±INPUT_RANGE_LIMIT`` (0..255 images, garbage) are refused with the range found."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor [B, 3, H, W], got a {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must have shape [B, 3, H, W], got {list(x.shape)}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"images must not be empty, got shape {list(x.shape)}")
        if not x.is_floating_point():
            hint = " (8-bit images: x.float() / 127.5 - 1)" if x.dtype == torch.uint8 else ""
            raise ValueError(f"images must be floating point in [-1, 1], got dtype {str(x.dtype).replace('torch.', '')}"
                             f"{hint}")
        lo, hi = torch.aminmax(x.detach().float())
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("images contain NaN or infinite values")
        if lo < -INPUT_RANGE_LIMIT or hi > INPUT_RANGE_LIMIT:
            hint = " (looks like 0..255: use x / 127.5 - 1)" if lo >= 0 and hi > 2 and hi <= 255 else ""
            raise ValueError(f"images must be in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]{hint}")

    def _encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must have shape [B, 3, H, W], got {list(x.shape)}")
        size = self.config.encoder_input_size
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        if x.shape[-2:] != (size, size):
            # The official model: bilinear, align_corners=False, no antialiasing.
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if getattr(self, "_channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self, precision: str):
        """Autocast for the encoders and hypernetworks (weights stored in bf16/fp16 always need one)."""
        if precision == "fp32" and self.dtype in (torch.bfloat16, torch.float16):
            precision = precision_of_dtype(self.dtype)
        return autocast(self.generator.w_avg.device, precision)

    def encode_w(self, x: torch.Tensor) -> torch.Tensor:
        """Phase I code: ``[B, 3, H, W]`` -> ``w`` ``[B, w_dim]`` (with ``w_avg``)."""
        self.check_images(x)
        return self._encode_w(self._encoder_input(x), self.effective_precision(x.device))

    def _encode_w(self, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:  # x already resized
        with self._autocast(precision):
            w = self.w_encoder(x)
        return w.float() + self.generator.w_avg.float()

    def render(self, ws: torch.Tensor, deltas: Optional[Mapping[str, torch.Tensor]] = None,
               batch_size: Optional[int] = None, precision: Optional[str] = None) -> torch.Tensor:
        """Generator images for ``ws`` with optional per-sample residuals, in chunks of ``batch_size``.

        ``precision``: None = :meth:`effective_precision`; bf16/fp16 run the highest-resolution blocks
        in that dtype (``SynthesisNetwork.forward``'s ``reduced_dtype``)."""
        precision = precision or self.effective_precision(ws.device)
        reduced = None if precision == "fp32" else DTYPES[precision]
        chunk = self.pass_size(ws.device)
        if chunk is not None:
            batch_size = chunk if batch_size is None else min(batch_size, chunk)
        synth = lambda w, d: self.generator.synthesis(  # noqa: E731
            w, noise_mode=self.config.noise_mode, weight_deltas=d or None, residual_path=self.residual_path,
            reduced_dtype=reduced, reduced_blocks=REDUCED_BLOCKS)
        if batch_size is None or ws.shape[0] <= batch_size:
            return synth(ws, deltas)
        chunks = []
        raw = raw_items(deltas or {})
        for start in range(0, ws.shape[0], batch_size):
            part = slice(start, start + batch_size)
            chunks.append(synth(ws[part], {k: (v if v.shape[0] == 1 else v[part]) for k, v in raw.items()}))
        return torch.cat(chunks)

    def pass_size(self, device: torch.device) -> Optional[int]:
        """Images per pass of :meth:`invert` (and of the synthesis in :meth:`render`), or None for the whole
        batch: :attr:`pass_batch` when set; else, at inference on a CPU, as many as keep the generator's largest
        feature map under :data:`CPU_PASS_BYTES`; the whole batch on other devices or with autograd on."""
        if self.pass_batch is not None:
            _check_batch_size(self.pass_batch)
            return self.pass_batch
        if torch.device(device).type != "cpu" or torch.is_grad_enabled():
            return None
        return max(1, CPU_PASS_BYTES // (4 * self.generator.synthesis.largest_feature_map()))

    def expand_layer_codes(self, layer_codes: Mapping[str, torch.Tensor]) -> Residuals:
        """Δθ (factored, as :meth:`invert` returns it) from per-layer codes ``{name: [B, passes * hidden_dim]}``
        (``InversionResult.layer_codes``, or the ``code.<name>`` entries of a compact codes file; passes = 1 +
        ``refinement_passes``, each pass's code after the previous one's).

        Raises:
            ValueError: names that are not exactly this model's targets, or codes of the wrong shape or non-finite.
        """
        names = [t.name for t in self.targets]
        missing, extra = [n for n in names if n not in layer_codes], [n for n in layer_codes if n not in names]
        if missing or extra:
            raise ValueError(f"per-layer codes for other layers than this model's targets (missing "
                             f"{[n[:60] for n in missing[:3]]}, unknown {[n[:60] for n in extra[:3]]}); they were "
                             "made by another model")
        d = self.config.hidden_dim * len(self.hypernets)  # every pass's code side by side
        batch = None
        out = {}
        for t in self.targets:
            code = layer_codes[t.name]
            if not isinstance(code, torch.Tensor) or code.ndim != 2 or code.shape[1] != d or \
                    (batch is not None and code.shape[0] != batch) or not code.is_floating_point():
                raise ValueError(f"the code of {t.name} must be a float tensor [B, {d}] (B equal for all layers), got "
                                 f"{_shape(code)}")
            if not torch.isfinite(code).all():
                raise ValueError(f"the code of {t.name} holds NaN or infinite values")
            batch = code.shape[0]
        passes = []
        for k, hypernet in enumerate(self.hypernets):
            one = {}
            for t in self.targets:
                reg = hypernet.weight_regressors[t.key]
                code = layer_codes[t.name][:, k * self.config.hidden_dim:(k + 1) * self.config.hidden_dim]
                with torch.no_grad():
                    f = reg.factored(code.to(device=reg.w1.device, dtype=reg.w1.dtype))
                one[t.name] = f.with_h(f.h.float()).detach()
            passes.append(Residuals(one))
        out = passes[0]
        for k, more in enumerate(passes[1:], start=1):
            out = add_residuals(out, more, self._factor_cache.setdefault(k, {}))
        return out

    def codes_probe(self, count: int = 32) -> list[float]:
        """``count`` weights of the regressors' ``w1`` and ``w2`` (evenly spaced over all of them, 4
        significant digits): what turns per-layer codes into Δθ. Compact codes files record it, and loading
        them with another model is refused (:meth:`codes_probe_matches`); a float16 or bfloat16 copy of the
        same weights matches."""
        tensors = [h.weight_regressors[t.key].w1 for h in self.hypernets for t in self.targets]
        tensors += [h.weight_regressors[t.key].w2 for h in self.hypernets for t in self.targets]
        starts = [0]
        for t in tensors:
            starts.append(starts[-1] + t.numel())
        values = []
        with torch.no_grad():
            for i in range(count):
                pos = (2 * i + 1) * starts[-1] // (2 * count)
                k = bisect.bisect_right(starts, pos) - 1
                values.append(float(f"{float(tensors[k].reshape(-1)[pos - starts[k]]):.4g}"))
        return values

    def codes_probe_matches(self, probe) -> bool:
        """Whether ``probe`` (from a compact codes file) is this model's :meth:`codes_probe`, to 2 %
        (reduced-precision copies of the weights differ by less than 0.4 %)."""
        if not isinstance(probe, list) or not 1 <= len(probe) <= 1024 or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in probe):
            return False
        mine = self.codes_probe(len(probe))
        scale = max((abs(v) for v in mine), default=0.0)
        return all(math.isfinite(a) and abs(a - b) <= 2e-2 * abs(b) + 1e-3 * scale for a, b in zip(probe, mine))

    def predict_deltas(self, x: torch.Tensor, image_w: torch.Tensor, ws: Optional[torch.Tensor] = None) -> Deltas:
        """Δθ from the input and the phase-I image (both resized to the encoder input size).

        ``ws`` ``[B, num_ws, w_dim]`` (the phase-I codes) is needed by a model with refinement passes, which
        renders each pass's image for the next; it is ignored otherwise."""
        self.check_images(x)
        precision = self.effective_precision(x.device)
        if self.refiners and ws is None:
            raise ValueError(f"this model refines its residuals in {len(self.refiners)} more pass(es), which render "
                             "with the phase-I codes: pass ws=")
        return self._predict_deltas_and_codes(self._encoder_input(x), self._encoder_input(image_w), ws, precision)[0]

    @property
    def hypernets(self) -> list[Hypernetwork]:
        """The first pass's hypernetwork, then the refinement passes' (``refiners``)."""
        return [self.hypernet, *self.refiners]

    def _e2(self, x: torch.Tensor, *images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """E2's codes of each image batch, for the input ``x`` (all at the encoder input size): one pass over all of
        them with running statistics (eval mode, the same result and faster); one pass per batch with BatchNorm
        batch statistics in training, as officially. A 6-channel E2 reads ``cat(image, DIFFERENCE_GAIN * (x - image))``."""
        if self.w_bar_encoder.backbone_config.in_channels == 6:
            images = tuple(torch.cat([im, DIFFERENCE_GAIN * (x - im)], dim=1) for im in images)
        if self.w_bar_encoder.training:
            return tuple(self.w_bar_encoder(im) for im in images)
        return self.w_bar_encoder(torch.cat(images)).chunk(len(images))

    @staticmethod
    def _run_hypernet(hypernet: Hypernetwork, image_codes: torch.Tensor, input_codes: torch.Tensor
                      ) -> tuple[dict, Optional[torch.Tensor]]:
        """Factored Δθ of one hypernetwork and, in eval mode, its codes ``[B, heads, D]`` (None in training)."""
        if hypernet.training:
            return hypernet(image_codes, input_codes, factored=True), None
        codes = hypernet.codes(image_codes, input_codes)  # what Hypernetwork.forward does in eval mode
        return {t.name: hypernet.weight_regressors[t.key].factored(codes[:, i])
                for i, t in enumerate(hypernet.targets)}, codes

    def _predict_deltas_and_codes(self, x: torch.Tensor, image_w: torch.Tensor, ws: Optional[torch.Tensor] = None,
                                  precision: str = "fp32") -> tuple[Residuals, Optional[dict[str, torch.Tensor]]]:
        """Factored Δθ and the per-layer codes it is expanded from (eval mode; None in training). ``x`` and
        ``image_w`` are at the encoder input size; ``ws`` is needed with refinement passes.

        Each refinement pass renders the previous Δθ without gradients (the next pass reads that image, as
        HyperStyle's iterations do) and adds its hypernetwork's residual."""
        size = self.config.encoder_input_size
        fit = lambda im: im if im.shape[-2:] == (size, size) else F.interpolate(  # noqa: E731
            im, size=(size, size), mode="bilinear", align_corners=False)
        with self._autocast(precision):
            input_codes, image_codes = self._e2(x, x, fit(image_w))
            factored, codes = self._run_hypernet(self.hypernet, image_codes, input_codes)
        as_float = lambda f: Residuals({k: v.with_h(v.h.float()) for k, v in f.items()})  # noqa: E731  G mixes fp32
        deltas = as_float(factored)
        all_codes = [codes]
        for refiner in self.refiners:
            with torch.no_grad():
                image = self.render(ws, deltas, precision=precision)
            with self._autocast(precision):
                (image_codes,) = self._e2(x, fit(image))
                factored, codes = self._run_hypernet(refiner, image_codes, input_codes)
            deltas = add_residuals(deltas, as_float(factored), self._factor_cache.setdefault(len(all_codes), {}))
            all_codes.append(codes)
        layer_codes = None
        if all(c is not None for c in all_codes):
            both = torch.cat(all_codes, dim=-1).float()  # [B, heads, passes * D]
            layer_codes = {t.name: both[:, i] for i, t in enumerate(self.hypernet.targets)}
        return deltas, layer_codes

    def forward(self, x: torch.Tensor) -> InversionResult:
        """Invert ``x`` ``[B, 3, H, W]`` in [-1, 1] (any square size; resized for the encoders).

        Δθ comes back factored (:class:`~hyperinverter.stylegan2.residuals.Residuals`: reading an entry
        gives the dense ``[B, *shape]`` tensor). Inputs are not checked for NaN here (no host sync:
        :meth:`invert`, :meth:`encode_w` and :meth:`predict_deltas` check them)."""
        precision = self.effective_precision(x.device)
        x = self._encoder_input(x)  # resized once
        w = self._encode_w(x, precision)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # [B, num_ws, w_dim]: one code in W
        with torch.no_grad():
            image_w = self.render(ws, precision=precision)
        deltas, layer_codes = self._predict_deltas_and_codes(x, image_w, ws, precision)
        image = self.render(ws, deltas, precision=precision)
        return InversionResult(w=w, ws=ws, deltas=deltas, image=image, image_w=image_w, layer_codes=layer_codes)

    def invert(self, x: torch.Tensor, batch_size: int = 8) -> InversionResult:
        """Inference in chunks of ``batch_size`` (no gradients; inputs checked once: see :meth:`check_images`;
        float16/bfloat16/float64 inputs are read as float32), all results in one :class:`InversionResult`.

        Everything is kept until the end (per image: Δθ factors, both images, codes); for many images use
        :meth:`invert_iter`, which holds one chunk at a time."""
        return InversionResult.cat(list(self.invert_iter(x, batch_size)))

    def invert_iter(self, images: Union[torch.Tensor, Iterable[torch.Tensor]], batch_size: int = 8
                    ) -> Iterator[InversionResult]:
        """Stream inversions: one detached :class:`InversionResult` per chunk of at most ``batch_size`` images,
        in input order, computed when the next one is asked for (inference mode, no gradients).

        Memory stays that of one chunk however many images there are, as long as the caller does not keep
        the results (write or reduce each, then drop it):

        >>> for r in model.invert_iter(images, batch_size=16):
        ...     save(r.codes("compact"), r.image)

        Args:
            images: a tensor ``[N, 3, H, W]`` in [-1, 1] (checked once, as :meth:`invert` does), or any iterable
                of such batches (e.g. a generator that loads files as it goes), each checked when it arrives
                and split into chunks of ``batch_size``; float16/bfloat16/float64 batches are read as float32.
            batch_size: images per forward pass (a positive int).

        Raises:
            ValueError: a bad ``batch_size`` (at once), or a bad batch (when it is reached).
        """
        _check_batch_size(batch_size)
        if isinstance(images, torch.Tensor):
            self.check_images(images)  # before the first chunk is asked for: errors surface at the call
            return self._invert_chunks((images,), batch_size, checked=True)
        if not isinstance(images, Iterable):
            raise ValueError(f"images must be a tensor [N, 3, H, W] or an iterable of them, got a "
                             f"{type(images).__name__}")
        return self._invert_chunks(images, batch_size, checked=False)

    def _invert_chunks(self, batches: Iterable[torch.Tensor], batch_size: int, checked: bool
                       ) -> Iterator[InversionResult]:
        self._apply_process_options()
        for batch in batches:
            if not checked:
                self.check_images(batch)
            for start in range(0, batch.shape[0], batch_size):
                chunk = batch[start:start + batch_size]
                x = chunk if chunk.dtype == torch.float32 else chunk.float()
                with torch.inference_mode():  # not around the yield: the caller's code runs outside it
                    step = self.pass_size(x.device) or len(x)
                    result = InversionResult.cat([self(x[i:i + step]).detach() for i in range(0, len(x), step)])
                yield result

    # -------------------------------------------------------------------------------- edit, interpolate
    def _layer_index(self, layers: LayerRange) -> Union[slice, list[int]]:
        if layers is None:
            return slice(None)
        if isinstance(layers, tuple) and len(layers) == 2 and all(isinstance(v, int) for v in layers):
            layers = range(layers[0], layers[1])  # (first, stop): out-of-range rows are an error, not clipped
        if isinstance(layers, slice):
            idx = list(range(self.num_ws))[layers]
        else:
            idx = list(layers)
        bad = [i for i in idx if not 0 <= i < self.num_ws]
        if not idx or bad:
            raise ValueError(f"layers {layers!r} select {idx}; valid rows are 0..{self.num_ws - 1}")
        return idx

    @torch.inference_mode()
    def edit(self, result: InversionResult, direction: torch.Tensor, strength: float = 1.0,
             layers: LayerRange = None, batch_size: Optional[int] = 8) -> InversionResult:
        """Move ``ws`` by ``strength * direction`` (on the rows ``layers`` only), keep Δθ, render.

        Args:
            direction: ``[w_dim]``, ``[1, w_dim]`` or ``[num_ws, w_dim]``.
            layers: rows of ``ws`` to move: ``slice``, ``(first, stop)``, a list, or None for all.
        """
        direction = torch.as_tensor(direction, dtype=result.ws.dtype, device=result.ws.device)
        w_dim = result.ws.shape[-1]
        if direction.shape not in ((w_dim,), (1, w_dim), (self.num_ws, w_dim)):
            raise ValueError(f"an edit direction must have shape [{w_dim}], [1, {w_dim}] or [{self.num_ws}, "
                             f"{w_dim}], got {list(direction.shape)}")
        if not torch.isfinite(direction).all():
            raise ValueError("the edit direction contains NaN or infinite values")
        if isinstance(strength, torch.Tensor) and strength.numel() == 1:
            strength = strength.item()
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
            shown = strength if isinstance(strength, (int, float)) else type(strength).__name__
            raise ValueError(f"strength must be a finite number, got {shown}")
        if batch_size is not None:
            _check_batch_size(batch_size)
        direction = direction.reshape(-1, w_dim).expand(self.num_ws, w_dim)
        idx = self._layer_index(layers)
        ws = result.ws.clone()
        ws[:, idx] += strength * direction[idx]
        step = float((strength * direction[idx]).abs().max())
        if not math.isfinite(step) or step > EDIT_STEP_LIMIT:
            raise ValueError(f"the edit moves w by up to {step:.3g} (strength x direction), far outside the latent "
                             f"space (limit {EDIT_STEP_LIMIT:g}); check the direction's scale and the strength")
        image = self.render(ws, result.deltas, batch_size)
        return InversionResult(w=ws[:, 0], ws=ws, deltas=result.deltas, image=image, layer_codes=result.layer_codes)

    @torch.inference_mode()
    def interpolate(self, a: InversionResult, b: InversionResult, steps: int = 8,
                    batch_size: Optional[int] = 8) -> InversionResult:
        """``steps`` frames from ``a`` (t=0) to ``b`` (t=1): both ``ws`` and every Δθ are lerped."""
        if len(a) != 1 or len(b) != 1:
            raise ValueError(f"interpolate takes two single inversions, got batches of {len(a)} and {len(b)}")
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}")
        if set(a.deltas) != set(b.deltas):
            raise ValueError("the two inversions have residuals for different layers")
        t = torch.linspace(0, 1, steps, device=a.ws.device)
        lerp = lambda x, y: x + (y - x) * t.view(-1, *([1] * (x.ndim - 1)))  # noqa: E731  [steps, ...]
        ws = lerp(a.ws, b.ws)
        deltas = lerp_residuals(a.deltas, b.deltas, t)  # factored residuals stay factored
        codes = None  # Δθ is affine in the per-layer code, so lerping the codes gives the lerped Δθ
        if a.layer_codes is not None and b.layer_codes is not None and set(a.layer_codes) == set(b.layer_codes):
            codes = {k: lerp(a.layer_codes[k], b.layer_codes[k]) for k in a.layer_codes}
        image = self.render(ws, deltas, batch_size)
        return InversionResult(w=lerp(a.w, b.w), ws=ws, deltas=deltas, image=image, layer_codes=codes)

    def parameter_counts(self) -> dict[str, int]:
        """Elements per part (parameters and buffers), as the official manifests count them."""
        count = lambda m: sum(t.numel() for t in m.state_dict().values())  # noqa: E731
        counts = {"w_encoder": count(self.w_encoder), "w_bar_encoder": count(self.w_bar_encoder),
                  "hypernet": count(self.hypernet), "generator": count(self.generator)}
        if self.refiners:
            counts["refiners"] = count(self.refiners)
        return counts
