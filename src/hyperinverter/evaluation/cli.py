"""Command-line entries: ``hyperinverter evaluate`` and ``hyperinverter train-attributes``.

``evaluate`` runs the chosen methods on the same images and writes ``results.md`` / ``.json`` / ``.csv``
and example grids; ``train-attributes`` trains the portrait attribute regressor that ``evaluate
--attributes`` uses to measure editability.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from ..demo.names import FRAMING_NAMES
from .names import METHOD_NAMES, STEP_KEYS

EVALUATE_EPILOG = f"""\
methods: {', '.join(METHOD_NAMES)} (w_encoder = phase I only; w_opt / wplus_opt = Adam on one code per image
from w_avg; pti = W pivot + per-image generator tuning; hyperinverter+refine = HyperInverter, then a few steps of
that tuning from its w and θ+Δθ). Settings: --set METHOD.FIELD=VALUE, e.g.
--set pti.pivot=w_encoder --set w_opt.lr=0.05; step counts also with --steps w_opt=200,pti=100,pti.pivot=200.

metrics: MSE, PSNR, SSIM always (MS-SSIM for images >= 161 px); LPIPS with --lpips-backbone and --lpips-head
(then also used in the optimisation losses), ArcFace ID with --id, FID/KID with --inception, dlib identity
with --dlib-id. A missing weight file skips its metric with a message; the others run.

