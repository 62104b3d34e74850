"""Typed training configs: dataclasses, YAML presets, ``key=value`` overrides, validation before anything runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import yaml

from ..errors import HyperInverterError
from ..utils.dataclass_config import dataclass_from_dict


class ConfigError(HyperInverterError, ValueError):
    """A config file or override is malformed, names an unknown field, or fails validation."""


@dataclass
class RunConfig:
    """Where, how long and how a run goes."""

    out_dir: str = "runs/experiment"  # Outputs: checkpoints, resolved config, logs, image grids.
    steps: int = 1000  # Optimiser steps in total.
    batch_size: int = 8  # Global batch (all processes together, before gradient accumulation split).
    grad_accum: int = 1  # Micro-batches per optimiser step (batch_size must divide evenly).
    seed: int = 0  # Seeds weights init, data order, flips and noise.
    deterministic: bool = False  # torch.use_deterministic_algorithms: exact resume / DDP comparisons.
    device: str = "auto"  # auto, cpu, cuda (under torchrun: cuda:<local rank>).
    amp: str = "none"  # Autocast on CUDA: none, bf16 or fp16 (ignored on CPU).
    workers: int = 2  # DataLoader worker processes per training process.
    sync_batchnorm: bool = True  # Multi-GPU runs: E1/E2 BatchNorm statistics over the global batch (SyncBatchNorm);
    #                              false = each GPU normalises over its own images. CPU (gloo) runs always do
    #                              the latter: torch's SyncBatchNorm has no CPU kernel.
    log_every: int = 50  # Steps between scalar logs.
    image_every: int = 500  # Steps between image grids (0 = never).
    val_every: int = 1000  # Steps between validations (0 = never).
    val_images: int = 16  # Images used for validation.
    ckpt_every: int = 1000  # Steps between checkpoints (a checkpoint is also written at the end and on SIGTERM).
    keep_models_every: int = 0  # Steps between kept copies of the exported models, in snapshots/step_N (0 = none):
    #                              e.g. the last checkpoints of a fine-tune, averaged by scripts/average_models.py.
    max_minutes: float = 0.0  # Wall-time budget of this invocation: stop as on SIGTERM (resumable); 0 = none.


@dataclass
class DataConfig:
    """Image folders."""

    train: str = ""  # Folder of training images (searched recursively).
    val: Optional[str] = None  # Folder of validation images (None = the first val_images of train).
    hflip: bool = True  # Random horizontal flips (deterministic per epoch and index).
    check: str = "header"  # How files are checked up front: header, full or none.


@dataclass
class LossConfig:
    """Loss weights (0 = off) and the local weight files of the networks they need (None = off)."""

    l2: float = 1.0
    l1: float = 0.0  # Mean absolute error.
    grad: float = 0.0  # Mean absolute error of neighbour differences (losses.gradient_loss): sharpens edges.
    lpips: float = 0.8
    lpips_net: str = "alex"  # alex or vgg.
    lpips_backbone_path: Optional[str] = None  # torchvision-layout ImageNet backbone file.
    lpips_head_path: Optional[str] = None  # LPIPS linear-head file (v0.1).
    id: float = 0.0  # ArcFace identity loss (faces).
    id_path: Optional[str] = None  # model_ir_se50.pth
    moco: float = 0.0  # MoCo-v2 feature loss (other domains).
    moco_path: Optional[str] = None  # moco_v2_800ep_pretrain.pt
    w_reg: float = 0.0  # Phase I: mean squared distance of w from w_avg.
    adv: float = 0.0  # Phase II: non-saturating adversarial loss from the StyleGAN2 discriminator.
    adv_start_step: int = 0  # Step from which the adversarial term is on.
    r1_gamma: float = 10.0  # R1 weight of the discriminator.
    r1_every: int = 16  # Lazy R1 interval.
    loss_resolution: int = 256  # Images are average-pooled to at most this before the losses (official: 256).
    attr: float = 0.0  # Mean squared difference of an attribute regressor's outputs on the output and the target
    #                    (evaluation.attributes, on its common [0, 1] scale): keeps expression, pose and glasses,
    #                    which are few pixels of the squared error. A perceptual term that needs no download.
    attr_path: Optional[str] = None  # Its folder (`hyperinverter train-attributes` output).
    attr_attributes: Optional[list] = None  # The regressor's attributes the term compares (None = all it predicts);
    #                                         leave out one whose edits the residuals should not resist.
    l2_box: float = 0.0  # Extra squared error, averaged over l2_box_region only: a small region that a mean over the
    #                      whole image weighs by its few pixels (the mouth of aligned faces: a frown is a few pixels).
    l2_box_region: Optional[list] = None  # [[row0, row1], [col0, col1]], fractions of the side (needed with l2_box);
    #                                       aligned 64 px faces' mouth: [[0.64, 0.80], [0.37, 0.62]] (MOUTH_BOX).


@dataclass
class GanTrainConfig:
    """``hyperinverter train gan``: StyleGAN2 on an image folder."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generator: dict = field(default_factory=dict)  # GeneratorConfig fields (img_resolution = data resolution).
    discriminator: dict = field(default_factory=dict)  # DiscriminatorConfig fields (resolution from generator).
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: list = field(default_factory=lambda: [0.0, 0.99])
    r1_gamma: float = 10.0
    r1_every: int = 16  # Lazy R1 (the learning rate and betas are adjusted as in StyleGAN2).
    pl_weight: float = 0.0  # Path-length regularisation weight (2 in config-f; 0 = off).
    pl_every: int = 4
    style_mixing: float = 0.9  # Probability of mixing two latents in a batch.
    ema_kimg: float = 10.0  # Half-life of the EMA generator in thousands of images.
    ema_rampup: Optional[float] = 0.05  # EMA half-life ramp-up as a fraction of images seen (None = off).


