"""``train gan-teacher``: a StyleGAN2 taught by a renderer: each (z, image) pair is a target for G(z).

Adversarial training alone takes far more images than a two-core CPU can show a generator before small
features (eyes, mouths, glasses at 64 px) appear. When the data come from a renderer whose parameters are
a fixed function of a Gaussian vector (:func:`~hyperinverter.portraits.attributes_from_latent`), the
generator can instead be *told* what to draw for each ``z``: a reconstruction loss between ``G(z)`` and
the render of ``z`` gives a gradient to every pixel of every sample. The adversarial term of ``train gan``
can be added on top (``adv > 0``) to sharpen what the reconstruction leaves blurred (detail placed by a
hash of ``z`` that no smooth network can follow). The result is a standard StyleGAN2: mapping network,
W space, w_avg, noise inputs; only the way it was trained differs.

``attr_probe > 0`` adds a linear read-out of the render's attributes (its ``labels.csv`` row, standardised)
from ``w = mapping(z)``. Told only through the synthesis, the mapping network takes long to sort ``z`` into
pose, shape and colours, and the synthesis meanwhile draws the average of what it cannot tell apart (a
blurred face). Told directly, the mapping network has every attribute in W within a few hundred steps
(``attr_probe_warmup`` runs those before any synthesis), and each one is then a linear direction in W, which
is what InterFaceGAN editing assumes. The read-out is trainer state (saved in checkpoints), not part of the
generator.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.pairs import LatentPairsDataset
from ..losses import gradient_loss, l1_loss
from ..losses.pixel import box_crop
from .config import GanTeacherTrainConfig, scheduled_lr
from .gan import GanTrainer
from .trainer import TrainingError, log


# The box every portrait's eyes, brows, glasses and mouth fall in, as fractions of the image (rows, columns):
# the renderer's head frame (centre 0.5, 0.44; half-height 0.235 S; half-width up to ~0.22 S) less the hair,
# with room for the largest yaw and tilt.
FACE_BOX = ((0.26, 0.70), (0.27, 0.73))
# The box the mouth falls in with the ``aligned`` framing, where it stays in place: every pixel where the
# renders of smile -1 and +1 differ by more than a tenth of the largest mean difference (60 portraits, 64 px,
# rows 42-49, columns 25-38), widened by a pixel or two. The mouth is a few pixels high, so under a loss over
# the whole image it weighs little and the generator draws it faintly.
MOUTH_BOX = ((0.64, 0.80), (0.37, 0.62))


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """The :data:`FACE_BOX` of ``[B, C, S, S]`` images."""
    return box_crop(images, FACE_BOX)


def _load_init(name_or_path: str):
    """The generator of a HyperInverter model (folder or shipped name), or any generator file / folder."""
    from ..inverter import HyperInverter
    from ..pretrained import resolve
    from ..stylegan2.formats import load_generator

    path = resolve(name_or_path)
    config = path / "config.json"
    if config.is_file() and '"class": "HyperInverter"' in config.read_text():  # a whole HyperInverter model
        return HyperInverter.from_pretrained(path).generator
    return load_generator(path)


class GanTeacherTrainer(GanTrainer):
    kind = "gan-teacher"
    config: GanTeacherTrainConfig

    def build(self) -> None:
        super().build()
        if self.config.init:  # a warm start (a resume, when there is a checkpoint, overrides it)
            src = _load_init(self.config.init)
            if dataclasses.asdict(src.config) != dataclasses.asdict(self.G.config):
                raise TrainingError(f"{self.config.init}: a generator of another architecture than this run's "
                                    f"(init needs the same generator config)")
            state = {k: v.float() for k, v in src.state_dict().items()}
            for net in (self.G, self.G_ema):
                net.load_state_dict(state)
            self.broadcast_parameters(self.G, self.G_ema)

        self.probe = None  # the attribute read-out, built with the data (its width is the labels')

    def modules(self):
        return {**super().modules(), **({"probe": self.probe} if self.probe is not None else {})}

    def make_dataset(self) -> LatentPairsDataset:
        cfg = self.config
        ds = LatentPairsDataset(cfg.data.train, self.resolution, check=cfg.data.check,
                                with_attributes=cfg.attr_probe > 0 or cfg.attr_probe_warmup > 0)
        if ds.z_dim != self.G.z_dim:  # the portrait is a function of the whole (normalised) z
            raise TrainingError(f"{cfg.data.train}: latents have {ds.z_dim} entries, the generator's z_dim is "
                                f"{self.G.z_dim}")
        if ds.attributes is not None:  # built before any resume, which restores the read-out and its Adam state
            # Standardised targets; constant columns (an attribute the data never varies) are left at zero.
            self.attr_mean = ds.attributes.mean(0).to(self.device)
            self.attr_std = ds.attributes.std(0).clamp_min(1e-6).to(self.device)
            self.probe = nn.Linear(self.G.w_dim, ds.attributes.shape[1]).to(self.device)
            self.broadcast_parameters(self.probe)
            self.g_opt.add_param_group({"params": list(self.probe.parameters())})
        return ds

    def probe_loss(self, w: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the linear read-out of standardised attributes from ``w`` ``[B, w_dim]``."""
        return F.mse_loss(self.probe(w), (attrs - self.attr_mean) / self.attr_std)

    def pixel_loss(self, fake: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The weighted reconstruction loss of ``fake`` against ``target`` (``recon_l1``, ``recon_grad``,
        ``recon_mse``) and its terms for the log (``mse`` only when it is weighted)."""
        cfg = self.config
        terms = {"l1": l1_loss(fake, target), "grad": gradient_loss(fake, target)}
        if cfg.recon_mse > 0:
            terms["mse"] = F.mse_loss(fake, target)
        loss = cfg.recon_l1 * terms["l1"] + cfg.recon_grad * terms["grad"] + cfg.recon_mse * terms.get("mse", 0.0)
        return loss, terms

    def warm_up_mapping(self) -> None:
        """``attr_probe_warmup`` Adam steps of the mapping network and the read-out alone, on batches of 256
        of the pairs' (z, attributes) (same draws in every process), then G_ema = G. After a warm start
        (``init``) only the read-out is fitted: the mapping already holds the attributes, and moving its codes
        would undo part of what the synthesis had learnt."""
        ds = self.dataset
        params = ([] if self.config.init else list(self.G.mapping.parameters())) + list(self.probe.parameters())
        opt = torch.optim.Adam(params, lr=self.config.g_lr, betas=tuple(self.config.betas))
        gen = torch.Generator().manual_seed(self.run_cfg.seed + 2)
        for _ in range(self.config.attr_probe_warmup):
            idx = torch.randint(len(ds), [256], generator=gen)
            z, attrs = ds.latents[idx].to(self.device), ds.attributes[idx].to(self.device)
            opt.zero_grad(set_to_none=True)
            loss = self.probe_loss(self.G.mapping(z, update_w_avg=True)[:, 0], attrs)
            loss.backward()
            self.sync_gradients(params)
            opt.step()
        self.G_ema.load_state_dict(self.G.state_dict())
        if self.env.is_main:
            log.info("mapping warm-up: %d steps, read-out loss %.4f", self.config.attr_probe_warmup,
                     float(loss.detach()))  # one host sync, once per run

    def apply_lr_schedule(self) -> None:
        lr = scheduled_lr(self.config.g_lr, self.config.g_lr_schedule, self.step)
        for group in self.g_opt.param_groups:
            group["lr"] = lr

    def adversarial_on(self) -> bool:
        return self.config.adv > 0 and self.step >= self.config.adv_start_step

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        real, z, *rest = batch
        attrs = rest[0] if rest else None
        if self.step == 0 and cfg.attr_probe_warmup > 0:  # a fresh run (a resumed one starts past step 0)
            self.warm_up_mapping()
        n = self.run_cfg.grad_accum
        if real.shape[0] % n:
            raise TrainingError(f"the per-process batch {real.shape[0]} is not divisible by grad_accum {n}")
        adv = self.adversarial_on()
        self.D.requires_grad_(False)
        self.g_opt.zero_grad(set_to_none=True)
        logs: dict = {}
        fakes: list = []  # the pairs' G(z), for the discriminator (adv_on_pairs)
        attr_parts = attrs.chunk(n) if attrs is not None else [None] * n
        for part, zp, ap in zip(real.chunk(n), z.chunk(n), attr_parts):
            with self.autocast():
                ws = self.G.mapping(zp, update_w_avg=True)
                fake = self.G.synthesis(ws, noise_mode="const")
                fake32 = fake.float()  # the pixel losses in float32 (a no-op without autocast)
                loss, terms = self.pixel_loss(fake32, part)
                if cfg.attr_probe > 0:
                    terms["probe"] = self.probe_loss(ws[:, 0].float(), ap)
                    loss = loss + cfg.attr_probe * terms["probe"]
                if cfg.recon_face > 0:
                    terms["face"] = self.pixel_loss(face_crop(fake32), face_crop(part))[0]
                    loss = loss + cfg.recon_face * terms["face"]
                if cfg.recon_mouth > 0:
                    terms["mouth"] = self.pixel_loss(box_crop(fake32, MOUTH_BOX), box_crop(part, MOUTH_BOX))[0]
                    loss = loss + cfg.recon_mouth * terms["mouth"]
                if adv:
                    if cfg.adv_on_pairs:
                        rand = fake
                        fakes.append(fake.detach())
                    else:
                        rand = self.G.synthesis(self._ws(part.shape[0]), noise_mode="random")
                    terms["g_adv"] = F.softplus(-self.D(rand)).mean()
                    loss = loss + cfg.adv * terms["g_adv"]
            self.backward(loss / n)
            for k, v in terms.items():  # kept on the device: the loop pulls them every run.log_every steps
                logs[k] = logs.get(k, 0.0) + v.detach() / n
        self.optimizer_step(self.g_opt, list(self.G.parameters()) +
                            (list(self.probe.parameters()) if self.probe is not None else []))
        self.D.requires_grad_(True)
        if adv:
            logs.update(self.discriminator_step(real, torch.cat(fakes) if fakes else None))
        self.update_ema(real.shape[0])
        return logs

    @torch.no_grad()
    def sample_images(self, images: torch.Tensor) -> torch.Tensor:
        """Rows: eight training pairs' images, then G_ema drawing the same z."""
        real, z = zip(*(self.dataset[i][:2] for i in range(8)))
        real, z = torch.stack(real).to(self.device), torch.stack(z).to(self.device)
        return torch.cat([real, self.G_ema(z, noise_mode="const")])
