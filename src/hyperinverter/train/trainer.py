"""The training loop shared by the GAN, W-encoder and hypernetwork trainings.

A subclass builds its networks and optimisers (:meth:`build`), does one optimiser step
(:meth:`train_step`), and names what goes into a checkpoint (:meth:`modules`, :meth:`architecture`).
This class owns everything else: processes and devices, data order, gradient accumulation split,
logging, image grids, validation with the best checkpoint kept, atomic checkpoints every N steps
and on SIGTERM/SIGINT, exact resume, and stopping on a NaN loss with the last good checkpoint kept.

Data parallelism: the W-encoder and hypernetwork trainers put their trainable networks under
``DistributedDataParallel`` (:meth:`Trainer.data_parallel`: gradients averaged in buckets while backward
runs, ``no_sync`` for all but the last micro-batch, :meth:`Trainer.grad_sync`) with SyncBatchNorm on
multi-GPU runs (:meth:`Trainer.sync_batchnorm`); the GAN trainers average their gradients with one flat
``all_reduce`` before each optimiser step (:meth:`Trainer.sync_gradients`, see there why).

Logging makes no host sync on ordinary steps: a step returns its scalars as detached device tensors, which
are summed on the device; every ``run.log_every`` steps the window's means are averaged over processes and
pulled to the host at once (also before a checkpoint or a validation, to refuse saving after a NaN loss).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
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


def _worker_ignores_stop_signals(worker_id: int) -> None:  # noqa: ARG001
    """DataLoader workers leave SIGTERM and SIGINT to the training process. A stop signal often reaches a
    whole process group (``torchrun`` stops each rank with ``killpg``; schedulers and ``kill -- -PGID`` do the
    same): a worker killed by it makes PyTorch raise "DataLoader worker is killed" in the middle of a step,
    before the trainer has written the checkpoint the signal asks for. Ignoring it here, the training
    process finishes its step, saves and shuts its workers down; a worker whose parent is gone exits by
    itself (PyTorch's worker watchdog)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
        self._reset_log_window()
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

    def train_step(self, images: torch.Tensor) -> dict[str, Any]:
        """One optimiser step on this process's share of the global batch; returns scalar logs.

        Return them as detached 0-d tensors on the device (python floats are accepted too): the loop sums them
        there and pulls them to the host only every ``run.log_every`` steps. A ``.item()`` here would wait for
        the GPU to finish the step, every step."""
        raise NotImplementedError

    def validate(self, images: torch.Tensor) -> dict[str, float]:
        """Scalar metrics on validation images (lower ``val_loss`` is better); optional."""
        return {}

    def sample_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images for the progress grid (e.g. input | output rows)."""
        return images

    def on_step_start(self) -> None:
        """Hook for schedules (e.g. switching batch size when the adversarial term starts)."""

    def apply_lr_schedule(self) -> None:
        """Set the optimisers' rates for the current step (subclasses with a rate schedule override; called before
        every step's :meth:`on_step_start` and on resume, where a changed rate is reported against the schedule's)."""

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

    def optimizer_step(self, optimizer: torch.optim.Optimizer, params=None) -> None:
        """Step (skipped by the scaler if fp16 gradients overflowed).

        ``params``: parameters whose gradients are averaged over processes here, by :meth:`sync_gradients`
        (the GAN trainers); None when DistributedDataParallel already averaged them during backward."""
        if params is not None:
            self.sync_gradients(params)
        self.scaler.step(optimizer)
        self.scaler.update()

    def data_parallel(self, module: nn.Module) -> nn.Module:
        """``module`` under ``DistributedDataParallel`` in a multi-process run; ``module`` itself in one process.

        Call the returned module for the training forward passes (with :meth:`grad_sync` around each micro-batch)
        and keep the plain ``module`` for everything else: checkpoints (the same keys as a single-process run),
        exports, validation and image grids (rank 0 alone draws the grids; a DDP forward there would wait for the
        other processes). DDP broadcasts rank 0's parameters and buffers when it is built, averages gradients in
        buckets while backward is still running, and writes them into the buckets directly
        (``gradient_as_bucket_view``: no second copy of the gradients). Buffers (BatchNorm running statistics)
        are broadcast from rank 0 at the first training forward of each step, so every process goes on from the
        statistics a checkpoint (rank 0's) saves.
        Every trainable parameter must take part in each forward (``find_unused_parameters`` is off: no graph
        search per step)."""
        if not self.env.distributed:
            return module
        return DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                       gradient_as_bucket_view=True)

    def sync_batchnorm(self, module: nn.Module) -> nn.Module:
        """``module`` with its BatchNorm layers replaced by ``SyncBatchNorm`` on a multi-process CUDA run (unless
        ``run.sync_batchnorm=false``): batch statistics over the global batch, not over each GPU's few images.

        The checkpoint keys do not change (SyncBatchNorm has BatchNorm's parameters and buffers). A CPU (gloo) run
        keeps plain BatchNorm: torch's SyncBatchNorm has no CPU kernel, so each process normalises over its own
        share of the batch there (the results then differ from one process with the same global batch)."""
        if self.env.distributed and self.device.type == "cuda" and self.run_cfg.sync_batchnorm:
            return nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return module

    @staticmethod
    def grad_sync(module: nn.Module, last: bool):
        """Context for one micro-batch's forward *and* backward: DDP's ``no_sync()`` for all but the ``last``
        micro-batch of a step (gradients accumulate locally and are averaged once, during the last backward)."""
        if isinstance(module, DistributedDataParallel) and not last:
            return module.no_sync()
        return contextlib.nullcontext()

    def sync_gradients(self, params) -> None:
        """Average gradients over processes with one flat ``all_reduce`` after backward; a no-op in one process.

        The GAN trainers keep this NVlabs-style synchronisation instead of DDP: their discriminator (and the
        generator, for path length) runs a double backward (R1, path length: ``autograd.grad`` with
        ``create_graph=True``), is called by both the generator and the discriminator steps with gradients on
        and off, and its regulariser steps use a different batch than the main ones; DDP's per-forward bucket
        bookkeeping does not follow that, while a flat average after backward is exact for all of it.
        The networks are small next to phase II's, so the missing overlap costs little."""
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
                            pin_memory=self.device.type == "cuda", generator=torch.Generator(),
                            worker_init_fn=_worker_ignores_stop_signals if self.run_cfg.workers else None)
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
        self._export_to(self.out_dir, f"next to {path}", "the previous export is kept")
        return path

    def _export_to(self, folder: Path, where: str, kept: str) -> None:
        try:
            self.export(folder)
        except (OSError, RuntimeError) as e:  # each exported file is written atomically: the previous export stays
            log.error("could not export the models %s (%s); %s", where,
                      str(e).splitlines()[0] if str(e) else type(e).__name__, kept)

    def keep_models(self) -> None:
        """A copy of the exported models in ``snapshots/step_N`` (run.keep_models_every): e.g. the last few of a
        fine-tune at a constant rate, averaged by scripts/average_models.py. A failure is logged; training goes on."""
        if self.env.is_main:
            folder = self.out_dir / "snapshots" / f"step_{self.step}"
            self._export_to(folder, f"to {folder}", "training goes on")

    def export(self, folder: Path) -> None:
        """Write the usable models (save_pretrained folders) into ``folder``; subclasses override."""

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
        self.step, self.best = int(state["step"]), state.get("best")
        loaded = {name: [{k: g[k] for k in _OPT_KEYS if k in g} for g in self.modules()[name].param_groups]
                  for name in wanted}
        for name, groups in wanted.items():
            for group, values in zip(self.modules()[name].param_groups, groups):
                group.update(values)
        self.apply_lr_schedule()  # a scheduled rate is the schedule's at this step, not the config's base rate
        for name, groups in loaded.items():
            for group, values in zip(self.modules()[name].param_groups, groups):
                changed = {k: (v, group[k]) for k, v in values.items() if group[k] != v}
                if changed and self.env.is_main:
                    log.warning("%s: the config changes %s from the checkpoint's; applied", name,
                                ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items()))
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

    # ------------------------------------------------------------------------------------ scalar logs
    def _reset_log_window(self) -> None:
        self._log_sums: dict[str, Any] = {}  # key -> sum over the window's steps (a device tensor, or a float)
        self._log_counts: dict[str, int] = {}  # key -> steps of the window that logged it (r1: every r1_every)
        self._log_first: Optional[int] = None  # the first step of the window
        self._finite_through = 0  # the window's steps up to this one were checked finite (before a save)

    def _accumulate_logs(self, logs: dict[str, Any]) -> None:
        """Add one step's scalars to the window, on the device (``detach``: no graph kept, no host sync)."""
        if self._log_first is None:
            self._log_first = self.step + 1
        for k, v in logs.items():
            v = v.detach() if isinstance(v, torch.Tensor) else v
            self._log_sums[k] = self._log_sums[k] + v if k in self._log_sums else v
            self._log_counts[k] = self._log_counts.get(k, 0) + 1

    def _window_means(self) -> dict[str, float]:
        """The window's mean of each scalar, averaged over processes and pulled to the host (one sync); raises
        TrainingError when one is not finite (on any process: a NaN anywhere makes the sum NaN)."""
        means = mean_across(self.env, {k: v / self._log_counts[k] for k, v in self._log_sums.items()})
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        if bad:
            first = max(self._log_first or self.step, self._finite_through + 1)
            where = f"at step {self.step}" if first == self.step else \
                f"in steps {first}-{self.step} (checked every run.log_every steps and before saving)"
            raise TrainingError(f"loss {bad} is not finite {where}; stopped without saving: the last good checkpoint "
                                f"in {self.out_dir / 'checkpoints'} is kept")
        self._finite_through = self.step
        return means

    def pull_logs(self) -> dict[str, float]:
        """The scalars of the steps since the last log (means over steps and processes) as floats; starts a new
        window. Every process calls it at the same step (a collective)."""
        means = self._window_means()
        self._reset_log_window()
        return means

    def check_finite(self) -> None:
        """Before anything is saved: raise TrainingError if a loss of the current window is not finite. A no-op
        (no sync) right after a log, which has just checked. Every process calls it at the same step."""
        if self._log_sums:
            self._window_means()

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
                self.apply_lr_schedule()
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
                self._accumulate_logs(logs)  # on the device: no host sync until the next log
                self.step += 1
                images_seen += images.shape[0] * self.env.world_size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    last = self.pull_logs()  # raises (nothing saved) if a loss of the window is not finite
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
                save = stop or last_step or (cfg.ckpt_every and self.step % cfg.ckpt_every == 0)
                keep = cfg.keep_models_every and self.step % cfg.keep_models_every == 0
                if save or keep:
                    self.check_finite()  # never a checkpoint or a kept model of weights that a NaN loss has reached
                if save:
                    self.save_checkpoint(final=stop or last_step)  # a failed last save stops with an error
                    barrier(self.env)
                if keep:
                    self.keep_models()
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
        self.check_finite()  # best.pt is never written after a NaN loss
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