@dataclass
class GanTeacherTrainConfig(GanTrainConfig):
    """``hyperinverter train gan-teacher``: StyleGAN2 taught by (z, image) pairs (``data portraits --latents``).

    The generator is trained to draw each pair's image from its ``z`` (a reconstruction loss through the
    mapping and synthesis networks), optionally with the adversarial loss of ``train gan`` on top; the
    result is an ordinary StyleGAN2 (learned mapping, W space, noise inputs). ``data.train`` is a pairs folder.
    """

    recon_l1: float = 1.0  # Weight of the mean absolute error between G(z) and the pair's image.
    recon_grad: float = 1.0  # Weight of the mean absolute error between their horizontal/vertical differences.
    recon_mse: float = 0.0  # Weight of the mean squared error between G(z) and the pair's image. A pixel's share
    #                         of the gradient grows with its error, so the few large ones (a missing eye, mouth or
    #                         frame of glasses) are not outvoted by the many small ones, as they are under L1.
    adv: float = 0.0  # Weight of the non-saturating adversarial loss (0 = no discriminator step).
    adv_on_pairs: bool = True  # The adversarial terms use G(z) of the pairs' z (already drawn for the
    #                            reconstruction: no extra synthesis); False: fresh random z with style mixing.
    recon_face: float = 0.0  # Extra weight of both reconstruction terms inside the face box (FACE_BOX in
    #                          train/gan_teacher.py), where the small features are (eyes, mouth, glasses).
    recon_mouth: float = 0.0  # Extra weight of both reconstruction terms inside the mouth box (MOUTH_BOX in
    #                           train/gan_teacher.py; for pairs rendered with the ``aligned`` framing).
    adv_start_step: int = 0  # Step from which the adversarial term (and the discriminator) train.
    g_lr_schedule: list = field(default_factory=list)  # [[step, lr], ...]: g_lr from each step on (piecewise).
    init: Optional[str] = None  # Generator folder/file to start from (same architecture): continue an earlier
    #                             training across machines, e.g. from the shipped model's generator.
    attr_probe: float = 0.0  # Weight of a linear read-out of each pair's renderer attributes (labels.csv,
    #                          standardised) from w = mapping(z): W then holds every attribute linearly (edit
    #                          directions) and the synthesis gets informative codes from the start.
    attr_probe_warmup: int = 0  # Steps of the mapping network alone on that read-out (batches of 256 pairs' z,
    #                             no synthesis) before the first step of a fresh run; of the read-out alone
    #                             after a warm start (init).


