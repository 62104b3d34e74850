"""Benchmark ``hyperinverter video``: frames per second and temporal flicker.

What is measured
----------------
A synthetic clip (:func:`hyperinverter.video.synthetic.portrait_clip`: a procedural portrait moving and
scaling slightly over a textured background; ``--frames`` frames of ``--width`` x ``--height`` at 25
frames/s, written with H.264 at CRF 10) is edited end to end with :func:`hyperinverter.video.edit_video`:
decoding, the fixed centred crop (the demo model is not trained on aligned faces), batched inversion, the
edit (``--direction`` at strength 1, Δθ kept), paste-back with the feathered mask and H.264 encoding.

* frames/s: frames over the wall-clock time of the run (``VideoReport.frames_per_second``; the final join
  of the chunks, which copies the encoded stream, is excluded). The first ``--batch-size`` frames of a
  run also pay for one-time costs (allocations), as in real use.
* frames per CPU-second: frames over the CPU time (user + system) the run used, this process's and its
  ffmpeg children's together (join included). Other processes on a busy machine stretch the wall-clock
  time but hardly this, so it tells what an idle machine would do (with one torch thread, frames/s on
  an idle core is close to it).
* flicker: :func:`hyperinverter.video.temporal_flicker`, the mean absolute difference between consecutive
  frames (0..255 levels) over the face region (the crop), on the decoded output and on the decoded
  input. The input's value is the clip's own motion; the output's excess over it is the flicker the
  per-frame inversion adds. Measured without and with ``--smooth`` (each sigma in ``--smooth``).

Models: ``--model`` (default the shipped ``portraits64``, 64 px) for speed and flicker; with ``--hd128``
also a 128 px model of the same family (the portraits64 configuration at ``img_resolution=128`` and a
128 px encoder input, randomly initialised: its speed is that of a trained one, its flicker is not
meaningful and is not reported).

Other processes on the machine change CPU timings: the load average before and after is printed.

How to run
----------
::

    python benchmarks/bench_video.py                         # portraits64, smooth 0 and 1
    python benchmarks/bench_video.py --hd128 --threads 2     # also the 128 px model's speed
    python benchmarks/bench_video.py --frames 96 --smooth 1,2 --json video.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch

from hyperinverter.editing import load_direction_file
from hyperinverter.inverter import HyperInverter
from hyperinverter.pretrained import resolve
from hyperinverter.utils.outputs import write_text_atomic
from hyperinverter.video import (
    FaceVideoEditor,
    FixedCrop,
    SegmentWriter,
    centred_square,
    edit_video,
    iter_frames,
    probe_video,
    temporal_flicker,
)
from hyperinverter.video.synthetic import portrait_clip
from hyperinverter.workflows import find_direction


def make_clip(path: Path, frames: int, width: int, height: int, fps: int = 25) -> Path:
    """Write the synthetic portrait clip (portrait side 85 % of the frame height)."""
    writer = SegmentWriter(path, width, height, Fraction(fps), crf=10)
    for frame, _ in portrait_clip(frames=frames, width=width, height=height, side=int(0.85 * height)):
        writer.write(frame)
    return writer.close()


def hd128_model(base: HyperInverter) -> HyperInverter:
    """A randomly initialised 128 px model of ``base``'s family (same widths, one more generator block)."""
    cfg = dataclasses.asdict(base.config)
    cfg["generator"]["img_resolution"] = 128
    cfg["encoder_input_size"] = 128
    cfg["layer_encoder"]["num_slots"] = 12
    torch.manual_seed(0)
    return HyperInverter(**cfg).eval()


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (ffmpeg)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(model, direction, clip: Path, smooth: float, batch_size: int, work: Path, name: str) -> dict:
    info = probe_video(clip)
    rect = centred_square(info.width, info.height)
    editor = FaceVideoEditor(model, direction.vector, direction.step(1.0), FixedCrop(*rect), info.fps,
                             smooth=smooth, batch_size=batch_size)
    out = work / f"{name}.mp4"
    start, cpu = time.perf_counter(), cpu_seconds()
    report = edit_video(editor, info, out, settings={"bench": name}, restart=True)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"frames": report.frames, "seconds": report.seconds, "frames_per_second": report.frames_per_second,
            "frames_per_cpu_second": report.frames / cpu, "wall_seconds_with_join": wall, "output": out, "rect": rect}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="portraits64", help="model name or folder (default portraits64)")
    parser.add_argument("--direction", default="skin_tone", help="direction of the model (default skin_tone)")
    parser.add_argument("--frames", type=int, default=48, help="frames of the clip (default 48)")
    parser.add_argument("--width", type=int, default=320, help="frame width (default 320)")
    parser.add_argument("--height", type=int, default=240, help="frame height (default 240)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per inversion batch (default 8)")
    parser.add_argument("--smooth", default="1", help="comma-separated --smooth sigmas besides 0 (default 1)")
    parser.add_argument("--hd128", action="store_true", help="also time a 128 px model (random weights)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: PyTorch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    sigmas = [0.0] + [float(s) for s in args.smooth.split(",") if s.strip()]
    load = os.getloadavg()
    model = HyperInverter.from_pretrained(resolve(args.model)).eval()
    direction = load_direction_file(find_direction(args.direction, args.model), model.generator.w_dim, model.num_ws)
    results: dict = {"clip": {"frames": args.frames, "width": args.width, "height": args.height, "fps": 25},
                     "threads": torch.get_num_threads(), "load_before": load, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work / "clip.mp4", args.frames, args.width, args.height)
        info = probe_video(clip)
        rect = centred_square(info.width, info.height)
        results["input_flicker"] = temporal_flicker(iter_frames(info), rect)
        print(f"clip: {args.frames} frames {args.width}x{args.height} at 25 frames/s, face region (crop) "
              f"{rect}; {torch.get_num_threads()} torch threads; load average {load[0]:.2f}")
        print(f"input flicker over the crop: {results['input_flicker']:.2f} levels")
        print("| model | px | --smooth | frames/s | frames/CPU-s | output flicker | excess over input |")
        print("|---|---|---|---|---|---|---|")
        for sigma in sigmas:
            r = run(model, direction, clip, sigma, args.batch_size, work, f"s{sigma:g}")
            r["flicker"] = temporal_flicker(iter_frames(probe_video(r["output"])), rect)
            row = {"model": str(args.model), "resolution": model.resolution, "smooth": sigma,
                   "frames_per_second": r["frames_per_second"], "frames_per_cpu_second": r["frames_per_cpu_second"],
                   "flicker": r["flicker"],
                   "excess_flicker": r["flicker"] - results["input_flicker"]}
            results["runs"].append(row)
            print(f"| {args.model} | {model.resolution} | {sigma:g} | {r['frames_per_second']:.2f} | "
                  f"{r['frames_per_cpu_second']:.2f} | {r['flicker']:.2f} | {row['excess_flicker']:+.2f} |")
        if args.hd128:
            big = hd128_model(model)
            r = run(big, direction, clip, 0.0, args.batch_size, work, "hd128")
            results["runs"].append({"model": "portraits family, random weights", "resolution": 128, "smooth": 0.0,
                                    "frames_per_second": r["frames_per_second"],
                                    "frames_per_cpu_second": r["frames_per_cpu_second"]})
            print(f"| portraits family (random weights) | 128 | 0 | {r['frames_per_second']:.2f} | "
                  f"{r['frames_per_cpu_second']:.2f} | - | - |")
    results["load_after"] = os.getloadavg()
    print(f"load average after: {results['load_after'][0]:.2f}")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
