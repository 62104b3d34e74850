"""``train w-encoder`` (phase I): E1 maps an image to one w; the generator is frozen."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.pairs import LatentPairsDataset, read_pair_labels
from ..encoders import WEncoder, WEncoderConfig
from ..stylegan2.formats import load_generator
from .config import WEncoderTrainConfig
from .recon import ReconstructionLoss
from .trainer import Trainer, TrainingError

log = logging.getLogger("hyperinverter")


def attribute_readout(w: torch.Tensor, attrs: torch.Tensor, ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge least squares of standardised attributes from codes: ``w [N, D]``, ``attrs [N, A]`` ->
    (read-out ``[D, A]`` float32, R^2 of each varying attribute). Applied to a code *difference* it gives the
    attribute difference in units of each attribute's standard deviation; columns the data never varies read
    out as zero. ``ridge`` is relative to N (codes have entries of unit scale)."""
    assert w.ndim == 2 and attrs.ndim == 2 and len(w) == len(attrs), (w.shape, attrs.shape)
    w, attrs = w.double(), attrs.to(w.device, torch.float64)
    w = w - w.mean(0)
    std = attrs.std(0)
    varying = std > 1e-6
    y = torch.where(varying, (attrs - attrs.mean(0)) / std.clamp_min(1e-6), torch.zeros_like(attrs))
    gram = w.T @ w + ridge * len(w) * torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
    readout = torch.linalg.solve(gram, w.T @ y)
    r2 = 1 - (w @ readout - y).square().sum(0)[varying] / y.square().sum(0)[varying]
    return readout.float(), r2.float()


