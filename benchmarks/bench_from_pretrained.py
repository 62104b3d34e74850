"""Time and peak memory of ``HyperInverter.from_pretrained`` (issue 16, item 4).

Each load runs in a fresh child process, so its peak resident set size (``VmHWM``, reset after the imports) is
the load's own: the model being built, the tensors read from ``model.safetensors`` and any temporaries.

    python benchmarks/bench_from_pretrained.py --make /tmp/faces128            # once: an official-size folder
    python benchmarks/bench_from_pretrained.py portraits64 /tmp/faces128 --repeat 3 --compare

``--make`` writes a HyperInverter of the official FFHQ architecture (config-f 1024 px generator, IR-SE-50 E1 and
E2 with 18 slots, ``--hidden-dim`` 128 as the released hd128 model: about 381 M elements, 1.5 GB in float32)
filled with seeded random weights. One JSON line per load: ``{"model", "path", "seconds", "peak_mb",
"elements"}``; ``peak_mb`` is the peak RSS above the process's resident size before the call. ``--compare`` also
times the former way (``path: random-init``: the model built with random initialisation, the file copied into
it), interleaved with ``from_pretrained``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import dataclasses, json, math, sys, time
import torch
from safetensors.torch import load_file
from hyperinverter import HyperInverter
from hyperinverter.checkpoints.pretrained import build_within_budget, load_state_dict_checked, safetensors_shapes
from hyperinverter.pretrained import resolve

def random_init_load(name):
    # what from_pretrained did before it built on meta: a randomly initialised model, the file copied into it
    directory = resolve(name)
    config = HyperInverter.read_config(directory)
    stored = sum(math.prod(s) for s in safetensors_shapes(directory / "model.safetensors").values())
    model = build_within_budget(HyperInverter, dataclasses.asdict(config), stored, "config.json")
    load_state_dict_checked(model, load_file(str(directory / "model.safetensors")), "model.safetensors")
    return model.to(device="cpu", dtype=torch.float32).eval()

def status_mb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024

torch.set_num_threads(int(sys.argv[2]))
with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current resident size
    f.write("5")
base = status_mb("VmRSS")
t = time.perf_counter()
model = random_init_load(sys.argv[1]) if sys.argv[3] == "random-init" else HyperInverter.from_pretrained(sys.argv[1])
seconds = time.perf_counter() - t
elements = sum(v.numel() for v in model.state_dict().values())
print(json.dumps({"model": sys.argv[1], "path": sys.argv[3], "seconds": round(seconds, 3),
                  "peak_mb": round(status_mb("VmHWM") - base, 1), "elements": elements}))
"""


def make_official(directory: Path, hidden_dim: int) -> None:
    """Save an official-size FFHQ HyperInverter with seeded random weights into ``directory``."""
    import torch

    from hyperinverter import HyperInverter, config_f
    from hyperinverter.encoders import official_face_encoders

    torch.manual_seed(0)
    e1, e2 = official_face_encoders()
    model = HyperInverter(generator=dataclasses.asdict(config_f(1024)), w_encoder=dataclasses.asdict(e1),
                          layer_encoder=dataclasses.asdict(e2), hidden_dim=hidden_dim)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a load that skipped them would show
        for name, buffer in model.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.uniform_(0.5, 1.5)
    model.save_pretrained(directory)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="model folders or shipped model names to load (default: none)")
    parser.add_argument("--make", type=Path, help="first write an official-size model into this folder (default: no)")
    parser.add_argument("--hidden-dim", type=int, default=128, help="hidden_dim of the --make model (default: 128)")
    parser.add_argument("--repeat", type=int, default=3, help="loads per model, each in a new process (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the child (default: 2)")
    parser.add_argument("--compare", action="store_true",
                        help="also time the former way, a randomly initialised model the file is copied into "
                             "(default: off)")
    args = parser.parse_args(argv)
    if args.make:
        make_official(args.make, args.hidden_dim)
        print(json.dumps({"made": str(args.make)}))
    paths = ("from_pretrained", "random-init") if args.compare else ("from_pretrained",)
    for model in args.models:
        runs: dict[str, list] = {p: [] for p in paths}
        for _ in range(args.repeat):
            for path in paths:  # interleaved, so a busy machine slows both alike
                proc = subprocess.run([sys.executable, "-c", _CHILD, model, str(args.threads), path],
                                      capture_output=True, text=True, check=True)
                runs[path].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(json.dumps(runs[path][-1]), flush=True)
        for path, done in runs.items():
            print(json.dumps({"model": model, "path": path,
                              "median_seconds": statistics.median(r["seconds"] for r in done),
                              "median_peak_mb": statistics.median(r["peak_mb"] for r in done)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
