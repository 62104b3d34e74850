"""The training loop shared by the GAN, W-encoder and hypernetwork trainings.

A subclass builds its networks and optimisers (:meth:`build`), does one optimiser step
(:meth:`train_step`), and names what goes into a checkpoint (:meth:`modules`, :meth:`architecture`).
This class owns everything else: processes and devices, data order, gradient accumulation split,
logging, image grids, validation with the best checkpoint kept, atomic checkpoints every N steps
and on SIGTERM/SIGINT, exact resume, and stopping on a NaN loss with the last good checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader

from .. import __version__
from ..data import ImageFolderDataset, ResumableSampler
from ..errors import HyperInverterError
from ..utils.images import make_grid, save_image
from ..utils.outputs import clean_stale_temporaries
from .checkpoint import (check_same_architecture, load_checkpoint, peek_step, rng_state, set_rng_state,
                         write_checkpoint)
from .config import ConfigError, check_batch_sizes, to_yaml
from .distributed import DistEnv, any_across, barrier, mean_across, setup, teardown

log = logging.getLogger("hyperinverter")


_OPT_KEYS = ("lr", "betas", "weight_decay", "eps")  # optimiser settings a config decides


class TrainingError(HyperInverterError, RuntimeError):
    """Training cannot go on (NaN loss, ...); the message says what was kept."""


class Trainer:
    kind = "base"

    def __init__(self, config: Any, resume: bool = False, progress: bool = True):
        self.config = config
        self.run_cfg = config.run
        self.env: DistEnv = setup(config.run.device)
        try:  # before anything loads: every batch size of the run splits over processes x grad_accum
            check_batch_sizes(config, self.env.world_size)
        except ConfigError:
            teardown(self.env)
            raise
        self.device = self.env.device
        self.out_dir = Path(config.run.out_dir)
        self.progress = progress and self.env.is_main
        self.step = 0
        self.best: Optional[float] = None
        self._saved_step: Optional[int] = None  # the step of the last checkpoint written (or resumed from)
        self._log_failed = False
        if not resume:
            self._refuse_existing_run()
        if self.env.is_main:  # temporaries of a save interrupted by kill -9 (checkpoint-sized)
            for stale in clean_stale_temporaries(self.out_dir, recursive=True):
                log.warning("removed %s, left by an interrupted save", stale)
        self._stop_requested = False
        torch.manual_seed(config.run.seed)
        self.noise_gen = torch.Generator().manual_seed(config.run.seed + 1)  # latents, mixing, (saved)
        self._was_deterministic = torch.are_deterministic_algorithms_enabled()
        if config.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        # fp16 autocast needs loss scaling (gradients underflow otherwise); a no-op for fp32/bf16 and on CPU.
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.run.amp == "fp16" and self.device.type == "cuda")
        self.build()
        self.dataset = self.make_dataset()
        self.sampler = ResumableSampler(len(self.dataset), self.rank_batch_size(config.run.batch_size),
                                        seed=config.run.seed, rank=self.env.rank, world_size=self.env.world_size,
                                        yield_epoch=True)  # (index, epoch) pairs: flips follow the epoch in workers
        if self.env.is_main:
            log.info("data: %s", self.dataset.describe())
        if resume:
            self.resume(self.out_dir / "checkpoints" / "latest.pt")
        if self.env.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.yaml").write_text(to_yaml(config, self.kind))

    # ---------------------------------------------------------------------------- subclass interface
    resolution: int

    def build(self) -> None:
        raise NotImplementedError

    def modules(self) -> dict[str, Any]:
        """Everything with a ``state_dict`` that a checkpoint must hold (models, optimisers, EMA, ...)."""
        raise NotImplementedError

    def architecture(self) -> dict:
        """Configuration that must match for a resume (model configs, not schedules)."""
        raise NotImplementedError

    def train_step(self, images: torch.Tensor) -> dict[str, float]:
        """One optimiser step on this process's share of the global batch; returns scalar logs."""
        raise NotImplementedError

    def validate(self, images: torch.Tensor) -> dict[str, float]:
        """Scalar metrics on validation images (lower ``val_loss`` is better); optional."""
        return {}

    def sample_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images for the progress grid (e.g. input | output rows)."""
        return images

    def on_step_start(self) -> None:
        """Hook for schedules (e.g. switching batch size when the adversarial term starts)."""

    def scheduled_batch_size(self) -> int:
        """The global batch size the config asks for at the current step (subclasses with a schedule override)."""
        return self.run_cfg.batch_size

    def make_dataset(self) -> torch.utils.data.Dataset:
        """The training set; its items (a tensor, or a tuple of tensors) are what :meth:`train_step` gets."""
        cfg = self.config
        return ImageFolderDataset(cfg.data.train, self.resolution, hflip=cfg.data.hflip, check=cfg.data.check,
                                  seed=cfg.run.seed)

    # ------------------------------------------------------------------------------------- helpers
    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def optimizer_step(self, optimizer: torch.optim.Optimizer, params) -> None:
        """Average gradients over processes, then step (skipped by the scaler if fp16 gradients overflowed)."""
        self.sync_gradients(params)
        self.scaler.step(optimizer)
        self.scaler.update()

    def sync_gradients(self, params) -> None:
        """Average gradients over processes (data parallelism); a no-op in a single process."""
        if not self.env.distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.env.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast_parameters(self, *modules) -> None:
        """Start every process from rank 0's weights."""
        if self.env.distributed:
            for m in modules:
                for t in list(m.parameters()) + list(m.buffers()):
                    torch.distributed.broadcast(t.data, src=0)

    def global_randn(self, shape, generator: torch.Generator) -> torch.Tensor:
        """Noise for the global batch drawn identically on every process, then this process's slice:
        a run on N processes draws the same numbers as a single process with the N-times batch."""
        full = torch.randn([shape[0] * self.env.world_size, *shape[1:]], generator=generator)
        r = self.env.rank
        return full[r * shape[0]:(r + 1) * shape[0]].to(self.device)

    def rank_batch_size(self, global_batch: int) -> int:
        if global_batch % self.env.world_size:
            raise TrainingError(f"batch size {global_batch} is not divisible by the {self.env.world_size} processes")
        return global_batch // self.env.world_size

    def micro_batches(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Split this process's batch into ``grad_accum`` micro-batches."""
        n = self.run_cfg.grad_accum
        if images.shape[0] % n:
            raise TrainingError(f"the per-process batch {images.shape[0]} is not divisible by grad_accum {n}")
        return list(images.chunk(n))

    def autocast(self):
        amp = self.run_cfg.amp
        if self.device.type != "cuda" or amp == "none":
            return torch.autocast(device_type="cpu", enabled=False)
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)

    def set_batch_size(self, global_batch: int) -> None:
        size = self.rank_batch_size(global_batch)
        if size != self.sampler.batch_size:
            self.sampler.set_batch_size(size)
            self._iterator = None  # rebuilt from the sampler's position

    def _batches(self) -> Iterator[torch.Tensor]:
        # An own generator: creating a loader must not draw from the global RNG (exact resume).
        loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.run_cfg.workers,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator())
        yield from loader

    # --------------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self) -> dict:
        return {
            "kind": self.kind,
            "hyperinverter_version": __version__,
            "step": self.step,
            "best": self.best,
            "architecture": self.architecture(),
            "modules": {name: m.state_dict() for name, m in self.modules().items()},
            "sampler": self.sampler.state_dict(),
            "rng": rng_state(),
            "noise_gen": self.noise_gen.get_state(),
            "scaler": self.scaler.state_dict(),
            "config_yaml": to_yaml(self.config, self.kind),
        }

    def _refuse_existing_run(self) -> None:
        """A fresh start in a folder that holds a run would overwrite its checkpoint and export: refuse."""
        for name in ("latest.pt", "best.pt"):
            path = self.out_dir / "checkpoints" / name
            if path.is_file():
                step = peek_step(path)
                what = f"at step {step} of this config's {self.run_cfg.steps}" if step is not None else \
                    "with an unreadable checkpoint"
                raise TrainingError(f"{self.out_dir}: holds a run {what} ({path}); add --resume to continue it, or "
                                    "choose another run.out_dir (nothing was changed)")

    def _kept(self) -> str:
        if self._saved_step is None:
            return "no checkpoint of this run has been written yet"
        return f"the previous checkpoint is kept (step {self._saved_step})"

    def save_checkpoint(self, name: str = "latest.pt", final: bool = False) -> Optional[Path]:
        """Write a checkpoint (and the export). A failure (full disk, unwritable folder) keeps the previous
        files and is logged; training goes on, except for the ``final`` save, which raises TrainingError."""
        if not self.env.is_main:
            return None
        path = self.out_dir / "checkpoints" / name
        failure = write_checkpoint(self.checkpoint_state(), path)
        if failure is not None:
            message = f"could not write the checkpoint {failure}; {self._kept()}"
            if final:
                raise TrainingError(f"{message}; stopped at step {self.step}")
            log.error("%s; training goes on", message)
            return None
        if name == "latest.pt":
            self._saved_step = self.step
        try:
            self.export()
        except (OSError, RuntimeError) as e:  # each exported file is written atomically: the previous export stays
            log.error("could not export the models next to %s (%s); the previous export is kept", path,
                      str(e).splitlines()[0] if str(e) else type(e).__name__)
        return path

    def export(self) -> None:
        """Write the usable models (save_pretrained folders) next to the checkpoint; subclasses override."""

    def resume(self, path: Path) -> None:
        state = load_checkpoint(path)
        if state.get("kind") != self.kind:
            raise TrainingError(f"{path}: a checkpoint of 'train {state.get('kind')}', not 'train {self.kind}'")
        check_same_architecture(state.get("architecture", {}), self.architecture(), path)
        # Optimiser hyper-parameters as this run's config built them: a resumed run applies a changed
        # learning rate or betas (and says so) instead of silently keeping the checkpoint's.
        wanted = {name: [{k: g[k] for k in _OPT_KEYS if k in g} for g in m.param_groups]
                  for name, m in self.modules().items() if isinstance(m, torch.optim.Optimizer)}
        for name, module in self.modules().items():
            if name not in state["modules"]:
                raise TrainingError(f"{path}: the checkpoint has no {name!r}")
            module.load_state_dict(state["modules"][name])
        for name, groups in wanted.items():
            for group, values in zip(self.modules()[name].param_groups, groups):
                changed = {k: (group[k], v) for k, v in values.items() if group[k] != v}
                if changed and self.env.is_main:
                    log.warning("%s: the config changes %s from the checkpoint's; applied", name,
                                ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items()))
                group.update(values)
        self.step, self.best = int(state["step"]), state.get("best")
        self._saved_step = self.step
        self.sampler.load_state_dict(state["sampler"])
        # A changed batch size is applied from here on (and said), like a changed learning rate: the
        # config.yaml written next is then what runs.
        wanted = self.rank_batch_size(self.scheduled_batch_size())
        if wanted != self.sampler.batch_size:
            if self.env.is_main:
                log.warning("the config changes the batch size from the checkpoint's %d to %d; applied from step %d "
                            "(the data order from here differs from a run that kept %d)",
                            self.sampler.batch_size * self.env.world_size, wanted * self.env.world_size, self.step,
                            self.sampler.batch_size * self.env.world_size)
            self.sampler.set_batch_size(wanted)
        set_rng_state(state["rng"])
        self.noise_gen.set_state(state["noise_gen"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.env.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    # ----------------------------------------------------------------------------------------- loop
    def _request_stop(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_requested = True
        log.warning("signal %d: finishing this step, writing a checkpoint and stopping", signum)

    def _validation_images(self) -> torch.Tensor:
        if not hasattr(self, "_val_images"):
            cfg = self.config.data
            if cfg.val:
                ds = ImageFolderDataset(cfg.val, self.resolution, hflip=False, check=cfg.check)
            else:
                ds = ImageFolderDataset(cfg.train, self.resolution, hflip=False, check="none")
            n = min(self.run_cfg.val_images, len(ds))
            self._val_images = torch.stack([ds[i] for i in range(n)])
        return self._val_images.to(self.device)

    def run(self) -> dict[str, float]:
        """Train to ``run.steps``; returns the last logged scalars."""
        cfg = self.run_cfg
        handlers = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                handlers[sig] = signal.signal(sig, self._request_stop)
            except ValueError:  # not the main thread: no handlers
                pass
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", desc=f"train {self.kind}")
        last: dict[str, float] = {}
        self._iterator = None
        images_seen, t0 = 0, time.perf_counter()
        deadline = t0 + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
        try:
            while self.step < cfg.steps:
                self.on_step_start()
                if self._iterator is None:
                    self._iterator = self._batches()
                batch = next(self._iterator)
                if isinstance(batch, (tuple, list)):  # (images, extras...) from make_dataset
                    batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
                    images = batch[0]
                else:
                    batch = images = batch.to(self.device, non_blocking=True)
                logs = self.train_step(batch)
                self.sampler.advance()
                bad = [k for k, v in logs.items() if not math.isfinite(v)]
                if any_across(self.env, bool(bad)):
                    raise TrainingError(f"loss {bad or '(on another process)'} is not finite at step {self.step + 1}; "
                                        f"stopped without saving: the last good checkpoint in "
                                        f"{self.out_dir / 'checkpoints'} is kept")
                self.step += 1
                images_seen += images.shape[0] * self.env.world_size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    last = mean_across(self.env, logs)
                    rate = images_seen / max(time.perf_counter() - t0, 1e-9)
                    images_seen, t0 = 0, time.perf_counter()
                    self.log_scalars(last, rate)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4f}" for k, v in list(last.items())[:4]} | {"img/s": f"{rate:.1f}"})
                if bar is not None:
                    bar.update(1)
                if cfg.image_every and self.step % cfg.image_every == 0 and self.env.is_main:
                    self.write_images()
                if cfg.val_every and self.step % cfg.val_every == 0:
                    self.run_validation()
                if time.perf_counter() > deadline and not self._stop_requested:
                    log.warning("run.max_minutes=%g reached", cfg.max_minutes)
                    self._stop_requested = True
                stop = any_across(self.env, self._stop_requested)
                last_step = self.step >= cfg.steps
                if stop or last_step or (cfg.ckpt_every and self.step % cfg.ckpt_every == 0):
                    self.save_checkpoint(final=stop or last_step)  # a failed last save stops with an error
                    barrier(self.env)
                if stop:
                    log.warning("stopped at step %d; resume with --resume", self.step)
                    break
            else:
                if self.env.is_main and self._saved_step != self.step:  # e.g. resumed at the last step
                    self.save_checkpoint(final=True)
                barrier(self.env)
        finally:
            if bar is not None:
                bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._iterator = None
        return last

    def log_scalars(self, values: dict[str, float], images_per_second: Optional[float] = None) -> None:
        if not self.env.is_main:
            return
        line = " ".join(f"{k}={v:.5g}" for k, v in values.items())
        rate = f" img/s={images_per_second:.2f}" if images_per_second is not None else ""
        try:
            with open(self.out_dir / "log.txt", "a") as fh:
                fh.write(f"step={self.step} {line}{rate}\n")
        except OSError as e:  # a full disk must not end the run here (the checkpoint says what it kept)
            if not self._log_failed:
                log.error("could not append to %s (%s); scalars go to the console only", self.out_dir / "log.txt",
                          e.strerror or type(e).__name__)
                self._log_failed = True
        writer = self._tensorboard()
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(k, v, self.step)
            if images_per_second is not None:
                writer.add_scalar("images_per_second", images_per_second, self.step)

    def _tensorboard(self):
        if not hasattr(self, "_tb"):
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                log.info("tensorboard is not installed: scalars go to log.txt only")
                self._tb = None
        return self._tb

    @torch.no_grad()
    def write_images(self) -> None:
        grid = self.sample_images(self._validation_images()[:8])
        try:
            path = save_image(make_grid(grid.cpu(), columns=min(8, len(grid))), self.out_dir / "images" /
                              f"step{self.step:07d}.png")
        except OSError as e:
            log.error("could not write the image grid of step %d (%s)", self.step, e.strerror or type(e).__name__)
            return
        writer = self._tensorboard()
        if writer is not None:
            import numpy as np
            from PIL import Image

            writer.add_image("samples", np.asarray(Image.open(path)), self.step, dataformats="HWC")

    def run_validation(self) -> None:
        metrics = mean_across(self.env, self.validate(self._validation_images()))
        if not metrics or not self.env.is_main:
            return
        self.log_scalars({f"val/{k}": v for k, v in metrics.items()})
        score = metrics.get("val_loss")
        if score is not None and self.counts_for_best() and (self.best is None or score < self.best):
            self.best = score
            self.save_checkpoint("best.pt")

    def counts_for_best(self) -> bool:
        return True

    def close(self) -> None:
        if getattr(self, "_tb", None) is not None:
            self._tb.close()
        torch.use_deterministic_algorithms(self._was_deterministic)
        teardown(self.env)


def config_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
