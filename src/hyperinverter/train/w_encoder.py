"""``train w-encoder`` (phase I): E1 maps an image to one w; the generator is frozen."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..encoders import WEncoder, WEncoderConfig
from ..stylegan2.formats import load_generator
from .config import WEncoderTrainConfig
from .recon import ReconstructionLoss
from .trainer import Trainer


class WEncoderTrainer(Trainer):
    kind = "w-encoder"
    config: WEncoderTrainConfig

    def build(self) -> None:
        cfg = self.config
        self.G = load_generator(cfg.generator, device=self.device).requires_grad_(False).eval()
        self.resolution = self.G.img_resolution
        enc = {**dataclasses.asdict(WEncoderConfig()), **cfg.encoder, "w_dim": self.G.w_dim}
        self.E = WEncoder(**enc).to(self.device).train()
        self.broadcast_parameters(self.E)
        self.opt = torch.optim.Adam(self.E.parameters(), lr=cfg.lr)
        self.loss = ReconstructionLoss(cfg.losses).to(self.device)

    def modules(self):
        return {"E": self.E, "opt": self.opt}

    def architecture(self) -> dict:
        return {"generator": dataclasses.asdict(self.G.config), "encoder": dataclasses.asdict(self.E.config),
                "encoder_input_size": self.config.encoder_input_size}

    def invert(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.encoder_input_size
        x_in = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if x.shape[-1] != size else x
        w = self.E(x_in) + self.G.w_avg  # [B, w_dim]
        ws = w.unsqueeze(1).repeat(1, self.G.num_ws, 1)
        return w, self.G.synthesis(ws, noise_mode="const")

    def train_step(self, images: torch.Tensor) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        for part in self.micro_batches(images):
            with self.autocast():
                w, out = self.invert(part)
                loss, parts = self.loss(out.float(), part)
                if self.config.losses.w_reg > 0:
                    reg = (w - self.G.w_avg).square().sum(dim=1).mean()
                    loss = loss + self.config.losses.w_reg * reg
                    parts["w_reg"] = reg.item()
            self.backward(loss / self.run_cfg.grad_accum)
            for k, v in parts.items():
                logs[k] = logs.get(k, 0.0) + v / self.run_cfg.grad_accum
        self.optimizer_step(self.opt, self.E.parameters())
        return logs

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> dict[str, float]:
        self.E.eval()
        try:
            _, out = self.invert(images)
            loss, parts = self.loss(out, images)
        finally:
            self.E.train()
        return {"val_loss": loss.item(), **{f"val_{k}": v for k, v in parts.items() if k != "loss"}}

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor) -> torch.Tensor:
        self.E.eval()
        try:
            _, out = self.invert(images)
        finally:
            self.E.train()
        return torch.cat([images, out.clamp(-1, 1)])

    def export(self) -> None:
        self.E.save_pretrained(self.out_dir / "w_encoder")
