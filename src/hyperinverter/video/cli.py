"""The ``hyperinverter video`` command: edit the face through a whole video.

Registered on the main parser by :func:`add_commands`; the model loading (:func:`hyperinverter.workflows.
load_model`), device choice (:func:`hyperinverter.devices.choose_device`) and one-line errors are the other
commands'.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

from .io import DEFAULT_CHUNK, DEFAULT_CRF  # numpy only: the parser is built without torch (hyperinverter.lazy)
from .tracking import DEFAULT_CUTOFF

#: Sigma (frames) of the temporal smoothing when ``--smooth`` is given without a value.
DEFAULT_SMOOTH = 1.0


def _fingerprint(path: Path) -> list:
    """Resolved path, size and modification time of a file (a changed file is another input)."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def default_preview(output: Path) -> Path:
    """``<output stem>_preview<suffix>`` beside the output."""
    return output.with_name(f"{output.stem}_preview{output.suffix}")


def _source(args, model_spec, info):
    """The landmark source: the given crop, the centred square for a model not trained on aligned faces,
    else dlib; returns ``(source, description)``."""
    from ..domain import load_domain
    from .tracking import DlibLandmarks, FixedCrop, parse_crop

    if args.crop is not None:
        rect = parse_crop(args.crop, info.width, info.height)
        return FixedCrop(*rect), "crop {},{},{},{}".format(*rect)
    record = load_domain(model_spec)
    if record is not None and not record.aligned_faces:
        rect = parse_crop("center", info.width, info.height)
        print("note: {} was trained on {}, not on FFHQ-aligned faces: editing the fixed crop {},{},{},{} of every "
              "frame (--crop x,y,w,h to choose another)".format(model_spec, record.kind or "other images", *rect))
        return FixedCrop(*rect), "crop {},{},{},{}".format(*rect)
    return DlibLandmarks(args.landmarks, min_score=args.min_score), "dlib"


def cmd_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..checkpoints import WEIGHTS_NAME
    from ..devices import choose_device
    from ..editing import load_direction_file
    from ..pretrained import resolve
    from ..utils.outputs import OutputPlan, check_writable
    from ..workflows import find_direction, load_model, parse_layers
    from .editor import FaceVideoEditor
    from .io import probe_video
    from .pipeline import container_for, edit_video, parts_folder, read_progress
    from .tracking import FaceTracker

    if not math.isfinite(args.strength):
        raise ValueError(f"--strength must be a finite number, got {args.strength}")
    output = args.output
    preview = None
    if args.preview is not None:
        preview = default_preview(output) if args.preview == "" else Path(args.preview)
    container_for(output)
    if preview is not None:
        container_for(preview)
    model_dir = resolve(args.model)  # a missing model is named before anything else is read
    direction_path = find_direction(args.direction, args.model)
    plan = OutputPlan(inputs=[args.input, direction_path], overwrite=args.overwrite)
    plan.add(output, "the edited video")
    if preview is not None:
        plan.add(preview, "--preview")
    plan.check()  # refuses an output equal to the input (also through a link), even with --overwrite
    check_writable(output.parent)
    info = probe_video(args.input)
    tracker = FaceTracker(args.face, min_cutoff=args.crop_cutoff)  # checks --face and --crop-cutoff
    source, where = _source(args, args.model, info)  # a bad --crop, a missing dlib: named before the model loads
    layers = parse_layers(args.layers)
    device = choose_device(args.device)
    model = load_model(args.model, device)
    direction = load_direction_file(direction_path, model.generator.w_dim, model.num_ws)
    layers = layers or direction.layers
    step = direction.step(args.strength)
    editor = FaceVideoEditor(model, direction.vector, step, source, info.fps, tracker=tracker, layers=layers,
                             smooth=args.smooth, feather=args.feather, batch_size=args.batch_size)
    weights = model_dir / WEIGHTS_NAME
    settings = {
        "input": _fingerprint(args.input),
        "model": _fingerprint(weights) if weights.is_file() else str(model_dir.resolve()),
        "direction": hashlib.sha256(direction.vector.float().numpy().tobytes()).hexdigest(),
        "step": step, "layers": list(layers) if layers is not None and not isinstance(layers, slice) else None,
        "source": where, "face": args.face, "crop_cutoff": args.crop_cutoff, "smooth": args.smooth,
        "feather": args.feather, "precision": model.effective_precision(device),
        "landmarks": None if args.landmarks is None else str(args.landmarks), "min_score": args.min_score,
    }
    print(f"video: {args.input} ({info.width}x{info.height}, {float(info.frame_rate):.3f} frames/s, "
          f"{info.frames if info.frames is not None else 'unknown number of'} frames, "
          f"{'audio ' + info.audio if info.audio else 'no audio'}); face: {where}")
    with tqdm(total=info.frames, unit="frame", desc="editing", disable=args.quiet, dynamic_ncols=True) as bar:
        def on_start(finished: int) -> None:  # frames of an interrupted run: not counted in the frames/s
            bar.initial = bar.n = finished
            bar.refresh()

        try:
            report = edit_video(editor, info, output, settings, preview=preview, chunk=args.chunk, crf=args.crf,
                                restart=args.restart, progress=bar.update, on_start=on_start,
                                notify=lambda line: bar.write(f"note: {line}"))
        except KeyboardInterrupt:
            saved = read_progress(output)
            kept = saved["frames_done"] if saved else 0
            bar.close()
            print(f"interrupted: {kept} finished frames are kept in {parts_folder(output)}; run the same command "
                  "again to resume after them", file=sys.stderr)
            raise
    print(f"wrote {report.output} ({report.frames} frames, {report.width}x{report.height} at "
          f"{float(report.frame_rate):.3f} frames/s, audio: {report.audio})"
          + (f" and {report.preview} (input | edited)" if report.preview else ""))
    done = report.frames - report.resumed_from
    print(f"{report.without_face} frames without the face were passed through unchanged; {done} frames in "
          f"{report.seconds:.1f} s ({report.frames_per_second:.2f} frames/s)"
          + (f"; {report.resumed_from} frames came from the interrupted run" if report.resumed_from else ""))
    return 0


