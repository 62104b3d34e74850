"""``train hypernet`` (phase II): E2 + fusion + hypernetworks; E1 and the generator frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import WEncoder
from ..inverter import HyperInverter
from ..losses import r1_penalty
from ..stylegan2.formats import load_discriminator, load_generator
from .config import HypernetTrainConfig, scheduled_lr
from .recon import ReconstructionLoss
from .trainer import Trainer, TrainingError


class _TrainablePath(nn.Module):
    """E2 and the hypernetworks as one module whose forward is the whole inversion (``HyperInverter.forward``).

    This is what DDP wraps: its parameters and buffers are exactly the trained ones (E2's BatchNorm statistics
    among them), while E1 and the generator, frozen and loaded from the same files on every process, stay
    outside (no per-forward broadcast of their buffers). The state_dict keys of the submodules are unchanged.
    With ``train_first_pass=false`` E2 and the first hypernetwork are frozen too (DDP skips parameters without
    gradients).
    """

    def __init__(self, model: HyperInverter):
        super().__init__()
        self.w_bar_encoder = model.w_bar_encoder
        self.hypernet = model.hypernet
        self.refiners = model.refiners
        object.__setattr__(self, "model", model)  # not registered: no second path to the frozen networks

    def forward(self, x: torch.Tensor):
        return self.model(x)


class HypernetTrainer(Trainer):
    kind = "hypernet"
    config: HypernetTrainConfig

    def build(self) -> None:
        cfg = self.config
        G = load_generator(cfg.generator)
        E1 = WEncoder.from_pretrained(cfg.w_encoder)
        if E1.config.w_dim != G.w_dim:
            raise TrainingError(f"{cfg.w_encoder}: the W-encoder outputs w_dim={E1.config.w_dim}, the generator "
                                f"takes {G.w_dim}")
        e2 = {"num_slots": G.num_ws, **cfg.layer_encoder}  # default trunk: IR-SE-50 (LayerWiseEncoderConfig)
        self.model = HyperInverter.from_generator(G, E1.config, e2, hidden_dim=cfg.hidden_dim, targets=cfg.targets,
                                                  encoder_input_size=cfg.encoder_input_size,
                                                  refinement_passes=cfg.refinement_passes)
        self.model.w_encoder.load_state_dict(E1.state_dict())
        if cfg.init:  # a warm start of E2 and the hypernetworks (a resume, when there is a checkpoint, overrides it)
            self._load_init(cfg.init)
        elif not cfg.train_first_pass:
            raise TrainingError("train_first_pass=false keeps E2 and the first hypernetwork as they are: give init= "
                                "(the trained model to add refinement passes to)")
        self.model.w_encoder.requires_grad_(False)
        if not cfg.train_first_pass:
            self.model.w_bar_encoder.requires_grad_(False)
            self.model.hypernet.requires_grad_(False)
        self.model.w_bar_encoder = self.sync_batchnorm(self.model.w_bar_encoder)  # multi-GPU: global batch stats
        self.model.to(self.device)
        self._train_mode()
        self.resolution = self.model.resolution
        first = [p for m in (self.model.w_bar_encoder, self.model.hypernet) for p in m.parameters() if p.requires_grad]
        refiners = [p for p in self.model.refiners.parameters() if p.requires_grad]
        self.trainable = first + refiners
        # Training forward passes go through `train_path` (DDP in a multi-process run: rank 0's E2 and hypernetwork
        # weights broadcast now, gradients averaged in buckets during backward); E1 and G come from files.
        self.train_path = self.data_parallel(_TrainablePath(self.model))
        # one group per rate: E2 with the first hypernetwork (first_pass_lr_scale when refinement passes train
        # with them), then the refinement passes; the scales stay out of the optimiser state (a resume applies
        # the config's)
        scale = cfg.first_pass_lr_scale if refiners else 1.0
        groups = [(ps, sc) for ps, sc in ((first, scale), (refiners, 1.0)) if ps]
        self._lr_scales = [sc for _, sc in groups]
        self.opt = torch.optim.Adam([{"params": ps} for ps, _ in groups], lr=cfg.lr)
        self.loss = ReconstructionLoss(cfg.losses).to(self.device)
        self.D = None
        if cfg.losses.adv > 0:
            self.D = load_discriminator(cfg.discriminator, device=self.device).train()
            if self.D.img_resolution != self.resolution:
                raise TrainingError(f"{cfg.discriminator}: a {self.D.img_resolution}px discriminator for a "
                                    f"{self.resolution}px generator")
            # The discriminator keeps the GAN trainers' flat all-reduce (Trainer.sync_gradients says why: R1's double
            # backward, and calls with gradients off in the generator step); it is small next to E2 + hypernetworks.
            self.broadcast_parameters(self.D)
            self.d_opt = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr)

    def _load_init(self, path: str) -> None:
        """E2 and the hypernetworks of the model at ``path``; refinement passes it lacks start as copies of its
        first hypernetwork with a zero output factor (their residual is zero: the model starts as ``path``'s)."""
        src = HyperInverter.from_pretrained(path)
        if len(src.refiners) > len(self.model.refiners):
            raise TrainingError(f"{path}: it has {len(src.refiners)} refinement pass(es), this run "
                                f"{len(self.model.refiners)} (refinement_passes=)")
        pairs = [("w_bar_encoder", self.model.w_bar_encoder, src.w_bar_encoder),
                 ("hypernet", self.model.hypernet, src.hypernet)]
        pairs += [(f"refiners.{k}", self.model.refiners[k], src.refiners[k] if k < len(src.refiners) else None)
                  for k in range(len(self.model.refiners))]
        for name, mine, theirs in pairs:
            state = (theirs if theirs is not None else src.hypernet).state_dict()
            if name == "w_bar_encoder":
                state = _widen_stem(state, mine)
            if {k: v.shape for k, v in mine.state_dict().items()} != {k: v.shape for k, v in state.items()}:
                raise TrainingError(f"{path}: its {name} has another architecture than this run's "
                                    f"(init needs the same layer_encoder, hidden_dim and targets; only E2's "
                                    f"in_channels may go from 3 to 6)")
            state = {k: v.float() for k, v in state.items()}
            if theirs is None:  # a new refinement pass: zero residual at the start
                state = {k: (torch.zeros_like(v) if k.endswith((".w2", ".b2")) else v) for k, v in state.items()}
            mine.load_state_dict(state)

    def apply_lr_schedule(self) -> None:
        lr = scheduled_lr(self.config.lr, self.config.lr_schedule, self.step)
        for group, scale in zip(self.opt.param_groups, self._lr_scales):
            group["lr"] = lr * scale

    def _train_mode(self) -> None:
        self.model.train()
        self.model.w_encoder.eval()  # frozen E1: BatchNorm keeps its running statistics
        if not self.config.train_first_pass:  # frozen E2 and first pass: running statistics, the eval paths
            self.model.w_bar_encoder.eval()
            self.model.hypernet.eval()
        elif self.config.e2_batchnorm == "running":  # E2 learns, normalising with its running statistics
            self.model.w_bar_encoder.eval()

    def modules(self):
        mods = {"w_bar_encoder": self.model.w_bar_encoder, "hypernet": self.model.hypernet, "opt": self.opt}
        if len(self.model.refiners):
            mods["refiners"] = self.model.refiners
        if self.D is not None:
            mods.update({"D": self.D, "d_opt": self.d_opt})
        return mods

    def architecture(self) -> dict:
        return {"model": dataclasses.asdict(self.model.config), "adversarial": self.D is not None}

    @property
    def adversarial_on(self) -> bool:
        return self.D is not None and self.step >= self.config.losses.adv_start_step

    def scheduled_batch_size(self) -> int:
        if self.adversarial_on and self.config.batch_size_with_adv:
            return self.config.batch_size_with_adv
        return self.run_cfg.batch_size

    def on_step_start(self) -> None:
        if self.adversarial_on and self.config.batch_size_with_adv:
            self.set_batch_size(self.config.batch_size_with_adv)

    def counts_for_best(self) -> bool:
        start = self.config.losses.adv_start_step
        return not (self.D is not None and start <= self.step < start + self.config.best_excludes_after_adv)

    def train_step(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step; the scalars stay on the device (no host sync: the loop pulls them every log_every steps)."""
        cfg, accum = self.config.losses, self.run_cfg.grad_accum
        adv = self.adversarial_on
        logs: dict[str, torch.Tensor] = {}

        def add(key: str, value: torch.Tensor) -> None:
            logs[key] = logs[key] + value.detach() / accum if key in logs else value.detach() / accum

        self.opt.zero_grad(set_to_none=True)
        fakes = []
        if self.D is not None:
            self.D.requires_grad_(False)
        parts_of_batch = self.micro_batches(images)
        for i, part in enumerate(parts_of_batch):
            # Forward and backward inside grad_sync: DDP averages the gradients during the last micro-batch's backward.
            with self.grad_sync(self.train_path, last=i == len(parts_of_batch) - 1):
                with self.autocast():
                    result = self.train_path(part)
                    loss, parts = self.loss(result.image.float(), part)
                    if adv:
                        g_adv = F.softplus(-self.D(result.image)).mean()
                        loss = loss + cfg.adv * g_adv
                        parts["g_adv"] = g_adv
                self.backward(loss / accum)
            fakes.append(result.image.detach())
            for k, v in parts.items():
                add(k, v)
        self.optimizer_step(self.opt)  # gradients already averaged over processes (DDP)

        if adv:  # discriminator step on real images and the detached reconstructions, lazy R1
            self.D.requires_grad_(True)
            self.d_opt.zero_grad(set_to_none=True)
            do_r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
            for part, fake in zip(parts_of_batch, fakes):
                real = part.detach().requires_grad_(do_r1)
                real_logits = self.D(real)
                d_loss = F.softplus(self.D(fake)).mean() + F.softplus(-real_logits).mean()
                if do_r1:
                    r1 = r1_penalty(real_logits, real)
                    d_loss = d_loss + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
                    add("r1", r1)
                self.backward(d_loss / accum)
                add("d_loss", d_loss)
            self.optimizer_step(self.d_opt, self.D.parameters())  # flat all-reduce (see build)
        return logs

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> dict[str, float]:
        self.model.eval()
        try:
            r = self.model.invert(images)
            loss, parts = self.loss(r.image, images)
            phase1, _ = self.loss(r.image_w, images)
        finally:
            self._train_mode()
        return {"val_loss": loss, "val_phase1_loss": phase1,  # device tensors: mean_across pulls them at once
                **{f"val_{k}": v for k, v in parts.items() if k != "loss"}}

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        try:
            r = self.model.invert(images)
        finally:
            self._train_mode()
        return torch.cat([images, r.image_w.clamp(-1, 1), r.image.clamp(-1, 1)])

    def export(self, folder: Path) -> None:
        self.model.save_pretrained(folder / "model")


def _widen_stem(state: dict, e2) -> dict:
    """``state`` of a 3-channel E2 made loadable into the 6-channel ``e2`` (HyperInverterConfig: image and the
    input's difference from it): the difference channels' stem weights start at zero, so the model computes what
    the 3-channel one did and learns to use the difference. Other states are returned as they are."""
    key = e2.stem_conv_name
    weight = state.get(key)
    if weight is None or e2.backbone_config.in_channels != 6 or weight.shape[1] != 3:
        return state
    return {**state, key: torch.cat([weight, torch.zeros_like(weight)], dim=1)}
