"""The ``hyperinverter`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from . import __version__

#: Modules that define sub-commands (``add_commands(subparsers)``), in the order ``--help`` lists them.
COMMAND_MODULES = (".demo.cli", ".faces.cli", ".evaluation.cli", ".serve.cli", ".convert.cli", ".video.cli")


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, part)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid seed list {text!r} (use e.g. 0-7 or 1,5,9)") from None
    if not seeds:
        raise argparse.ArgumentTypeError("the seed list is empty")
    return seeds


def cmd_generate(args: argparse.Namespace) -> int:
    from .devices import choose_device
    import torch

    from .utils.images import make_grid, save_image
    from .workflows import generator_from

    from .utils.outputs import OutputPlan, check_writable

    if args.generator is None:
        raise ValueError("generate: no generator given; use --model NAME_OR_FOLDER (e.g. --model portraits64) or "
                         "--generator FILE (.pkl, .pt, .safetensors)")
    _check_batch_size(args.batch_size)
    plan = OutputPlan(inputs=[Path(args.generator)], overwrite=args.overwrite)
    plan.add(args.output)
    plan.check()
    check_writable(args.output.parent)
    device = choose_device(args.device)
    G, source = generator_from(args.generator, device=device)
    print(f"generator: {source}; {G.img_resolution}px, num_ws={G.num_ws}, "
          f"{sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters, device {device}")
    z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(s)) for s in args.seeds]).to(device)
    start = time.perf_counter()
    images = []
    with torch.inference_mode():
        for chunk in z.split(args.batch_size):
            images.append(G(chunk, truncation_psi=args.truncation, noise_mode=args.noise_mode).cpu())
    seconds = time.perf_counter() - start
    out = save_image(make_grid(torch.cat(images)), args.output)
    print(f"wrote {out} ({len(args.seeds)} images, seeds {args.seeds[0]}..{args.seeds[-1]}, "
          f"truncation {args.truncation}, {seconds:.2f} s)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from .stylegan2.formats import load_discriminator, load_generator

    loader = load_discriminator if args.network == "discriminator" else load_generator
    _plan_pretrained_folder(args.output, [args.source], args.overwrite)
    model = loader(args.source)
    out = model.save_pretrained(args.output, dtype=torch.float16 if args.fp16 else None)
    print(f"wrote {out} ({type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params)")
    return 0


def _require_existing(paths) -> None:
    """Named inputs that do not exist stop the command before any model is loaded (one line)."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{missing[0]}: file not found{more}")