@dataclass
class WEncoderTrainConfig:
    """``hyperinverter train w-encoder`` (phase I): E1 with the generator frozen."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    losses: LossConfig = field(default_factory=lambda: LossConfig(lpips=0.8))
    generator: str = ""  # Generator file or folder (any format load_generator reads).
    encoder: dict = field(default_factory=dict)  # WEncoderConfig fields (w_dim from the generator).
    encoder_input_size: int = 256  # Images are resized to this before E1.
    lr: float = 1e-4
    w_loss: float = 0.0  # With a pairs folder as data.train: weight of ||E1(x) - mapping(z)||^2 / w_dim.
    w_attr_loss: float = 0.0  # With a pairs folder: weight of the code error E1(x) - mapping(z) seen through a
    #                           linear read-out of the renderer's attributes (labels.csv, standardised) from W,
    #                           fitted by least squares on the pairs' codes when the run starts. The plain w_loss
    #                           weighs every w entry alike, so an attribute that spans one direction of W (the
    #                           smile) is a tiny share of it and E1 learns to ignore it; this term weighs each
    #                           attribute alike.
    init: Optional[str] = None  # A trained W-encoder folder (same architecture) to start from, e.g. the one of an
    #                             earlier generator of the domain when the generator was retrained.


@dataclass
class HypernetTrainConfig:
    """``hyperinverter train hypernet`` (phase II): E2 + hypernetworks with E1 and the generator frozen."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    generator: str = ""  # Generator file or folder.
    w_encoder: str = ""  # Trained W-encoder folder (save_pretrained) from phase I.
    discriminator: Optional[str] = None  # Discriminator file for the adversarial term (NVIDIA .pkl D, folder).
    layer_encoder: dict = field(default_factory=dict)  # LayerWiseEncoderConfig fields (num_slots from G).
    hidden_dim: int = 128
    targets: str = "conv"
    encoder_input_size: int = 256
    lr: float = 1e-4
    d_lr: float = 1e-4
    batch_size_with_adv: Optional[int] = 4  # Global batch once the adversarial term is on (official: 8 -> 4).
    best_excludes_after_adv: int = 0  # Steps after the adversarial switch not considered for the best model.
    init: Optional[str] = None  # A HyperInverter model folder (same architecture) whose E2 and hypernetworks to
    #                             start from, e.g. the model of an earlier generator of the domain.
    lr_schedule: list = field(default_factory=list)  # [[step, lr], ...]: lr from each step on (piecewise).
    refinement_passes: int = 0  # Hypernetwork passes after the first (HyperInverterConfig.refinement_passes). A pass
    #                             that init lacks starts as a copy of the first pass's hypernetwork whose output
    #                             factor (w2, b2) is zero, so the model starts as init does.
    train_first_pass: bool = True  # false: E2 and the first pass's hypernetwork stay as init has them (frozen, eval
    #                                mode) and only the refinement passes learn (refiners added to a trained model).
    first_pass_lr_scale: float = 1.0  # Rate of E2 and the first hypernetwork relative to lr (and to lr_schedule's
    #                                   rates) when they train along with refinement passes: fine-tune them gently.
    e2_batchnorm: str = "batch"  # "batch": E2's BatchNorm normalises with each batch's statistics in training
    #                              (official); "running": with its running statistics, as at inference, while its
    #                              weights still learn (a fine-tune on a few images per process).


TRAIN_CONFIGS = {"gan": GanTrainConfig, "gan-teacher": GanTeacherTrainConfig, "w-encoder": WEncoderTrainConfig,
                 "hypernet": HypernetTrainConfig}


# ------------------------------------------------------------------------------------- construction
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"run.steps=500"`` -> (["run", "steps"], 500); values are YAML (numbers, true, null, [1, 2], strings)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. run.steps=500)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return key.strip().split("."), value


def _set(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part!r} is not a section")
        node = child
    node[path[-1]] = value


def load_train_config(kind: str, preset: Optional[Union[str, Path]] = None, overrides: Sequence = ()) -> Any:
    """Resolve a config: defaults <- YAML preset (a path, or the name of a preset shipped in
    ``hyperinverter/configs/``) <- ``key=value`` overrides."""
    if kind not in TRAIN_CONFIGS:
        raise ConfigError(f"unknown training {kind!r}; choose one of {sorted(TRAIN_CONFIGS)}")
    tree: dict = {}
    if preset:
        path = resolve_preset(preset)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        file_kind = loaded.pop("kind", kind)
        loaded.pop("hyperinverter_version", None)  # written next to every run; informational
        if file_kind != kind:
            raise ConfigError(f"{path}: a preset for 'train {file_kind}', not 'train {kind}'")
        tree = loaded
    for text in overrides:
        key, value = parse_override(text)
        _set(tree, key, value)
    # unknown keys and values of the wrong type: a ConfigError naming the field (e.g. "run.steps: expected ...")
    config = dataclass_from_dict(TRAIN_CONFIGS[kind], tree, error=ConfigError)
    validate(config)
    return config


