"""Average the weights of HyperInverter model folders of one training run (the last few checkpoints' exports) into
a new model folder: a cheap ensemble that smooths the step-to-step noise of a fine-tune at a constant rate.

    python scripts/average_models.py OUT MODEL_DIR [MODEL_DIR ...]

Used by ``scripts/train_demo.sh``'s smile stage (README "The smile term"). Floating-point tensors are averaged in
float64 and stored in the first folder's dtype; integer buffers (BatchNorm's batch counters) are the first folder's.
OUT must not exist: nothing is overwritten.
"""
import argparse
import sys
from pathlib import Path

import torch

from hyperinverter.inverter import HyperInverter


def average_states(states: list) -> dict:
    """The element-wise mean of state dicts with the same keys and shapes (non-float entries: the first's).

    Not ``torch.optim.swa_utils.AveragedModel``: it keeps a running mean in each tensor's own dtype (float16 folders
    would round at every update) and leaves buffers out unless asked; this is one exact mean in float64."""
    first = states[0]
    for s in states[1:]:
        if {k: v.shape for k, v in s.items()} != {k: v.shape for k, v in first.items()}:
            raise ValueError("the models have different architectures")
    return {k: (torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
            for k, v in first.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="new model folder (must not exist)")
    parser.add_argument("models", nargs="+", help="HyperInverter model folders (save_pretrained) to average")
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"error: {args.out} exists; choose a new folder", file=sys.stderr)
        return 2
    models = [HyperInverter.from_pretrained(m) for m in args.models]
    models[0].load_state_dict(average_states([m.state_dict() for m in models]))
    models[0].save_pretrained(args.out)
    print(f"averaged {len(models)} models -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