editability: --attributes REGRESSOR_DIR (from 'hyperinverter train-attributes') with directions named after
the attributes, from --directions DIR (default: the model's directions/ folder, e.g. from 'hyperinverter
directions fit-portraits') or fitted on the phase-I codes of labelled portraits with --fit-directions FOLDER
(use training-split portraits there and held-out ones in --data).

runtime: --runtime also times every method at batch sizes 1 and 8 (seconds per image, after an untimed
warm-up at each size): the 's/img @1' and 's/img @8' columns.

exit status: 0 on success, 2 on bad input (no images in --data, unreadable model, bad settings).
"""


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: one process, or every process of a ``torchrun`` job (batches shared; process 0 adds up
    the numbers and writes every file)."""
    from ..utils.distributed import inference_group

    group = inference_group()
    try:
        return _evaluate(args, group)
    finally:
        group.close()


def _evaluate(args: argparse.Namespace, group) -> int:
    import torch

    from ..errors import CheckpointError, HyperInverterError
    from ..inverter import HyperInverter
    from ..metrics import ReconstructionMetrics, available_metrics
    from ..pretrained import resolve
    from ..utils.image_io import iter_image_paths, load_images
    from .registry import build_method, parse_method_names, parse_overrides
    from .report import markdown_table, write_grids, write_results
    from .runner import evaluate_methods

    main = group.is_main  # process 0 prints and writes; under torchrun the others only compute
    say = print if main else (lambda *a, **k: None)
    err = lambda text: say(text, file=sys.stderr)  # noqa: E731
    error = None
    try:  # every process checks; one message (from process 0) when any of them fails
        names = parse_method_names(args.methods)
        overrides = parse_overrides(args.set or [], args.steps or [])
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.count is not None and args.count < 1:
            raise ValueError(f"--count must be >= 1, got {args.count}")
        device = group.device(args.device)
        model_dir = resolve(args.model)
        data = Path(args.data)
        if not data.exists():
            raise HyperInverterError(f"{data}: no such folder or file (--data)")
        paths = iter_image_paths([data])  # a folder without images raises ImageLoadError (exit 2)
        if main:  # process 0 writes every file: it checks them all before any work
            plan_evaluate_outputs(args, names, model_dir, paths)
    except Exception as e:  # noqa: BLE001 - raised again by agree() (on process 0)
        error = e
    group.agree(error)
    model = HyperInverter.from_pretrained(model_dir, device=device)
    res = model.resolution
    say(f"model: {args.model} ({res} px), device {device}" + (f", {group.world_size} processes"
                                                                if group.distributed else ""))
    if args.count is not None:
        paths = paths[:args.count]
    images, loaded, errors, load_notes = load_images(paths, res, on_error="skip")
    for _, message in errors:
        err(f"skipped: {message}")
    if images is None:  # the same on every process: the message once, from process 0
        if not main:
            raise SystemExit(2)
        raise HyperInverterError(f"{data}: none of the {len(paths)} image files could be read")
    resized = [p.name for p in loaded if any(n.startswith("resized") for n in load_notes.get(p, []))]
    notes = [f"{len(loaded)} images evaluated" + (f", {len(errors)} unreadable files skipped" if errors else "")]
    if resized:
        text = (f"{len(resized)} of {len(loaded)} images are not {res}x{res} and were resized to the model's "
                f"resolution (bilinear, antialiased): {', '.join(resized[:5])}{' ...' if len(resized) > 5 else ''}")
        err(f"warning: {text}")
        notes.append(text)

    # ------------------------------------------------------------------ metrics whose files may be missing
    def skip(metric: str, reason: str) -> None:
        say(f"skipped {metric}: {reason}")
        notes.append(f"{metric} not computed: {reason}")

    status = available_metrics(args.inception, args.lpips_backbone, args.lpips_head, args.id, image_size=res)
    lpips = identity = inception = dlib = None
    if status["lpips"].available:
        try:
            lpips = ReconstructionMetrics.from_paths(args.lpips_backbone, args.lpips_head, device=device).lpips
        except CheckpointError as e:
            skip("lpips", str(e))
    else:
        skip("lpips", status["lpips"].reason)
    if status["id"].available:
        try:
            identity = ReconstructionMetrics.from_paths(id_path=args.id, device=device).identity
        except CheckpointError as e:
            skip("id", str(e))
    elif args.id is not None:
        skip("id", status["id"].reason)
    if status["fid"].available:
        from ..metrics import InceptionFeatures

        try:
            inception = InceptionFeatures.from_file(args.inception).to(device)
        except CheckpointError as e:
            skip("fid/kid", str(e))
    elif args.inception is not None:
        skip("fid/kid", status["fid"].reason)
    if not status["ms_ssim"].available:
        skip("ms_ssim", status["ms_ssim"].reason)
    if args.dlib_id:
        from ..metrics.dlib_identity import DlibIdentity, DlibUnavailableError, dlib_identity_status

        dlib_status = dlib_identity_status()
        if dlib_status.available:
            try:
                dlib = DlibIdentity()
            except (DlibUnavailableError, RuntimeError) as e:
                skip("dlib_id", str(e))
        else:
            skip("dlib_id", dlib_status.reason)
    notes.append("optimisation losses: " + ("MSE + LPIPS" if lpips is not None else
                                           "MSE only (LPIPS weights not given)"))

    editability = _editability_setup(args, model, model_dir, device, notes, skip, save=main, say=say)

    # ------------------------------------------------------------------ run
    methods = [build_method(n, model, overrides.get(n), lpips=lpips, progress=main and not args.quiet) for n in names]
    for m in methods:
        notes.append(f"{m.name}: {dataclasses.asdict(m.config)}")
    torch.manual_seed(0)
    start = time.perf_counter()
    results = evaluate_methods(methods, images, batch_size=args.batch_size, metrics=ReconstructionMetrics(lpips,
                               identity), dlib=dlib, inception=inception, editability=editability,
                               examples=args.examples, runtime=args.runtime, progress=not args.quiet, log=say,
                               group=group)
    total = time.perf_counter() - start
    if not main:
        return 0
    if group.distributed:
        notes.append(f"{group.world_size} processes (torchrun) shared the batches; s/img is per process")
    out = Path(args.output)
    meta = {"model": str(args.model), "model_dir": str(model_dir), "data": str(data), "num_images": len(loaded),
            "files": [p.name for p in loaded], "resolution": res, "device": str(device),
            "batch_size": args.batch_size, "methods": names, "seconds_total": total, "processes": group.world_size,
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    paths = write_results(results, out, meta, notes)
    grids = write_grids(results, images, out)
    print()
    print(markdown_table(results), end="")
    print(f"\nwrote {paths['md']}, {paths['json'].name}, {paths['csv'].name} and {len(grids)} grids to {out} "
          f"({total:.1f} s)")
    return 0


def _files_in(*items) -> list:
    """The given files, and the files directly inside the given folders (None entries skipped)."""
    out = []
    for item in items:
        if item is None:
            continue
        p = Path(item)
        out += sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    return out


def plan_evaluate_outputs(args: argparse.Namespace, methods: list, model_dir: Path, images: list):
    """Check, before any work, every file ``evaluate`` may write into ``--output``: ``results.md/.json/.csv``,
    the example grids (``examples.png``, ``examples_<method>.png``, with ``--attributes`` also
    ``edits_<method>.png``) and with ``--fit-directions`` ``directions/<attribute>.safetensors/.json``.
    Refused in one line naming the files: an output that is an input (an image of ``--data``, a file of the
    model, the regressor, the directions or a metric's weights; even with ``--overwrite``), outputs that exist
    unless ``--overwrite``. The folder is then tried for writing. Returns the checked plan."""
    from ..utils.outputs import OutputPlan, check_writable

    out = Path(args.output)
    inputs = list(images) + _files_in(model_dir, Path(model_dir) / "directions", args.attributes, args.directions,
                                      args.fit_directions, args.lpips_backbone, args.lpips_head, args.id,
                                      args.inception)
    plan = OutputPlan(inputs=inputs, overwrite=args.overwrite)
    plan.add_folder_files(out, ["results.md", "results.json", "results.csv"])
    if args.examples > 0:
        plan.add(out / "examples.png")
        plan.add_folder_files(out, [f"examples_{m}.png" for m in methods])
        if args.attributes is not None:
            plan.add_folder_files(out, [f"edits_{m}.png" for m in methods])
    if args.attributes is not None and args.fit_directions is not None:
        from .attributes import AttributeRegressor

        wanted = (args.edit_attributes.split(",") if args.edit_attributes
                  else list(AttributeRegressor.read_config(args.attributes).attributes))
        for a in wanted:
            plan.add_folder_files(out / "directions", [f"{a}.safetensors", f"{a}.json"])
    plan.check()
    check_writable(out)
    return plan


def _editability_setup(args, model, model_dir: Path, device, notes: list, skip, save: bool = True, say=print):
    """The regressor and directions for editability, or None (with a message) when they are not there.
    ``save``: write fitted directions (process 0 only under torchrun); ``say``: print (a no-op elsewhere)."""
    if args.attributes is None:
        if args.directions is not None or args.fit_directions is not None:
            skip("editability", "directions given but no attribute regressor (--attributes)")
        return None
    from .attributes import AttributeRegressor, attribute_columns, load_labelled_portraits
    from .editability import (EditabilityConfig, fit_attribute_directions, load_attribute_directions,
                              save_attribute_directions)
    from .runner import EditabilitySetup

    regressor = AttributeRegressor.from_pretrained(args.attributes, device=device)
    wanted = args.edit_attributes.split(",") if args.edit_attributes else list(regressor.attributes)
    unknown = [a for a in wanted if a not in regressor.attributes]
    if unknown:
        raise ValueError(f"--edit-attributes {unknown}: the regressor predicts only {regressor.attributes}")
    if args.fit_directions is not None:
        data = load_labelled_portraits(args.fit_directions, size=model.resolution, limit=args.fit_count)
        directions, reports = fit_attribute_directions(model, data.images, attribute_columns(data.vectors, wanted),
                                                       wanted)
        for name, report in reports.items():
            if "skipped" in report:
                say(f"no direction for {name}: {report['skipped']}")
        if save:
            save_attribute_directions(directions, Path(args.output) / "directions")
        notes.append(f"directions fitted on phase-I codes of {len(data.files)} portraits of {args.fit_directions}; "
                     f"held-out accuracy " + ", ".join(f"{n} {r['holdout_accuracy']:.3f}" for n, r in reports.items()
                                                       if "skipped" not in r and r["holdout_accuracy"] is not None))
        missing = [a for a in wanted if a not in directions]
    else:
        folder = Path(args.directions) if args.directions is not None else model_dir / "directions"
        if not folder.is_dir():
            skip("editability", f"{folder}: no directions folder (give --directions DIR or --fit-directions FOLDER)")
            return None
        directions, missing = load_attribute_directions(folder, wanted, model.generator.w_dim, model.num_ws)
    if missing:
        say(f"editability: no direction for {', '.join(missing)} (their edits are not measured)")
    if not directions:
        skip("editability", "no direction matches the regressor's attributes")
        return None
    notes.append(f"editability: attributes {', '.join(directions)}; regressor {args.attributes}; strength "
                 + (f"{args.edit_strength}" if args.edit_strength is not None else "each direction's own"))
    return EditabilitySetup(regressor, directions, EditabilityConfig(strength=args.edit_strength))


def cmd_train_attributes(args: argparse.Namespace) -> int:
    from ..devices import choose_device
    from .attributes import (AttributeRegressorConfig, AttributeTrainConfig, load_labelled_portraits,
                             render_labelled_portraits, save_regressor, train_attribute_regressor)

    from ..checkpoints import CONFIG_NAME, WEIGHTS_NAME
    from ..utils.outputs import OutputPlan, check_writable
    from .attributes import REPORT_NAME

    if (args.data is None) == (args.render is None):
        raise ValueError("give either --data FOLDER (labelled portraits) or --render N (portraits made in memory)")
    if args.data is not None and args.framing is not None:
        raise ValueError("--framing is for --render: the portraits of --data keep the framing they were written in")
    plan = OutputPlan(inputs=_files_in(args.data), overwrite=args.overwrite)  # before any work
    plan.add_folder_files(args.output, [CONFIG_NAME, WEIGHTS_NAME, REPORT_NAME])
    plan.check()
    check_writable(args.output)
    device = choose_device(args.device)
    framings = None  # --data: whatever the folder holds
    if args.data is not None:
        data = load_labelled_portraits(args.data, size=args.size, limit=args.count)
        source = f"{len(data.files)} portraits of {args.data}"
    else:
        framings = args.framing or ["portrait"]
        data = render_labelled_portraits("train", args.render, size=args.size or 64, framing=framings)
        source = f"{args.render} rendered training-split portraits ({', '.join(framings)} framing)"
    from .attributes import KNOWN_ATTRIBUTES

    if args.attributes == ["all"]:
        args.attributes = list(KNOWN_ATTRIBUTES)
    config = AttributeRegressorConfig(**{k: v for k, v in (("attributes", args.attributes),
                                                          ("input_size", args.input_size),
                                                          ("widths", args.widths)) if v is not None})
    train = AttributeTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, holdout=args.holdout,
                                 seed=args.seed)
    print(f"training on {source} ({data.images.shape[-1]} px): {', '.join(config.attributes)}")
    images = ((data.images + 1) * 127.5).round().clamp(0, 255).to("cpu").byte()  # uint8: a quarter the memory
    model, report = train_attribute_regressor(images, data.values(config.attributes), config, train, device,
                                              progress=not args.quiet)
    report["data"] = source
    if framings is not None:
        report["framings"] = framings
    out = save_regressor(model, args.output, report)
    held = report["holdout"] or report["train"]
    print(f"{'attribute':16}{'R²':>8}{'MAE':>9}{'acc.':>8}   ({'held out' if report['holdout'] else 'training'})")
    for name, r in held.items():
        if r["kind"] == "binary":
            print(f"{name:16}{'':8}{'':9}{r['accuracy']:8.3f}")
        else:
            print(f"{name:16}{r['r2']:8.3f}{r['mae']:9.4f}")
    mean_r2, mean_acc = report["mean_r2"], report["mean_accuracy"]
    print(f"mean R² {mean_r2 if mean_r2 is None else f'{mean_r2:.3f}'}, mean accuracy "
          f"{mean_acc if mean_acc is None else f'{mean_acc:.3f}'}; wrote {out} (config.json, model.safetensors, "
          "training_report.json)")
    for name in report["unlearned"]:
        r = held[name]
        read = f"accuracy {r['accuracy']:.3f}" if r["kind"] == "binary" else f"R² {r['r2']:.3f}"
        print(f"warning: the regressor did not learn {name} ({read} {'held out' if report['holdout'] else 'on training'}"
              f"): give it more --steps, a lower --lr, or train it with other attributes (a few-pixel attribute such as "
              f"the smile is learnt late, and sooner next to others)", file=sys.stderr)
    return 0


def _int_list(text: str) -> list:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _framing_list(text: str) -> list:
    """``--framing portrait,face`` -> ``["portrait", "face"]`` (each a FRAMINGS name, each once)."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in FRAMING_NAMES]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated framings, each once, from "
                                         f"{', '.join(FRAMING_NAMES)}; got {text!r}")
    return names


def add_commands(sub) -> None:
    """Register ``evaluate`` and ``train-attributes`` on the ``hyperinverter`` sub-command parser."""
    p = sub.add_parser("evaluate", help="compare inversion methods on a folder of images: reconstruction metrics, "
                                        "editability, runtime -> results.md/.json/.csv + grids",
                       epilog=EVALUATE_EPILOG)
    from ..pretrained import DEFAULT_MODEL

    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"HyperInverter folder (save_pretrained) or shipped model name (default {DEFAULT_MODEL})")
    p.add_argument("--data", required=True, type=Path, help="folder of images (or one image file)")
    p.add_argument("--methods", default=",".join(METHOD_NAMES), help=f"comma-separated, from {', '.join(METHOD_NAMES)}")
    p.add_argument("--count", type=int, default=None, help="use the first N images (sorted by name)")
    p.add_argument("--batch-size", type=int, default=8, help="images per method call (default 8)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--lpips-backbone", type=Path, default=None, help="torchvision AlexNet/VGG16 ImageNet weight file")
    p.add_argument("--lpips-head", type=Path, default=None, help="lpips package head file (weights/v0.1/alex.pth)")
    p.add_argument("--id", type=Path, default=None, help="ArcFace IR-SE-50 file (model_ir_se50.pth) for ID similarity")
    p.add_argument("--inception", type=Path, default=None, help="FID Inception file (pt_inception-2015-12-05-*.pth)")
    p.add_argument("--dlib-id", action="store_true", help="dlib 128-D face descriptor similarity (needs dlib and "
                                                          "face_recognition_models)")
    p.add_argument("--steps", action="append", default=None, metavar="NAME=N",
                   help=f"optimisation steps, NAME in {', '.join(STEP_KEYS)}; e.g. w_opt=200,pti=100")
    p.add_argument("--set", action="append", default=None, metavar="METHOD.FIELD=VALUE",
                   help="any method setting, e.g. pti.pivot=w_encoder (repeatable)")
    p.add_argument("--attributes", type=Path, default=None, help="attribute regressor folder (train-attributes): "
                                                                   "turns on editability")
    p.add_argument("--directions", type=Path, default=None,
                   help="folder of <attribute>.safetensors/.npy/.pt directions (default: <model>/directions)")
    p.add_argument("--fit-directions", type=Path, default=None, metavar="FOLDER",
                   help="fit the directions on phase-I codes of these labelled portraits (saved to OUT/directions)")
    p.add_argument("--fit-count", type=int, default=2000, help="use at most N portraits of --fit-directions "
                                                                 "(default 2000)")
    p.add_argument("--edit-attributes", default=None, help="comma-separated subset of the regressor's attributes")
    p.add_argument("--edit-strength", type=float, default=None,
                   help="edit strength in W units (default: each direction's own strength)")
    p.add_argument("--runtime", action="store_true", help="also time each method at batch sizes 1 and 8")
    p.add_argument("--examples", type=int, default=8, help="images shown in the example grids")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier evaluation in the output folder (default: refuse, "
                        "listing them; an input is never replaced)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train-attributes", help="train the portrait attribute regressor used by "
                                                "'evaluate --attributes' (held-out R² / accuracy reported)")
    p.add_argument("--data", type=Path, default=None, help="folder of labelled portraits ('data portraits' output)")
    p.add_argument("--render", type=int, default=None, metavar="N", help="instead of --data: render N portraits")
    p.add_argument("--framing", type=_framing_list, default=None, metavar="NAME[,NAME]",
                   help=f"with --render: the framing of the portraits ({', '.join(FRAMING_NAMES)}), or several "
                        "separated by commas to split the N portraits evenly between them (one regressor for "
                        "models of every framing); default: portrait. Not with --data (its portraits keep the "
                        "framing they were written in)")
    p.add_argument("--count", type=int, default=None, help="use at most N portraits of --data")
    p.add_argument("--size", type=int, default=None, help="load / render the portraits at this side (default: as "
                                                          "stored; 64 for --render)")
    p.add_argument("--attributes", nargs="+", default=None, help="attributes to predict (default: smile yaw "
                                                                 "hair_lightness glasses tilt skin_tone ...; 'all': "
                                                                 "every attribute the renderer draws)")
    p.add_argument("--input-size", type=int, default=None, help="network input side (default 64)")
    p.add_argument("--widths", type=_int_list, default=None, help="channels per stage, e.g. 32,64,128,128")
    p.add_argument("--steps", type=int, default=3000, help="Adam steps")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction held out for R² / accuracy")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, batches and hold-out split")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a regressor already in the output folder (default: refuse; a file of --data is "
                        "never replaced)")
    p.set_defaults(func=cmd_train_attributes)