class WEncoderTrainer(Trainer):
    kind = "w-encoder"
    config: WEncoderTrainConfig

    def build(self) -> None:
        cfg = self.config
        self.G = load_generator(cfg.generator, device=self.device).requires_grad_(False).eval()
        self.resolution = self.G.img_resolution
        enc = {**dataclasses.asdict(WEncoderConfig()), **cfg.encoder, "w_dim": self.G.w_dim}
        self.E = WEncoder(**enc)
        if cfg.init:  # a warm start (a resume, when there is a checkpoint, overrides it)
            src = WEncoder.from_pretrained(cfg.init)
            if dataclasses.asdict(src.config) != dataclasses.asdict(self.E.config):
                raise TrainingError(f"{cfg.init}: a W-encoder of another architecture than this run's "
                                    f"(init needs the same encoder config)")
            self.E.load_state_dict(src.state_dict())
        self.E = self.sync_batchnorm(self.E).to(self.device).train()
        # The training forward passes go through E_train (DDP over E in a multi-process run: it broadcasts rank 0's
        # weights now and averages gradients during backward); checkpoints, exports and evaluation use E itself.
        self.E_train = self.data_parallel(self.E)
        self.opt = torch.optim.Adam(self.E.parameters(), lr=cfg.lr)
        self.loss = ReconstructionLoss(cfg.losses).to(self.device)

    def modules(self):
        return {"E": self.E, "opt": self.opt}

    def architecture(self) -> dict:
        return {"generator": dataclasses.asdict(self.G.config), "encoder": dataclasses.asdict(self.E.config),
                "encoder_input_size": self.config.encoder_input_size}

    def encode(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        """w of images ``x``; ``training``: through :attr:`E_train` (DDP), for a training step."""
        size = self.config.encoder_input_size
        x_in = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if x.shape[-1] != size else x
        return (self.E_train if training else self.E)(x_in) + self.G.w_avg  # [B, w_dim]

    def invert(self, x: torch.Tensor, training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.encode(x, training)
        ws = w.unsqueeze(1).repeat(1, self.G.num_ws, 1)
        return w, self.G.synthesis(ws, noise_mode="const")

    def make_dataset(self):
        """With ``w_loss > 0``: (image, z) pairs, so that each image's true code ``mapping(z)`` is known."""
        if self.config.w_loss <= 0:
            return super().make_dataset()
        if self.config.data.hflip:
            raise TrainingError("w_loss > 0 needs data.hflip=false: a flipped image is not the picture of its z")
        ds = LatentPairsDataset(self.config.data.train, self.resolution, check=self.config.data.check)
        if ds.z_dim != self.G.z_dim:  # the portrait is a function of the whole (normalised) z
            raise TrainingError(f"{self.config.data.train}: latents have {ds.z_dim} entries, the generator's z_dim "
                                f"is {self.G.z_dim}")
        if self.config.w_attr_loss > 0:  # the labels serve the read-out only: the batches stay (image, z)
            attrs = torch.from_numpy(read_pair_labels(self.config.data.train, ds.images.paths))
            self.readout = self.fit_attribute_readout(ds.latents, attrs)
        return ds

    @torch.no_grad()
    def fit_attribute_readout(self, z: torch.Tensor, attrs: torch.Tensor, rows: int = 8192) -> torch.Tensor:
        """:func:`attribute_readout` of the codes ``mapping(z)`` of the first ``rows`` pairs, once when the run
        starts. The least squares runs on the CPU in float64 (small, and the same in every process), so the
        logged R^2 needs no device sync; the read-out is then moved to the device."""
        z = z[:rows].to(self.device)
        w = torch.cat([self.G.mapping(part)[:, 0] for part in z.split(1024)]).cpu()
        readout, r2 = attribute_readout(w, attrs[:rows])
        log.info("attribute read-out from W: %d attributes, median R^2 %.3f on %d codes", len(r2),
                 float(r2.median()), len(w))
        return readout.to(self.device)

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        self.opt.zero_grad(set_to_none=True)
        logs: dict[str, torch.Tensor] = {}
        if isinstance(batch, tuple):  # (images, z): the true codes are known
            images, z = batch
            with torch.no_grad():
                w_true = self.G.mapping(z)[:, 0]
        else:
            images, w_true = batch, None
        n = self.run_cfg.grad_accum
        parts_of_batch = self.micro_batches(images)
        for i, part in enumerate(parts_of_batch):
            # Forward and backward inside grad_sync: DDP averages the gradients during the last micro-batch's backward.
            with self.grad_sync(self.E_train, last=i == len(parts_of_batch) - 1):
                with self.autocast():
                    if self.loss.active or w_true is None:
                        w, out = self.invert(part, training=True)
                        loss, parts = self.loss(out.float(), part)
                    else:  # codes only (w_loss alone): no synthesis
                        w, parts = self.encode(part, training=True), {}
                        loss = w.new_zeros([], dtype=torch.float32)
                    if w_true is not None:
                        # Mean squared error per w entry: w_dim-independent, comparable to the image terms.
                        code_err = w.float() - w_true.chunk(n)[i]  # [B, w_dim]
                        w_err = code_err.square().mean()
                        loss = loss + self.config.w_loss * w_err
                        parts["w"] = w_err.detach()
                        if self.config.w_attr_loss > 0:
                            attr_err = (code_err @ self.readout).square().mean()
                            loss = loss + self.config.w_attr_loss * attr_err
                            parts["w_attr"] = attr_err.detach()
                        parts["loss"] = loss.detach()
                    if self.config.losses.w_reg > 0:
                        reg = (w - self.G.w_avg).square().sum(dim=1).mean()
                        loss = loss + self.config.losses.w_reg * reg
                        parts["w_reg"] = reg.detach()
                self.backward(loss / n)
            for k, v in parts.items():  # on the device: pulled to the host every run.log_every steps
                logs[k] = logs[k] + v / n if k in logs else v / n
        self.optimizer_step(self.opt)  # gradients already averaged over processes (DDP)
        return logs

    @torch.no_grad()
    def validate(self, images: torch.Tensor) -> dict[str, float]:
        self.E.eval()
        try:
            _, out = self.invert(images)
            loss, parts = self.loss(out, images)
        finally:
            self.E.train()
        return {"val_loss": loss, **{f"val_{k}": v for k, v in parts.items() if k != "loss"}}  # pulled by mean_across

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor) -> torch.Tensor:
        self.E.eval()
        try:
            _, out = self.invert(images)
        finally:
            self.E.train()
        return torch.cat([images, out.clamp(-1, 1)])

    def export(self, folder: Path) -> None:
        self.E.save_pretrained(folder / "w_encoder")