def _steps_arg(text: str) -> int:
    """argparse type: a whole number of steps >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of steps >= 0, got {text!r}")
    return value


def _check_batch_size(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"--batch-size must be a positive whole number, got {value}")


def _plan_pretrained_folder(folder: Path, inputs, overwrite: bool, sub: tuple = ()) -> None:
    """Refuse (before any work) a save_pretrained folder whose files exist (without --overwrite) or are inputs."""
    from .checkpoints import CONFIG_NAME, WEIGHTS_NAME
    from .utils.outputs import OutputPlan, check_writable

    srcs = []
    for p in inputs:
        p = Path(p)
        srcs += [p, p / CONFIG_NAME, p / WEIGHTS_NAME] if p.is_dir() else [p]
    plan = OutputPlan(inputs=srcs, overwrite=overwrite)
    for folder_ in (Path(folder), *(Path(folder) / s_ for s_ in sub)):
        plan.add_folder_files(folder_, [CONFIG_NAME, WEIGHTS_NAME])
    plan.check()
    check_writable(folder)


def _print_skipped(path, reason: str) -> None:
    print(f"skipped: {path}: {reason}", file=sys.stderr)


def _print_notes(notes: dict) -> None:
    for path, items in notes.items():
        for note in items:
            print(f"note: {path}: {note}")


def _domain_warnings(model_spec, names, psnrs, align: bool = False) -> None:
    """One line per input far outside the model's domain (and one for --align with a model not trained on
    aligned faces); nothing for a model without a domain record (see hyperinverter.domain)."""
    from .domain import load_domain, outside_messages

    record = load_domain(model_spec)
    if record is None:
        return
    if align and record.align_message():
        print(f"warning: {record.align_message()}")
    for line in outside_messages(record, names, psnrs):
        print(f"warning: {line}")


def cmd_invert(args: argparse.Namespace) -> int:
    """``invert``: one process, or every process of a ``torchrun`` job (inputs shared, one summary)."""
    from .utils.distributed import inference_group

    group = inference_group()
    try:
        return _invert(args, group)
    finally:
        group.close()


def _invert(args: argparse.Namespace, group) -> int:
    from .workflows import load_model
    from tqdm import tqdm

    from .pretrained import resolve
    from .utils.image_io import iter_image_paths
    from .workflows import check_invert_args, invert_files, plan_invert_outputs

    main_only = group.is_main
    if args.codes is None:
        args.codes = "half" if args.refine else "compact"
    error, paths, device, align_names = None, [], None, None
    try:  # every process checks; one message (from process 0) when any of them fails, before any work
        resolve(args.model)  # a missing model is named first (cheap; loading comes after the output checks)
        _require_existing(args.images)
        _check_batch_size(args.batch_size)
        check_invert_args(args.batch_size, args.codes, args.refine)
        if args.align and (group.distributed or args.resume):
            raise ValueError("--align does not combine with torchrun or --resume: run 'hyperinverter align PHOTOS -o "
                             "CROPS' first, then invert the crops")
        paths = iter_image_paths(args.images, skipped=_print_skipped if main_only else None)
        if not args.align:  # refuse clobbering before the model is even loaded
            plan_invert_outputs(paths, args.output, args.overwrite, args.resume)
        else:  # the crops and records in <output>/aligned and the crops' inversions, checked together
            from .faces.cli import plan_invert_align

            align_names = plan_invert_align(paths, args.output, args.overwrite)
        device = group.device(args.device)
    except Exception as e:  # noqa: BLE001 - raised again by agree() (on process 0)
        error = e
    group.agree(error)
    model = load_model(args.model, device, verbose=main_only)
    align_failed = []
    if args.align:  # cut out each photo's face first (crops + JSON in <output>/aligned); the crops are inverted
        from .faces.cli import align_files, check_crop_inversions

        aligned = align_files(paths, args.output / "aligned", model.resolution, landmarks=args.landmarks,
                              names=align_names)
        check_crop_inversions(paths, aligned.crops, args.output)  # never a photo, even with --overwrite
        align_failed, paths = aligned.failed, aligned.crops
        for _, message in align_failed:
            print(f"skipped: {message}", file=sys.stderr)
    with tqdm(total=len(paths), unit="img", desc="inverting", disable=args.quiet or not main_only) as bar:
        report = invert_files(model, paths, args.output, batch_size=args.batch_size, device=device,
                              progress=bar.update, overwrite=args.overwrite, codes_format=args.codes,
                              resume=args.resume, group=group, refine_steps=args.refine)
    failed = 1 if report.failed or align_failed else 0
    if not main_only:  # the summary and the exit status are process 0's: torchrun then stops no process early
        return 0
    _print_notes(report.notes)
    for path, message in report.failed:
        print(f"skipped: {message}", file=sys.stderr)
    _domain_warnings(args.model, [p.name for p in report.phase1_psnr], report.phase1_psnr.values(), args.align)
    kept = f"; {len(report.finished)} already done (kept)" if args.resume else ""
    where = f" by {group.world_size} processes" if group.distributed else ""
    print(f"wrote {len(report.written)} inversions to {args.output}{where} (<name>.png, <name>_w.png, "
          f"<name>.codes.safetensors, {args.codes} codes); {len(report.failed) + len(align_failed)} skipped{kept}")
    return failed


def cmd_edit(args: argparse.Namespace) -> int:
    from .workflows import load_model
    from .devices import choose_device
    import torch

    from .domain import phase1_psnr
    from .editing import load_direction_file
    from .workflows import (find_direction, input_stem, is_codes_file, load_inversion, make_grid, parse_layers,
                            save_image)

    import math

    from .utils.outputs import OutputPlan, check_writable

    bad = [s_ for s_ in args.strength if not math.isfinite(s_)]
    if bad:
        raise ValueError(f"--strength must be finite numbers, got {', '.join(str(b) for b in bad)}")
    _require_existing([args.image])
    direction_path = find_direction(args.direction, args.model)
    from_codes = is_codes_file(args.image)  # a codes file of 'invert': rendered, not inverted again
    if from_codes and args.align:
        raise ValueError(f"{args.image}: --align needs a photo, not a codes file")
    if from_codes and args.refine:
        raise ValueError(f"{args.image}: --refine tunes an inversion of an image; this is a codes file (refine it "
                         f"with 'invert --refine N')")
    name, tag = input_stem(args.image), direction_path.stem
    plan = OutputPlan(inputs=[args.image, direction_path], overwrite=args.overwrite)
    for strength in args.strength:
        plan.add(args.output / f"{name}_{tag}_{strength:+g}.png", f"--strength {strength:g}")
        if args.align:
            plan.add(args.output / f"{name}_{tag}_{strength:+g}_photo.png", f"--strength {strength:g}")
    plan.add(args.output / f"{name}_{tag}_strip.png")
    if args.align:
        plan.add_folder_files(args.output, [f"{name}_aligned.png", f"{name}_aligned.json"])
    plan.check()
    check_writable(args.output)
    device = choose_device(args.device)
    model = load_model(args.model, device)
    direction = load_direction_file(direction_path, model.generator.w_dim, model.num_ws)
    layers = parse_layers(args.layers) or direction.layers  # the direction's own rows unless --layers says
    face = None
    if args.align:  # invert the photo's aligned face; every edit is also pasted back into the photo
        from .faces.cli import align_one, save_pasted

        face, photo, crop = align_one(args.image, args.output, model.resolution, args.landmarks)
    result, x, notes = load_inversion(crop if face is not None else args.image, model, device)
    _print_notes({args.image: notes})
    if x is not None:
        _domain_warnings(args.model, [args.image.name], phase1_psnr(x, result.image_w).tolist(), args.align)
    if args.refine:  # w stays: the edits below move it and keep the tuned weights
        from .tuning import refine

        result = refine(model, x, result, steps=args.refine)
    edits = []
    vector = direction.vector.to(device)
    for strength in args.strength:  # in units of the direction's default step (editing.STRENGTH_HELP)
        edited = model.edit(result, vector, direction.step(strength), layers=layers)
        out = save_image(make_grid(edited.image, padding=0), args.output / f"{name}_{tag}_{strength:+g}.png")
        edits.append(edited.image)
        print(f"wrote {out}")
        if face is not None:
            print(f"wrote {save_pasted(face, photo, edited.image, args.output / f'{name}_{tag}_{strength:+g}_photo')}")
    strip = torch.cat(([] if from_codes else [x]) + [result.image_w, result.image, *edits]).cpu()
    out = save_image(make_grid(strip, columns=strip.shape[0]), args.output / f"{name}_{tag}_strip.png")
    label = f"HyperInverter + refine {args.refine}" if args.refine else "HyperInverter"
    print(f"wrote {out} ({'' if from_codes else 'input | '}phase I | {label} | edits at strengths "
          f"{args.strength})")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .workflows import load_model
    from .devices import choose_device
    import torch

    from .utils.outputs import OutputPlan, check_writable
    from .workflows import is_codes_file, load_inversion, load_single, make_grid, save_image, write_gif, write_video

    if isinstance(args.steps, bool) or args.steps < 2:
        raise ValueError(f"--steps must be at least 2, got {args.steps}")
    _require_existing([args.image_a, args.image_b])
    plan = OutputPlan(inputs=[args.image_a, args.image_b], overwrite=args.overwrite)
    plan.add_folder_files(args.output, [f"frame_{i:03d}.png" for i in range(args.steps)] +
                          ["strip.png", "interpolation.gif"] + (["interpolation.mp4"] if args.mp4 else []))
    plan.check()
    check_writable(args.output)
    device = choose_device(args.device)
    model = load_model(args.model, device)
    if is_codes_file(args.image_a) or is_codes_file(args.image_b):  # codes of 'invert': loaded, not inverted
        (a, _, notes_a), (b, _, notes_b) = (load_inversion(p, model, device) for p in (args.image_a, args.image_b))
    else:  # two images: inverted in one batch
        xa, notes_a = load_single(args.image_a, model.resolution)
        xb, notes_b = load_single(args.image_b, model.resolution)
        both = model.invert(torch.cat([xa, xb]).to(device))
        a, b = both[0], both[1]
    _print_notes({args.image_a: notes_a, args.image_b: notes_b})
    frames = model.interpolate(a, b, steps=args.steps).image.cpu()
    args.output.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        save_image(make_grid(frame[None], padding=0), args.output / f"frame_{i:03d}.png")
    save_image(make_grid(frames, columns=len(frames)), args.output / "strip.png")
    gif = write_gif(frames, args.output / "interpolation.gif", duration_ms=args.frame_ms)
    print(f"wrote {len(frames)} frames, strip.png and {gif}")
    if args.mp4:
        print(f"wrote {write_video(frames, args.output / 'interpolation.mp4', fps=1000 / args.frame_ms)}")
    return 0


def cmd_convert_official(args: argparse.Namespace) -> int:
    import torch

    from .convert.official import load_official

    _plan_pretrained_folder(args.output, [args.hyperinverter, args.w_encoder, args.generator], args.overwrite,
                            ("discriminator",) if args.with_discriminator else ())
    loaded = load_official(args.hyperinverter, args.w_encoder, args.generator)
    out = loaded.model.save_pretrained(args.output, dtype=torch.float16 if args.fp16 else None)
    if loaded.discriminator is not None and args.with_discriminator:
        loaded.discriminator.save_pretrained(Path(args.output) / "discriminator")
    counts = loaded.model.parameter_counts()
    print(f"wrote {out}: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in counts.items()))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from .train import get_trainer, load_train_config, to_yaml

    config = load_train_config(args.kind, args.config, args.overrides)
    if args.dry_run:
        print(to_yaml(config, args.kind), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    trainer = get_trainer(args.kind)(config, resume=args.resume, progress=not args.quiet)
    try:
        last = trainer.run()
    finally:
        trainer.close()
    if trainer.env.is_main:
        print(f"stopped at step {trainer.step}/{config.run.steps}; outputs in {config.run.out_dir} "
              f"({', '.join(f'{k}={v:.4g}' for k, v in last.items())})")
    return 0


def cmd_directions(args: argparse.Namespace) -> int:
    from .editing import (Direction, compute_ganspace, fit_interfacegan, labelled_codes, save_direction,
                          save_ganspace, sefa_directions)
    from .workflows import generator_from

    from .utils.outputs import OutputPlan, check_writable

    if args.action == "fit-portraits":
        return _fit_portrait_directions(args)
    if args.action == "refine":
        return _refine_directions(args)
    out = Path(args.output)

    def planned(names, inputs=()):  # refuse clobbering before the work (save_direction writes .safetensors + .json)
        plan = OutputPlan(inputs=inputs, overwrite=args.overwrite)
        for n in names:
            if n.endswith(".npz"):
                plan.add(out / n)
            elif out.suffix == ".safetensors":
                plan.add(out), plan.add(out.with_suffix(".json"))
            else:
                plan.add_folder_files(out, [f"{n}.safetensors", f"{n}.json"])
        plan.check()
        check_writable(out.parent if out.suffix == ".safetensors" else out)

    if args.action == "fit":
        planned([args.name or args.attribute], [args.labels])
        codes, labels = labelled_codes(args.codes, args.labels, args.attribute)
        direction, report = fit_interfacegan(codes, labels, method=args.method, name=args.name or args.attribute)
        path = save_direction(direction, out)
        print(f"wrote {path} from {len(codes)} codes; held-out accuracy {report.get('holdout_accuracy')}")
        return 0
    if args.action == "pca":
        planned(["ganspace.npz"] + [f"pc{k:02d}" for k in range(args.num)], [Path(args.generator)])
    else:
        planned([f"sefa{k:02d}" for k in range(args.num)], [Path(args.generator)])
    G, source = generator_from(args.generator)
    print(f"generator: {source} ({G.img_resolution}px, w_dim {G.w_dim})")
    out.mkdir(parents=True, exist_ok=True)
    if args.action == "pca":
        pca = compute_ganspace(G, num_samples=args.samples, num_components=args.num)
        path = save_ganspace(pca, out / "ganspace.npz")
        for k in range(args.num):
            save_direction(Direction(f"pc{k:02d}", pca.components[k] * pca.stdev[k], kind="ganspace",
                                     description={"component": k, "stdev": float(pca.stdev[k])}), out)
        print(f"wrote {path} and {args.num} directions pcNN (one standard deviation each) to {out}")
    else:
        sefa = sefa_directions(G, num=args.num)
        for k in range(args.num):
            save_direction(Direction(f"sefa{k:02d}", sefa.directions[k], kind="sefa",
                                     description={"eigenvalue": float(sefa.eigenvalues[k])}), out)
        print(f"wrote {args.num} SeFa directions sefaNN to {out}")
    return 0


def _fit_portrait_directions(args: argparse.Namespace) -> int:
    from .devices import choose_device
    from tqdm import tqdm

    from .demo.directions import DEMO_ATTRIBUTES, encode_portraits, fit_portrait_directions, latent_codes
    from .domain import portrait_framing
    from .editing import save_direction
    from .inverter import HyperInverter
    from .pretrained import resolve

    from .checkpoints import CONFIG_NAME, WEIGHTS_NAME
    from .utils.outputs import OutputPlan, check_writable

    if not args.strength_sigmas > 0:  # fit_portrait_directions checks it too; here before the rendering and encoding
        raise ValueError(f"--strength-sigmas must be > 0, got {args.strength_sigmas}")
    model_dir = resolve(args.model)
    attributes = args.attributes or list(DEMO_ATTRIBUTES)
    out = Path(args.output) if args.output else model_dir / "directions"
    # before any work: never the model's own files, existing directions only with --overwrite
    plan = OutputPlan(inputs=[model_dir / CONFIG_NAME, model_dir / WEIGHTS_NAME], overwrite=args.overwrite)
    for a in attributes:
        plan.add_folder_files(out, [f"{a}.safetensors", f"{a}.json"], what=f"--attributes {a}")
    plan.check()
    model = HyperInverter.from_pretrained(model_dir, device=choose_device(args.device))
    framing = portrait_framing(model_dir)  # the portraits the model was trained on (domain.json)
    if args.codes == "generator":  # a second: before the output folder is made, so a refusal leaves nothing
        data = latent_codes(model.generator, args.count, framing=framing)
        print(f"the generator's codes of {args.count} renderer latents (labels from attributes_from_latent)")
    check_writable(out)
    if args.codes == "phase1":
        print(f"rendering {args.count} training-split portraits in the model's {framing} framing")
        with tqdm(total=args.count, unit="img", desc="render + encode") as bar:
            data = encode_portraits(model, args.count, progress=bar.update, framing=framing)
    for direction, report in fit_portrait_directions(data, attributes, method=args.method,
                                                     strength_sigmas=args.strength_sigmas,
                                                     conditional=args.conditional):
        if report["holdout_accuracy"] < args.min_accuracy:  # a direction that W does not hold: not shipped
            # an earlier file of it (only there with --overwrite, which the plan checked) would outlive the
            # refusal and keep being offered: it goes, as the files it was to be replaced by would have
            stale = [p for p in (out / f"{direction.name}.safetensors", out / f"{direction.name}.json") if p.exists()]
            for p in stale:
                p.unlink()
            print(f"{direction.name}: held-out accuracy {report['holdout_accuracy']:.3f} < --min-accuracy "
                  f"{args.min_accuracy}: not written"
                  + (f"; removed the earlier {direction.name} files" if stale else ""))
            continue
        path = save_direction(direction, out)
        print(f"{direction.name}: held-out accuracy {report['holdout_accuracy']:.3f}, default strength "
              f"{direction.strength:.3f} -> {path}")
    return 0


def _refine_directions(args: argparse.Namespace) -> int:
    import torch

    from .devices import choose_device
    from .editing import (DIRECTION_FILE_SUFFIXES, DirectionError, DirectionRefineConfig, load_direction_file,
                          refine_direction, save_direction)
    from .evaluation.attributes import AttributeRegressor
    from .inverter import HyperInverter
    from .pretrained import resolve
    from .stylegan2.residuals import cat_residuals
    from .utils.outputs import OutputPlan, check_writable

    model_dir = resolve(args.model)
    start_dir = Path(args.directions) if args.directions else model_dir / "directions"
    out = Path(args.output)
    given = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "target_change": args.target_change,
             "seed": args.seed, "strength_sigmas": args.strength_sigmas}
    config = DirectionRefineConfig(**{k: v for k, v in given.items() if v is not None}).check()
    names = args.attributes
    # before any work: the start files are inputs (never written over), the outputs need --overwrite to replace
    starts = {n: next((start_dir / f"{n}{ext}" for ext in DIRECTION_FILE_SUFFIXES
                       if (start_dir / f"{n}{ext}").exists()), None) for n in names}
    missing = [n for n, p in starts.items() if p is None]
    if missing:
        raise DirectionError(f"no direction {missing} in {start_dir} (--directions: the directions to start from)")
    plan = OutputPlan(inputs=[start_dir / f"{n}{ext}" for n in names for ext in DIRECTION_FILE_SUFFIXES],
                      overwrite=args.overwrite)
    for n in names:
        plan.add_folder_files(out, [f"{n}.safetensors", f"{n}.json"], what=f"--attributes {n}")
    plan.check()
    device = choose_device(args.device)
    model = HyperInverter.from_pretrained(model_dir, device=device).requires_grad_(False)
    regressor = AttributeRegressor.from_pretrained(args.regressor).to(device).eval().requires_grad_(False)
    unknown = [n for n in names + (args.entangled or []) if n not in regressor.attributes]
    if unknown:
        raise ValueError(f"{args.regressor}: the regressor does not predict {unknown} (it predicts "
                         f"{', '.join(regressor.attributes)})")
    directions = {n: load_direction_file(starts[n], model.generator.w_dim, model.num_ws) for n in names}
    images, what = _refine_images(args, model, model_dir)
    check_writable(out)
    print(f"inverting {len(images)} {what}")
    chunk = config.batch_size
    parts = [model.invert(images[i:i + chunk].to(device), batch_size=chunk) for i in range(0, len(images), chunk)]
    # inference tensors -> ordinary ones (autograd saves them for the steps' backward passes)
    ws = torch.cat([p.ws for p in parts]).clone()
    deltas = cat_residuals([p.deltas for p in parts]).clone()
    render = lambda w, index: model.render(w, deltas.select(index))  # noqa: E731
    for name in names:
        # the columns the loss reads: the edited attribute first, then those whose movement is entanglement
        others = [a for a in (args.entangled or regressor.attributes) if a != name]
        columns = [regressor.attributes.index(a) for a in [name] + others]
        predict = lambda x, c=columns: regressor.predict_normalized(x)[:, c]  # noqa: E731
        direction, report = refine_direction(
            directions[name], ws, ws[:, 0], render, predict, 0, config,
            progress=lambda step, m: print(f"  {name} step {step}: target change {m['target_change']:.4f}, "
                                           f"entanglement {m['entanglement']:.4f}", flush=True))
        summary = {k: v for k, v in report.items() if k != "history"}
        direction.description.update({"refined": {**summary, "regressor": str(args.regressor),
                                                  "entangled": others, "images": what,
                                                  "start_file": starts[name].name}})
        direction.description["source"] = (direction.description.get("source", "") +
                                           f"; refined on {len(images)} inversions ({what})").lstrip("; ")
        path = save_direction(direction, out)
        a, b = report["start"], report["result"]
        print(f"{name}: held-out target change {a['target_change']:.4f} -> {b['target_change']:.4f} (goal "
              f"{report['goal']:.4f}), entanglement "
              f"{a['entanglement']:.4f} -> {b['entanglement']:.4f} (step {report['kept_step']}, cosine to the start "
              f"{report['cosine_to_start']:.3f}, default strength {direction.strength:.3f}) -> {path}")
    return 0


def _refine_images(args: argparse.Namespace, model, model_dir: Path):
    """The training images of ``directions refine``: ``--images`` or freshly rendered training-split portraits."""
    if args.images:
        from .utils.image_io import iter_image_paths, load_images

        batch, _, _, _ = load_images(iter_image_paths(args.images), model.resolution, on_error="raise")
        if batch is None:
            raise ValueError(f"--images: no image files in {', '.join(map(str, args.images))}")
        return batch, f"images of {', '.join(map(str, args.images))}"
    from .domain import portrait_framing
    from .evaluation.attributes import render_labelled_portraits

    framing = portrait_framing(model_dir)
    batch = render_labelled_portraits("train", args.count, size=model.resolution, start=args.start,
                                      framing=framing).images
    return batch, f"training-split portraits (seeds {args.start}..{args.start + args.count - 1}, {framing} framing)"


def cmd_data_portraits(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import numpy as np

    from .portraits import split_seeds, sweep_latents, write_portraits
    from .utils.outputs import OutputPlan, check_writable

    latents, what = None, f"{args.split} seeds from {args.start}"
    if args.sweep_bases and not args.sweep:
        raise ValueError("--sweep-bases needs --sweep ATTRIBUTE=V1,V2,...")
    if args.latents:
        latents = np.random.default_rng(args.start).standard_normal([args.count, args.latents]).astype(np.float32)
        what = f"from {args.latents}-d Gaussian latents, numpy seed {args.start}; latents.npy"
    if args.sweep:  # before anything is written: a malformed sweep, or an attribute no entry decides, is refused
        if not args.latents or not args.sweep_bases:
            raise ValueError("--sweep needs --latents Z_DIM and --sweep-bases N")
        attribute, _, raw = args.sweep.partition("=")
        try:
            values = [float(v) for v in raw.split(",")]
            base = np.random.default_rng(args.start + 1).standard_normal([args.sweep_bases, args.latents])
            latents = np.concatenate([latents, sweep_latents(base, attribute, values)])
        except ValueError as e:
            raise ValueError(f"--sweep {args.sweep}: {e} (expected ATTRIBUTE=V1,V2,...)") from None
        what += (f"; then {args.sweep_bases} bases (numpy seed {args.start + 1}) x {attribute} entry = "
                 f"{', '.join(map(str, values))}")
    total = args.count if latents is None else len(latents)
    # Every file is planned before any work: existing portraits and labels are replaced only with --overwrite.
    seeds = range(total) if args.latents else split_seeds(args.split, args.count, args.start)
    plan = OutputPlan(overwrite=args.overwrite)
    plan.add_folder_files(args.output, [f"{seed:07d}.png" for seed in seeds] + ["labels.json", "labels.csv"]
                          + (["latents.npy"] if args.latents else []))
    plan.check()
    check_writable(args.output)
    with tqdm(total=total, unit="img", desc=f"portraits ({args.split})", disable=args.quiet) as bar:
        out = write_portraits(args.output, total, split=args.split, size=args.size, start=args.start,
                              workers=args.workers, progress=lambda n: bar.update(n - bar.n), latents=latents,
                              framing=args.framing)
    print(f"wrote {total} {args.size}px portraits, {args.framing} framing ({what}) and labels.json/labels.csv "
          f"to {out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .workflows import model_info

    print(json.dumps(model_info(args.source, args.network), indent=2))
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the text already says it or there is none to say;
    descriptions and epilogs are printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        shown = " ".join(str(v) for v in default) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help (and its sub-commands' help) shows defaults (see :class:`_HelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .demo.names import DEMO_ATTRIBUTES, FRAMING_NAMES
    from .editing.strength import STRENGTH_HELP

    parser = _Parser(prog="hyperinverter", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hyperinverter {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="render a grid of images from a StyleGAN2 generator or a model's generator")
    p.add_argument("--model", "-m", "--generator", "-g", dest="generator", default=None, metavar="MODEL_OR_FILE",
                   help="a model name or folder (e.g. portraits64, faces-hd128: its generator) or a generator file "
                        "or folder (NVIDIA .pkl, .pt/.pth, .safetensors, save_pretrained folder); required")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-15"),
                   help="latent seeds, e.g. 0-15 or 1,4,9 (default 0-15)")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi (1 = off)")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const",
                   help="per-pixel noise: the stored constant buffers, fresh random noise, or none")
    p.add_argument("--batch-size", type=int, default=8, help="images per generator pass")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--output", "-o", type=Path, default=Path("out/generate/grid.png"), help="grid PNG to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("convert",
                       help="convert a generator/discriminator file to our format (config.json + safetensors)")
    p.add_argument("source", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--network", choices=["generator", "discriminator"], default="generator",
                   help="which network of the file to read")
    p.add_argument("--fp16", action="store_true", help="store tensors in float16 (half the size)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an existing output folder")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("convert-official", help="convert the official HyperInverter model-zoo files to our format")
    p.add_argument("hyperinverter", type=Path, help="official HyperInverter checkpoint (.pt)")
    p.add_argument("--w-encoder", type=Path, required=True, help="official W-encoder checkpoint (.pt)")
    p.add_argument("--generator", type=Path, required=True, help="StyleGAN2 generator (.pkl, .pt, ...)")
    p.add_argument("output", type=Path)
    p.add_argument("--fp16", action="store_true", help="store tensors in float16 (half the size)")
    p.add_argument("--with-discriminator", action="store_true", help="also save the fine-tuned discriminator")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an existing output folder")
    p.set_defaults(func=cmd_convert_official)

    def refine_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--refine", type=_steps_arg, default=0, metavar="N",
                       help="after the encoder pass, N steps of per-image generator tuning (PTI's recipe from "
                            "HyperInverter's w and weights; w stays, so edits still work; default 0 = none)")

    def model_args(p: argparse.ArgumentParser) -> None:
        from .pretrained import DEFAULT_MODEL

        p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                       help=f"folder written by save_pretrained/convert, or a shipped model name "
                            f"(default {DEFAULT_MODEL})")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")

    p = sub.add_parser("invert", help="invert images: reconstruction, phase-I image and codes per image")
    p.add_argument("images", nargs="+", type=Path, help="image files or folders")
    model_args(p)
    p.add_argument("--output", "-o", type=Path, default=Path("out/invert"),
                   help="folder for <name>.png, <name>_w.png and <name>.codes.safetensors")
    p.add_argument("--batch-size", type=int, default=8, help="images per encoder pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--align", action="store_true", help="FFHQ-align the face of each photo first (dlib)")
    p.add_argument("--landmarks", type=Path, default=None, help="dlib 68-landmark model file for --align")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--resume", action="store_true",
                   help="keep existing outputs and write only the missing ones (after an interruption)")
    p.add_argument("--codes", choices=["compact", "half", "full"], default=None,
                   help="codes file format: compact = per-layer codes, a few KB (read back with the same model; "
                        "the default), half / full = dense residuals in float16 / float32 (self-contained, MB; "
                        "half is the default with --refine)")
    refine_arg(p)
    p.set_defaults(func=cmd_invert)

    p = sub.add_parser("edit", help="invert an image and move its w along a direction (residuals kept)")
    p.add_argument("image", type=Path, help="an image, or a <name>.codes.safetensors written by 'invert' (any "
                                            "--codes format; the same --model)")
    model_args(p)
    p.add_argument("--direction", required=True, help="direction file (.npy/.pt/.safetensors) or a name from the "
                                                      "model's directions/ folder")
    p.add_argument("--strength", type=float, nargs="+", default=[-1.0, 1.0],
                   help="one or more strengths (default -1 1): " + STRENGTH_HELP)
    p.add_argument("--layers", default=None, help="rows of ws to move, 'first:stop' (default: the direction's own "
                                                  "rows, else all)")
    p.add_argument("--output", "-o", type=Path, default=Path("out/edit"), help="folder for the edits and the strip")
    p.add_argument("--align", action="store_true", help="FFHQ-align the photo's face first (dlib) and also write "
                                                        "each edit pasted back into the photo (<name>_..._photo)")
    p.add_argument("--landmarks", type=Path, default=None, help="dlib 68-landmark model file for --align")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    refine_arg(p)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("interpolate", help="interpolate between two images (w and residuals): frames + GIF")
    p.add_argument("image_a", type=Path, help="an image, or a <name>.codes.safetensors written by 'invert'")
    p.add_argument("image_b", type=Path, help="an image, or a <name>.codes.safetensors written by 'invert'")
    model_args(p)
    p.add_argument("--steps", type=int, default=8, help="frames from the first image to the second, both included")
    p.add_argument("--frame-ms", type=int, default=80, help="GIF frame duration")
    p.add_argument("--mp4", action="store_true", help="also write interpolation.mp4 (H.264; hyperinverter[media])")
    p.add_argument("--output", "-o", type=Path, default=Path("out/interpolate"),
                   help="folder for the frames, strip.png and the GIF")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("train", help="train a StyleGAN2 (gan), a W-encoder (w-encoder) or the hypernetworks "
                                     "(hypernet); runs under torchrun as well")
    p.add_argument("kind", choices=["gan", "gan-teacher", "w-encoder", "hypernet"])
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. run.steps=500")
    p.add_argument("--config", "-c", default=None,
                   help="YAML preset: a file of yours, or the name of a preset shipped in the package "
                        "(e.g. hypernet_faces; see hyperinverter/configs/)")
    p.add_argument("--resume", action="store_true", help="continue from <run.out_dir>/checkpoints/latest.pt")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("directions", help="edit directions: fit InterFaceGAN boundaries, GANSpace PCA, SeFa")
    dsub = p.add_subparsers(dest="action", required=True)
    q = dsub.add_parser("fit", help="fit a boundary from inverted codes (hyperinverter invert) and a labels CSV")
    q.add_argument("--codes", type=Path, required=True, help="folder of <name>.codes.safetensors")
    q.add_argument("--labels", type=Path, required=True, help="CSV with a 'file' column and attribute columns")
    q.add_argument("--attribute", required=True, help="the CSV column to fit a direction for")
    q.add_argument("--method", choices=["svm", "logistic"], default="svm",
                   help="linear classifier whose normal is the direction (InterFaceGAN: svm)")
    q.add_argument("--name", default=None, help="file name of the direction (default: the attribute)")
    q.add_argument("--output", "-o", type=Path, default=Path("out/directions"), help="folder for the direction")
    q.add_argument("--overwrite", action="store_true", help="replace existing direction files")
    q = dsub.add_parser("fit-portraits", help="fit boundaries for portrait attributes (the demo domain) from "
                                              "freshly rendered, exactly labelled portraits")
    q.add_argument("--model", "-m", required=True, help="HyperInverter folder or shipped name (its E1 gives w)")
    q.add_argument("--attributes", nargs="+", default=None,
                   help=f"portrait attributes to fit (default: {' '.join(DEMO_ATTRIBUTES)})")
    q.add_argument("--count", type=int, default=2000, help="training-split portraits to render (in the framing the "
                                                             "model's domain.json records) and encode")
    q.add_argument("--method", choices=["svm", "logistic"], default="svm",
                   help="linear classifier whose normal is the direction (InterFaceGAN: svm)")
    q.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    q.add_argument("--output", "-o", type=Path, default=None, help="default: <model>/directions")
    q.add_argument("--overwrite", action="store_true", help="replace existing direction files")
    q.add_argument("--min-accuracy", type=float, default=0.0,
                   help="write only directions whose held-out accuracy reaches this (default 0: all)")
    q.add_argument("--codes", choices=["phase1", "generator"], default="phase1",
                   help="phase1: E1's codes of rendered portraits; generator: the generator's codes mapping(z) "
                        "of renderer latents, labelled exactly (for a generator taught by the renderer, "
                        "'train gan-teacher')")
    q.add_argument("--conditional", action="store_true",
                   help="make each direction orthogonal to the linear read-outs of every other attribute "
                        "(InterFaceGAN's conditional manipulation): edits that move the others less")
    q.add_argument("--strength-sigmas", type=float, default=2.0,
                   help="each direction's default strength: this many standard deviations of the codes along it "
                        "(default 2; an attribute drawn on few pixels, such as a smile, may want more)")
    q = dsub.add_parser("refine", help="refine directions on inversions of training images: gradient steps through "
                                       "the generator, residuals kept, that raise an attribute regressor's reading "
                                       "of the edited attribute and move the others less")
    q.add_argument("--model", "-m", required=True, help="HyperInverter folder or shipped name")
    q.add_argument("--regressor", required=True, type=Path,
                   help="attribute regressor folder ('train-attributes'); use another one to judge the result")
    q.add_argument("--attributes", nargs="+", required=True, help="the directions to refine (regressor attributes)")
    q.add_argument("--directions", type=Path, default=None,
                   help="folder of the directions to start from (default: <model>/directions)")
    q.add_argument("--output", "-o", type=Path, required=True, help="folder for the refined directions")
    q.add_argument("--images", nargs="+", type=Path, default=None,
                   help="training image files or folders (not those you evaluate on); default: render --count "
                        "training-split portraits in the model's framing (the demo domain)")
    q.add_argument("--count", type=int, default=512, help="portraits to render without --images")
    q.add_argument("--start", type=int, default=2000,
                   help="first training-split seed index of those portraits (default 2000: after the 2000 that "
                        "'fit-portraits' fits on)")
    q.add_argument("--steps", type=int, default=None, help="Adam steps per direction (default 300)")
    q.add_argument("--batch-size", type=int, default=None, help="inversions per step (default 16)")
    q.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (the direction has norm 1; default 0.003)")
    q.add_argument("--target-change", type=float, default=None,
                   help="the target change to keep or reach, on the regressor's common scale (default: the start "
                        "direction's own); the steps then lower the entanglement")
    q.add_argument("--entangled", nargs="+", default=None, metavar="ATTRIBUTE",
                   help="the regressor attributes whose movement counts as entanglement (default: all its "
                        "others; name those a user would call side effects, e.g. leave out the background)")
    q.add_argument("--strength-sigmas", type=float, default=None,
                   help="the refined direction's default strength: this many standard deviations of the "
                        "inversions' codes along it (default 2)")
    q.add_argument("--seed", type=int, default=0, help="seed of the hold-out split and the batches")
    q.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    q.add_argument("--overwrite", action="store_true", help="replace direction files already in --output")
    q = dsub.add_parser("pca", help="GANSpace components of the mapping network's w")
    q.add_argument("--generator", "-g", "--model", "-m", dest="generator", required=True, metavar="MODEL_OR_FILE",
                   help="a model name or folder (its generator) or a generator file or folder")
    q.add_argument("--num", type=int, default=16, help="principal components to keep")
    q.add_argument("--samples", type=int, default=100_000, help="random codes w the PCA is computed from")
    q.add_argument("--output", "-o", type=Path, default=Path("out/directions"), help="folder for the components")
    q.add_argument("--overwrite", action="store_true", help="replace existing direction files")
    q = dsub.add_parser("sefa", help="SeFa closed-form directions from the style (affine) weights")
    q.add_argument("--generator", "-g", "--model", "-m", dest="generator", required=True, metavar="MODEL_OR_FILE",
                   help="a model name or folder (its generator) or a generator file or folder")
    q.add_argument("--num", type=int, default=16, help="directions to keep (largest singular values first)")
    q.add_argument("--output", "-o", type=Path, default=Path("out/directions"), help="folder for the directions")
    q.add_argument("--overwrite", action="store_true", help="replace existing direction files")
    p.set_defaults(func=cmd_directions)

    p = sub.add_parser("data", help="make data sets")
    dsub = p.add_subparsers(dest="dataset", required=True)
    q = dsub.add_parser("portraits", help="render procedural portraits (the offline demo domain) with labels")
    q.add_argument("--count", type=int, required=True, help="number of portraits")
    q.add_argument("--output", "-o", type=Path, required=True, help="folder for the PNGs and labels.csv/.json")
    q.add_argument("--split", choices=["train", "val", "test"], default="train",
                   help="disjoint seed ranges: a test portrait is never a training one")
    q.add_argument("--size", type=int, default=64, help="side of each portrait in pixels")
    q.add_argument("--start", type=int, default=0, help="first seed index within the split (with --latents: the "
                                                        "numpy seed of the latents)")
    q.add_argument("--latents", type=int, default=0, metavar="Z_DIM",
                   help="draw each portrait from a Gaussian vector of this size instead of a seed (z -> portrait "
                        "pairs for training the demo generator; see attributes_from_latent); writes latents.npy")
    q.add_argument("--framing", choices=FRAMING_NAMES, default="portrait",
                   help="portrait: head and shoulders; face: the face fills the frame, as in FFHQ's alignment")
    q.add_argument("--sweep", default=None, metavar="ATTRIBUTE=V1,V2,...",
                   help="with --latents: after the --count pairs, --sweep-bases more latents, each repeated with "
                        "the latent entry that decides ATTRIBUTE set to each value (standard-normal units): "
                        "pairs that differ in that attribute alone, e.g. smile=-1.6,-0.6,0.6,1.6")
    q.add_argument("--sweep-bases", type=int, default=0, metavar="N", help="base latents of --sweep")
    q.add_argument("--workers", type=int, default=1, help="rendering processes")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--overwrite", action="store_true",
                   help="replace portraits and labels already in the output folder (default: refuse, listing them)")
    q.set_defaults(func=cmd_data_portraits)

    p = sub.add_parser("info", help="print the configuration of a model (name or folder) or of a "
                                    "generator/discriminator file")
    p.add_argument("source", help="a model name or folder, or a generator/discriminator file or folder")
    p.add_argument("--network", choices=["generator", "discriminator"], default="generator",
                   help="which network of the file to read")
    p.set_defaults(func=cmd_info)

    # Commands defined in their own modules: each has `add_commands(sub)` and imports torch only when run.
    for module in COMMAND_MODULES:
        importlib.import_module(module, __package__).add_commands(sub)
    from .runtime import add_runtime_args

    add_runtime_args(parser)  # --threads on every command; --precision, --compile, ... on the inference ones
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import HyperInverterError

    from .utils.cpu import tune_allocator

    tune_allocator()  # large tensors: keep freed blocks mapped (see utils/cpu.py)
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, also after the command
    args, extra = parser.parse_known_args([a for a in argv if a != "--debug"])
    args.debug = debug
    if extra:  # key=value overrides may follow options (argparse leaves them over)
        if getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        from .runtime import apply_runtime_args

        apply_runtime_args(args)
        return int(args.func(args) or 0)
    except (HyperInverterError, ValueError, FileExistsError) as e:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (Exception, RecursionError, MemoryError) as e:  # noqa: BLE001 - one line instead of a traceback
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        print(f"error: {_unexpected(e)} (run with --debug for the traceback)", file=sys.stderr)
        return 1


def _one_line(e: BaseException, limit: int = 2000) -> str:
    """An exception's message, cut to ``limit`` characters (a message never floods the terminal)."""
    text = str(e)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _unexpected(e: BaseException) -> str:
    """One line for an exception this package did not anticipate, naming the file it concerns when known."""
    if isinstance(e, OSError) and e.filename is not None:
        what = e.strerror or type(e).__name__
        return f"{e.filename}: {what}" + (f" -> {e.filename2}" if e.filename2 else "")
    if isinstance(e, RecursionError):
        return "an input is nested too deeply (RecursionError)"
    if isinstance(e, MemoryError):
        return "out of memory (MemoryError)"
    text = _one_line(e, 500).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