def add_commands(sub) -> None:
    """Register ``video`` on the ``hyperinverter`` sub-command parser ``sub``."""
    from ..editing.strength import STRENGTH_HELP
    from ..faces.paste import DEFAULT_FEATHER

    p = sub.add_parser("video", help="edit the face through a whole video (tracked, inverted in batches, edited "
                                     "and pasted back; resumable)")
    p.add_argument("input", type=Path, help="the video to edit (anything ffmpeg reads: .mp4, .mov, .mkv, ...)")
    p.add_argument("--output", "-o", type=Path, required=True,
                   help="the edited video (.mp4, .m4v, .mov or .mkv): H.264 at the input's size and frame rate, "
                        "with the input's audio")
    from ..pretrained import DEFAULT_MODEL

    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"folder written by save_pretrained/convert, or a shipped model name (default {DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default auto)")
    p.add_argument("--direction", required=True, help="direction file (.npy/.pt/.safetensors) or a name from the "
                                                      "model's directions/ folder")
    p.add_argument("--strength", type=float, default=1.0, help="(default 1) " + STRENGTH_HELP)
    p.add_argument("--layers", default=None, help="rows of ws to move, 'first:stop' (default: the direction's own "
                                                  "rows, else all)")
    p.add_argument("--smooth", type=float, nargs="?", const=DEFAULT_SMOOTH, default=0.0, metavar="SIGMA",
                   help="smooth w and the residuals over time with a centred Gaussian of SIGMA frames, within each "
                        f"stretch of frames showing the face (default 0 = off; --smooth alone: {DEFAULT_SMOOTH:g})")
    p.add_argument("--crop", default=None, metavar="X,Y,W,H",
                   help="edit this fixed rectangle of every frame (pixels) or 'center' (the centred square) instead "
                        "of tracking a face with dlib (default: dlib for models trained on FFHQ-aligned faces, the "
                        "centred square for the others, e.g. portraits64)")
    p.add_argument("--face", type=int, default=None, metavar="N",
                   help="track the N-th face from the left (0 = leftmost, as numbered by 'align --all-faces') "
                        "(default: the largest face)")
    p.add_argument("--crop-cutoff", type=float, default=DEFAULT_CUTOFF, metavar="HZ",
                   help="the tracked crop's one-euro filter: cutoff at rest in Hz; lower = steadier crop, more lag "
                        f"(default {DEFAULT_CUTOFF:g})")
    p.add_argument("--landmarks", type=Path, default=None,
                   help="dlib shape_predictor_68_face_landmarks.dat (default: $HYPERINVERTER_DLIB_LANDMARKS, the "
                        "face_recognition_models package, /usr/share/dlib)")
    p.add_argument("--min-score", type=float, default=None,
                   help="ignore face detections scoring below this (default 0.3)")
    p.add_argument("--feather", type=float, default=DEFAULT_FEATHER,
                   help="width of the pasted crop's soft border, as a fraction of its side "
                        f"(default {DEFAULT_FEATHER:g})")
    p.add_argument("--batch-size", type=int, default=8, help="frames per inversion batch (default 8)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                   help=f"frames per resumable chunk: an interrupted run continues after the last finished chunk "
                        f"(default {DEFAULT_CHUNK})")
    p.add_argument("--crf", type=int, default=DEFAULT_CRF,
                   help=f"H.264 quality of the output: 0 lossless .. 51 worst (default {DEFAULT_CRF})")
    p.add_argument("--preview", nargs="?", const="", default=None, metavar="PATH",
                   help="also write a side-by-side video (input | edited) (default: none; --preview alone: "
                        "<output stem>_preview<suffix>)")
    p.add_argument("--restart", action="store_true",
                   help="ignore the finished chunks of an interrupted run and start again (default: resume)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never the input)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_video)


__all__ = ["add_commands", "cmd_video", "default_preview"]