def preset_names() -> list[str]:
    """The names of the YAML presets shipped in the package (``hyperinverter/configs/*.yaml``), sorted."""
    from importlib.resources import files

    folder = files("hyperinverter") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")) if folder.is_dir() else []


def resolve_preset(preset: Union[str, Path]):
    """The YAML file of ``preset``: a path to a file of your own, or the name of a preset shipped in the package
    (``hypernet_faces`` or ``hypernet_faces.yaml``; read with ``importlib.resources``, so it works from an
    installed wheel). Returns a ``Path`` or an ``importlib.resources`` file (both have ``read_text``)."""
    from importlib.resources import files

    path = Path(preset)
    if path.is_file():
        return path
    name = str(preset)
    if path.name == name:  # a bare name, not a path: look among the shipped presets
        candidate = files("hyperinverter") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")
        if candidate.is_file():
            return candidate
    elif path.suffix == ".yaml" and path.stem in preset_names():  # e.g. the old checkout path configs/<name>.yaml
        raise ConfigError(f"{preset}: no such file; the presets ship inside the package now: --config {path.stem}")
    raise ConfigError(f"{preset}: no such file, and not a preset shipped in the package (presets: "
                      f"{', '.join(preset_names()) or 'none'})")


def batch_sizes(config: Any) -> dict[str, int]:
    """Every global batch size a run of ``config`` uses, by the field that sets it: ``run.batch_size``, and
    ``batch_size_with_adv`` for a hypernetwork run whose adversarial term comes on."""
    sizes = {"run.batch_size": config.run.batch_size}
    if isinstance(config, HypernetTrainConfig) and config.losses.adv > 0 and config.batch_size_with_adv:
        sizes["batch_size_with_adv"] = config.batch_size_with_adv
    return sizes


def check_batch_sizes(config: Any, world_size: int) -> None:
    """Refuse a run whose batch sizes do not divide over ``world_size`` processes × ``run.grad_accum``
    micro-batches (each process takes ``batch / world_size`` images a step, in ``grad_accum`` parts).

    The trainer calls this at start-up, before loading anything, with the job's world size (a test can pass
    any). The :class:`ConfigError` names each batch size that does not divide, the numbers, and the fixes:
    multiples that do, and the process counts that suit every batch size of the run.
    """
    accum = config.run.grad_accum
    parts = world_size * accum
    sizes = batch_sizes(config)
    bad = {name: size for name, size in sizes.items() if size % parts}
    if not bad:
        return
    problems = []
    for name, size in bad.items():
        lower = size // parts * parts
        choices = " or ".join(str(v) for v in (lower, lower + parts) if v > 0)
        when = f" (from step {config.losses.adv_start_step}, with the adversarial term)" if name != "run.batch_size" \
            else ""
        problems.append(f"{name}={size}{when} does not divide over {world_size} process(es) × run.grad_accum {accum}"
                        f" = {parts} micro-batches: set {name} to a multiple of {parts} ({choices})")
    fits = [n for n in range(1, max(sizes.values()) + 1) if all(v % (n * accum) == 0 for v in sizes.values())]
    listed = ", ".join(f"{k}={v}" for k, v in sizes.items())
    counts = ", ".join(map(str, fits[:-1])) + (" or " if len(fits) > 1 else "") + str(fits[-1]) if fits else ""
    fix = (f"or run {counts} process(es): the counts that divide every batch size of this run ({listed}) "
           f"with run.grad_accum {accum}" if fits else
           f"no process count divides every batch size of this run ({listed}) with run.grad_accum {accum}: "
           "change run.grad_accum or the batch sizes")
    raise ConfigError("the batch sizes do not split over the processes:\n  - " + "\n  - ".join(problems)
                      + f"\n  {fix}")


