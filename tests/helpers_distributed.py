"""The multi-process training tests' entry point, launched by ``torchrun`` (or imported for one-process runs).

``python -m torch.distributed.run --nproc_per_node N tests/helpers_distributed.py KIND [options] key=value ...``
trains like ``hyperinverter train KIND key=value ...``, with two test-only additions:

* ``--freeze-bn``: every BatchNorm of the trained networks uses its running statistics (eval mode) in the
  training steps. Batch statistics are per process (CPU runs have no SyncBatchNorm), so N processes with a
  global batch B normalise over B/N images each and one process over B: the maths differ. With the statistics
  frozen, each image's loss depends on that image alone, and N processes must give one process's weights.
* ``--die-rank R --die-step S``: process R kills itself (SIGKILL, no handler runs) when step S begins: a crash
  in the middle of a run, for the resume test.
* ``--dump-grads PATH``: rank 0 saves the gradients of its first step (``{"module.parameter": tensor}``), as the
  optimiser used them: averaged over the processes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional

import torch
from torch import nn

from hyperinverter.train import get_trainer, load_train_config


def trainer_class(kind: str, freeze_bn: bool = False, die_rank: int = -1, die_step: int = -1,
                  dump_grads: Optional[str] = None) -> type:
    """The trainer of ``train KIND``, with BatchNorm frozen, a rank that dies at a step, and/or a gradient dump."""
    base = get_trainer(kind)

    class TestTrainer(base):
        _dumped = False

        def train_step(self, batch):
            if self.env.rank == die_rank and self.step == die_step:
                os.kill(os.getpid(), signal.SIGKILL)
            if freeze_bn:  # again each step: validation and image grids switch the networks back to train()
                for module in self.modules().values():
                    if isinstance(module, nn.Module):
                        for m in module.modules():
                            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                                m.eval()
            logs = super().train_step(batch)
            if dump_grads and self.env.is_main and not self._dumped:
                grads = {f"{name}.{k}": p.grad.detach().clone() for name, module in self.modules().items()
                         if isinstance(module, nn.Module) for k, p in module.named_parameters() if p.grad is not None}
                torch.save(grads, dump_grads)
                self._dumped = True
            return logs

    TestTrainer.__name__ = base.__name__
    return TestTrainer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--freeze-bn", action="store_true")
    parser.add_argument("--die-rank", type=int, default=-1)
    parser.add_argument("--die-step", type=int, default=-1)
    parser.add_argument("--dump-grads")
    args = parser.parse_intermixed_args(argv)
    config = load_train_config(args.kind, None, args.overrides)
    cls = trainer_class(args.kind, args.freeze_bn, args.die_rank, args.die_step, args.dump_grads)
    trainer = cls(config, resume=args.resume, progress=False)
    try:
        trainer.run()
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
