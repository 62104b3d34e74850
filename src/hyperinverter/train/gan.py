"""``train gan``: StyleGAN2 for a new domain (non-saturating loss, lazy R1, EMA, path length, mixing)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from ..losses import path_length_penalty, r1_penalty
from ..stylegan2 import Discriminator, Generator
from .config import GanTrainConfig
from .trainer import Trainer


def _adam(params, lr: float, betas, every: int) -> torch.optim.Adam:
    # Lazy regularisation: the regulariser runs every `every` steps, so lr and betas are rescaled (StyleGAN2).
    ratio = every / (every + 1) if every > 0 else 1.0  # every=0: no regulariser, plain Adam
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=1e-8)


class GanTrainer(Trainer):
    kind = "gan"
    config: GanTrainConfig

    def build(self) -> None:
        cfg = self.config
        g_cfg = dict(cfg.generator)
        self.resolution = int(g_cfg.setdefault("img_resolution", 64))
        self.G = Generator(**g_cfg).to(self.device).train()
        d_cfg = {"img_resolution": self.resolution, **cfg.discriminator}
        self.D = Discriminator(**d_cfg).to(self.device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.broadcast_parameters(self.G, self.D, self.G_ema)
        pl_every = cfg.pl_every if cfg.pl_weight > 0 else 0
        self.g_opt = _adam(self.G.parameters(), cfg.g_lr, cfg.betas, pl_every)
        self.d_opt = _adam(self.D.parameters(), cfg.d_lr, cfg.betas, cfg.r1_every)
        self.pl_mean = torch.zeros([], device=self.device)
        self.images_seen = 0

    def modules(self):
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema, "g_opt": self.g_opt, "d_opt": self.d_opt,
                "extra": _Extra(self)}

    def architecture(self) -> dict:
        return {"generator": dataclasses.asdict(self.G.config), "discriminator": dataclasses.asdict(self.D.config)}

    def _ws(self, n: int) -> torch.Tensor:
        z = self.global_randn([n, self.G.z_dim], self.noise_gen)
        ws = self.G.mapping(z, update_w_avg=True)
        # Every process draws the same decision and cutoff (a shared generator), as one process would.
        if self.config.style_mixing > 0 and float(torch.rand([], generator=self.noise_gen)) < self.config.style_mixing:
            cutoff = int(torch.randint(1, self.G.num_ws, [], generator=self.noise_gen))
            z2 = self.global_randn([n, self.G.z_dim], self.noise_gen)
            ws = torch.cat([ws[:, :cutoff], self.G.mapping(z2, update_w_avg=False)[:, cutoff:]], dim=1)
        return ws

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        step = self.step
        logs = {}
        # Generator: non-saturating loss.
        self.D.requires_grad_(False)
        self.g_opt.zero_grad(set_to_none=True)
        total = 0.0
        for part in self.micro_batches(real):
            with self.autocast():
                fake = self.G.synthesis(self._ws(part.shape[0]), noise_mode="random")
                loss = F.softplus(-self.D(fake)).mean() / self.run_cfg.grad_accum
            self.backward(loss)
            total = total + loss.detach()  # on the device: the loop pulls the logs every run.log_every steps
        logs["g_loss"] = total
        if cfg.pl_weight > 0 and step % cfg.pl_every == 0:
            n = max(1, real.shape[0] // 2)
            ws = self._ws(n)
            fake = self.G.synthesis(ws, noise_mode="random")
            penalty, self.pl_mean = path_length_penalty(fake, ws, self.pl_mean)
            self.backward(penalty * cfg.pl_weight * cfg.pl_every)
            logs["pl"] = penalty.detach()
        # Gradients averaged by one flat all_reduce (NVlabs-style) rather than DDP: the path-length and R1 double
        # backward, and D called by both steps with gradients on and off (Trainer.sync_gradients explains).
        self.optimizer_step(self.g_opt, self.G.parameters())
        self.D.requires_grad_(True)

        logs.update(self.discriminator_step(real))
        self.update_ema(real.shape[0])
        return logs

    def discriminator_step(self, real: torch.Tensor, fakes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One discriminator step: logistic loss on ``real`` and ``fakes`` (default: fresh ones), lazy R1."""
        cfg = self.config
        logs = {}
        self.d_opt.zero_grad(set_to_none=True)
        total, r1_total = 0.0, 0.0
        do_r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
        fake_parts = iter(self.micro_batches(fakes.detach())) if fakes is not None else None
        for part in self.micro_batches(real):
            if fake_parts is not None:
                fake = next(fake_parts)
            else:
                with torch.no_grad():
                    fake = self.G.synthesis(self._ws(part.shape[0]), noise_mode="random")
            part = part.detach().requires_grad_(do_r1)
            with self.autocast():
                real_logits = self.D(part)
                loss = (F.softplus(self.D(fake)).mean() + F.softplus(-real_logits).mean())
            if do_r1:
                r1 = r1_penalty(real_logits, part)
                loss = loss + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
                r1_total = r1_total + r1.detach() / self.run_cfg.grad_accum
            self.backward(loss / self.run_cfg.grad_accum)
            total = total + loss.detach() / self.run_cfg.grad_accum
        logs["d_loss"] = total
        if do_r1:
            logs["r1"] = r1_total
        self.optimizer_step(self.d_opt, self.D.parameters())
        return logs

    @torch.no_grad()
    def update_ema(self, rank_batch: int) -> None:
        """Move G_ema towards G (half-life in images, ramped up at the start)."""
        cfg = self.config
        batch = rank_batch * self.env.world_size
        self.images_seen += batch
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.images_seen * cfg.ema_rampup)
        beta = 0.5 ** (batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
            b_ema.copy_(b)

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor) -> torch.Tensor:
        z = torch.randn([8, self.G.z_dim], generator=torch.Generator().manual_seed(0)).to(self.device)
        return self.G_ema(z, noise_mode="const")

    def export(self, folder: Path) -> None:
        self.G_ema.save_pretrained(folder / "generator")
        self.D.save_pretrained(folder / "discriminator")


class _Extra:
    """Small trainer state that lives outside the networks (path-length mean, images seen)."""

    def __init__(self, trainer: GanTrainer):
        self.t = trainer

    def state_dict(self) -> dict:
        return {"pl_mean": self.t.pl_mean.detach().cpu(), "images_seen": self.t.images_seen}

    def load_state_dict(self, state: dict) -> None:
        self.t.pl_mean = state["pl_mean"].to(self.t.device)
        self.t.images_seen = int(state["images_seen"])