def validate(config: Any) -> None:
    """Checks that need no files: positive sizes, known choices, consistent batch sizes."""
    run: RunConfig = config.run
    problems = []
    for name in ("steps", "batch_size", "grad_accum", "log_every", "val_images"):
        if getattr(run, name) < 1:
            problems.append(f"run.{name} must be >= 1")
    for name in ("image_every", "val_every", "ckpt_every", "keep_models_every", "workers", "max_minutes"):
        if getattr(run, name) < 0:
            problems.append(f"run.{name} must be >= 0")
    if run.batch_size % run.grad_accum:
        problems.append(f"run.batch_size ({run.batch_size}) must be a multiple of run.grad_accum ({run.grad_accum})")
    if run.amp not in ("none", "bf16", "fp16"):
        problems.append(f"run.amp must be none, bf16 or fp16, got {run.amp!r}")
    if config.data.check not in ("header", "full", "none"):
        problems.append(f"data.check must be header, full or none, got {config.data.check!r}")
    if not config.data.train:
        problems.append("data.train is required (a folder of images)")
    losses = getattr(config, "losses", None)
    if losses is not None:
        if losses.lpips_net not in ("alex", "vgg"):
            problems.append(f"losses.lpips_net must be alex or vgg, got {losses.lpips_net!r}")
        for name in ("l2", "l1", "grad", "lpips", "id", "moco", "w_reg", "adv", "r1_gamma", "attr", "l2_box"):
            if getattr(losses, name) < 0:
                problems.append(f"losses.{name} must be >= 0")
        if losses.lpips > 0 and losses.lpips_backbone_path and not losses.lpips_head_path:
            problems.append("losses.lpips_backbone_path is set but losses.lpips_head_path is not: LPIPS needs both "
                            "(the backbone and the v0.1 linear heads)")
        if losses.r1_every < 1:
            problems.append("losses.r1_every must be >= 1")
        if losses.l2_box > 0 or losses.l2_box_region is not None:
            from ..losses.pixel import check_box

            try:
                check_box(losses.l2_box_region)
            except ValueError as e:
                problems.append(f"losses.l2_box_region: {e}")
        names = losses.attr_attributes
        if names is not None and (not isinstance(names, list) or not names
                                  or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)):
            problems.append(f"losses.attr_attributes must be a non-empty list of distinct attribute names, got "
                            f"{names!r}")
    if isinstance(config, (WEncoderTrainConfig, HypernetTrainConfig)) and not config.generator:
        problems.append("generator is required (a generator file or folder)")
    if isinstance(config, HypernetTrainConfig):
        if not config.w_encoder:
            problems.append("w_encoder is required (the phase-I W-encoder folder)")
        if config.losses.adv > 0 and not config.discriminator:
            problems.append("losses.adv > 0 needs discriminator (a discriminator file)")
        b = config.batch_size_with_adv
        if b is not None and (b < 1 or b % run.grad_accum):
            problems.append(f"batch_size_with_adv ({b}) must be a positive multiple of run.grad_accum")
    if isinstance(config, GanTrainConfig):
        if config.r1_every < 1 or config.pl_every < 1:
            problems.append("r1_every and pl_every must be >= 1")
        if not 0 <= config.style_mixing <= 1:
            problems.append("style_mixing must be a probability")
    if isinstance(config, GanTeacherTrainConfig):
        for name in ("recon_l1", "recon_grad", "recon_mse", "recon_face", "recon_mouth", "adv"):
            if getattr(config, name) < 0:
                problems.append(f"{name} must be >= 0")
        if config.data.hflip:
            problems.append("data.hflip must be false for gan-teacher: a flipped image is not the picture of its z")
        problems += _schedule_problems("g_lr_schedule", config.g_lr_schedule)
    if isinstance(config, HypernetTrainConfig):
        problems += _schedule_problems("lr_schedule", config.lr_schedule)
        if not config.first_pass_lr_scale > 0:
            problems.append(f"first_pass_lr_scale must be > 0, got {config.first_pass_lr_scale}")
        if config.e2_batchnorm not in ("batch", "running"):
            problems.append(f"e2_batchnorm must be 'batch' or 'running', got {config.e2_batchnorm!r}")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def _schedule_problems(name: str, sched: list) -> list[str]:
    """What is wrong with a ``[[step, lr], ...]`` schedule (nothing: [])."""
    if not isinstance(sched, list) or not all(
            isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], int) and e[0] >= 0
            and isinstance(e[1], (int, float)) and e[1] > 0 for e in sched) \
            or [e[0] for e in sched] != sorted({e[0] for e in sched}):
        return [f"{name} must be [[step, lr], ...] with increasing steps and positive rates, got {sched!r}"]
    return []


def scheduled_lr(base: float, schedule: list, step: int) -> float:
    """The rate at ``step`` of a piecewise-constant ``[[step, lr], ...]`` schedule (``base`` before its first step)."""
    lr = float(base)
    for start, value in schedule:
        if step >= start:
            lr = float(value)
    return lr


def to_yaml(config: Any, kind: str) -> str:
    from .. import __version__

    return yaml.safe_dump({"kind": kind, "hyperinverter_version": __version__, **dataclasses.asdict(config)},
                          sort_keys=False)
