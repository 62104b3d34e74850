"""File-level jobs behind the command line: invert folders of images, edit, interpolate, load directions."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from PIL import Image
from safetensors.torch import save_file

from .domain import phase1_psnr
from .editing.directions import DirectionError, load_direction_file
from .errors import HyperInverterError
from .inverter import CODES_FORMATS, HyperInverter, InversionResult
from .stylegan2 import Generator
from .utils.distributed import Group
from .utils.image_io import ImageLoadError, load_images
from .utils.images import make_grid, save_image, to_uint8
from .utils.outputs import OutputPlan, atomic_write, check_writable, clean_stale_temporaries, unique_output_names

PathLike = Union[str, os.PathLike]
#: The safetensors metadata entry of a codes file (JSON: format, model_probe, hidden_dim, source).
CODES_METADATA_KEY = "codes"
DIRECTION_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")  # names looked up in <model>/directions/


@dataclass
class InvertReport:
    """What :func:`invert_files` wrote and what it skipped (all processes' together under torchrun)."""

    written: list[Path] = field(default_factory=list)  # <name>.png of each input inverted by this run
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, message) of each unreadable input
    notes: dict[Path, list[str]] = field(default_factory=dict)
    phase1_psnr: dict[Path, float] = field(default_factory=dict)  # per input: phase I against the input (dB)
    finished: list[Path] = field(default_factory=list)  # resume: inputs whose outputs were all there already
    files: list[Path] = field(default_factory=list)  # every file this run wrote (each exactly once)


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output base names from file stems, suffixed where two inputs share a stem (``a``, ``a_1``); see
    :func:`hyperinverter.utils.outputs.unique_output_names`."""
    return unique_output_names(paths, ("{}",))


#: The files ``invert_files`` writes per input (``{}`` is the input's output name).
INVERT_OUTPUTS = ("{}.png", "{}_w.png", "{}.codes.safetensors")


def plan_invert_outputs(paths: Sequence[Path], out_dir: Path, overwrite: bool = False, resume: bool = False
                        ) -> list[str]:
    """Output names for :func:`invert_files`, checked before any work: no output replaces an input or another
    output, and no existing file is replaced unless ``overwrite`` (:class:`OutputPlan`); the folder is tried
    for writing. With ``resume`` existing outputs are allowed (they are kept, never rewritten). Returns one
    name per path (same order)."""
    if overwrite and resume:
        raise ValueError("--resume keeps existing outputs and --overwrite replaces them: give one of them")
    names = unique_output_names(paths, INVERT_OUTPUTS)
    plan = OutputPlan(inputs=paths, overwrite=overwrite or resume)
    for path, name in zip(paths, names):
        plan.add_folder_files(out_dir, [p.format(name) for p in INVERT_OUTPUTS], what=str(path))
    plan.check()
    check_writable(out_dir)
    return names


def load_model(path: Union[str, Path], device, verbose: bool = True) -> HyperInverter:
    """A HyperInverter folder or shipped model name on ``device``; ``verbose`` prints one line about it."""
    model = HyperInverter.from_pretrained(path, device=device)
    if verbose:
        passes = model.config.refinement_passes
        more = f", {passes} refinement pass{'es' if passes > 1 else ''}" if passes else ""
        print(f"model: {path} ({model.resolution}px, hidden_dim {model.config.hidden_dim}, {len(model.targets)} "
              f"target layers{more}), device {device}")
    return model


def invert_files(model: HyperInverter, paths: Sequence[Path], out_dir: Path, batch_size: int = 8,
                 device: Union[str, torch.device] = "cpu",
                 progress: Optional[Callable[[int], None]] = None, overwrite: bool = False,
                 codes_format: str = "compact", resume: bool = False, group: Optional[Group] = None,
                 refine_steps: int = 0) -> InvertReport:
    """Invert image files in batches; per image write ``<name>.png`` (phase II), ``<name>_w.png`` (phase I)
    and ``<name>.codes.safetensors`` (see :func:`save_codes`). Bad files are reported and skipped.

    Before any work the outputs are checked (:func:`plan_invert_outputs`): an output that would replace an
    input or another output is refused, and so are existing outputs unless ``overwrite`` or ``resume``.

    Args:
        model: the inverter (on ``device``).
        paths: image files, in the order that defines the batches (folders expanded by the caller).
        out_dir: the output folder (created).
        batch_size: images per batch. The batches are cut from ``paths`` the same way whatever the number of
            processes, so every output is byte for byte what one process writes.
        device: where the images go (the model's device).
        progress: called with the number of inputs just handled (on process 0, for all processes).
        overwrite: replace existing outputs.
        codes_format: ``compact`` (per-layer codes, a few KB; loading needs the model), ``half`` or ``full``
            (dense Δθ in float16 / float32, self-contained); see :meth:`InversionResult.codes`.
        refine_steps: after the encoder pass, this many steps of per-image tuning (:func:`~hyperinverter.tuning.
            refine`; 0 = none). Refined weights have no per-layer codes: ``compact`` is refused with it.
        resume: keep existing outputs and write only the missing ones: an input whose three files exist is
            skipped, a batch with missing outputs is recomputed whole (the same batch gives the same bytes) and
            only its missing files are written; temporary files an interrupted run left are removed.
        group: the processes to share the work with (:func:`hyperinverter.utils.distributed.inference_group`):
            batches go round-robin to the processes, each output is written by exactly one of them, and the
            report returned on every process covers all of them. None: this process alone.
    """
    group = group or Group()
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    error: Optional[BaseException] = None
    names: list[str] = []
    try:
        check_invert_args(batch_size, codes_format, refine_steps)
        names = plan_invert_outputs(paths, out_dir, overwrite, resume)
        if resume and group.is_main:
            clean_stale_temporaries(out_dir)  # what a kill -9 left; no process writes before agree() below
    except Exception as e:  # noqa: BLE001 - handed to every process by agree()
        error = e
    group.agree(error)  # every process has checked the plan before any of them writes
    outputs = [[out_dir / p.format(n) for p in INVERT_OUTPUTS] for n in names]
    report = InvertReport()
    todo = []  # the batches (cut from all inputs, as one process does) with at least one missing output
    for start in range(0, len(paths), batch_size):
        members = list(range(start, min(start + batch_size, len(paths))))
        missing = [i for i in members if not resume or not all(f.exists() for f in outputs[i])]
        report.finished += [paths[i] for i in members if i not in missing]
        if missing:
            todo.append((members, len(missing)))
    if progress is not None and group.is_main and report.finished:
        progress(len(report.finished))
    for item in group.rounds(todo):  # lock-step rounds: process 0 counts everybody's progress
        handled = 0
        if item is not None:
            members, handled = item
            _invert_batch(model, [paths[i] for i in members], [outputs[i] for i in members], device,
                          codes_format, resume, report, refine_steps)
        handled = group.sum(handled)
        if progress is not None and group.is_main:
            progress(handled)
    return _merge_reports(group, report, paths, outputs)


def check_invert_args(batch_size: int, codes_format: str, refine_steps: int = 0) -> None:
    """The settings of :func:`invert_files`, checked before any work (one ``ValueError`` line each)."""
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"refine steps must be a whole number >= 0, got {refine_steps!r}"[:200])
    if refine_steps and codes_format == "compact":
        raise ValueError("refined weights are no longer the hypernetworks' per-layer codes: with --refine, write "
                         "--codes half or --codes full")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}"[:200])
    if codes_format not in CODES_FORMATS:
        raise ValueError(f"codes format must be one of {', '.join(CODES_FORMATS)}, got {codes_format!r}"[:200])


def _invert_batch(model: HyperInverter, paths: list[Path], outputs: list[list[Path]], device, codes_format: str,
                  resume: bool, report: InvertReport, refine_steps: int = 0) -> None:
    """Load, invert and write one batch (with ``resume``, only the files that do not exist yet)."""
    batch, ok, failed, notes = load_images(paths, model.resolution, on_error="skip")
    report.failed += failed
    report.notes.update({p: n for p, n in notes.items() if n})
    if batch is None:
        return
    files_of = dict(zip(paths, outputs))
    wanted = {p: [f for f in files_of[p] if not (resume and f.exists())] for p in ok}
    if not any(wanted.values()):  # resume: the inputs with missing outputs are the unreadable ones
        return
    batch = batch.to(device)
    result = model.invert(batch, batch_size=batch.shape[0])
    if refine_steps:
        from .tuning import refine

        result = refine(model, batch, result, steps=refine_steps)
    psnrs = phase1_psnr(batch, result.image_w).tolist()
    for i, path in enumerate(ok):
        if not wanted[path]:
            continue
        report.phase1_psnr[path] = psnrs[i]
        png, png_w, _ = files_of[path]
        for f in wanted[path]:
            if f == png:
                save_image(to_uint8(result.image[i:i + 1])[0], f)
            elif f == png_w:
                save_image(to_uint8(result.image_w[i:i + 1])[0], f)
            else:
                save_codes(result[i], f, model, codes_format, source=path)
            report.files.append(f)
        report.written.append(png)


def _merge_reports(group: Group, report: InvertReport, paths: list[Path], outputs: list[list[Path]]
                   ) -> InvertReport:
    """Every process's report as one, in input order (on every process; unchanged for one process)."""
    if not group.distributed:
        return report
    index = {p: i for i, p in enumerate(paths)}
    index.update({f: i for i, files in enumerate(outputs) for f in files})
    merged = InvertReport(finished=list(report.finished))  # decided identically on every process
    for part in group.all_gather(report):
        merged.written += part.written
        merged.failed += part.failed
        merged.notes.update(part.notes)
        merged.phase1_psnr.update(part.phase1_psnr)
        merged.files += part.files
    at = lambda p: index.get(p, len(index))  # noqa: E731
    merged.written.sort(key=at)
    merged.files.sort(key=at)
    merged.failed.sort(key=lambda item: at(item[0]))
    merged.phase1_psnr = dict(sorted(merged.phase1_psnr.items(), key=lambda kv: at(kv[0])))
    merged.notes = dict(sorted(merged.notes.items(), key=lambda kv: at(kv[0])))
    return merged


def save_codes(result: InversionResult, path: PathLike, model: Optional[HyperInverter] = None,
               format: str = "compact", source: Optional[PathLike] = None) -> Path:
    """Write one inversion's codes as safetensors (atomically), in one of :data:`CODES_FORMATS`.

    Args:
        result: what to store (``w``, ``ws`` and Δθ; ``compact`` needs its ``layer_codes``).
        path: the file to write (``<name>.codes.safetensors`` by convention).
        model: the model that made ``result``; required for ``compact``, whose file records the model's
            :meth:`~HyperInverter.codes_probe` so that loading with another model is refused.
        format: ``compact`` (per-layer codes), ``half`` (dense Δθ float16) or ``full`` (dense Δθ float32).
        source: the input image, recorded in the metadata.

    The metadata is one entry, ``codes``: JSON with ``format`` (and ``model_probe``, ``hidden_dim`` for
    compact, ``source``). One entry because safetensors writes several in no fixed order, and the same inversion
    must give the same bytes (a torchrun job's files equal one process's). :func:`load_codes` reads every
    format, and files without the entry as ``full``.
    """
    codes = result.codes(format)
    info = {"format": format}
    if format == "compact":
        if model is None:
            raise ValueError("compact codes need the model that made them (a probe of its weights goes into the file)")
        info.update(model_probe=model.codes_probe(), hidden_dim=model.config.hidden_dim)
    if source is not None:
        info["source"] = str(source)
    metadata = {CODES_METADATA_KEY: json.dumps(info, sort_keys=True)}
    return atomic_write(path, lambda tmp: save_file(codes, tmp, metadata=metadata))


def load_codes(path: PathLike, model: Optional[HyperInverter] = None) -> InversionResult:
    """Read a codes file written by :func:`save_codes` / ``hyperinverter invert`` (any format).

    Args:
        path: the ``.codes.safetensors`` file.
        model: the model that wrote it: required for the ``compact`` format (it expands the per-layer codes
            into Δθ; a file of another model is refused by the weights it recorded); when given, the shapes
            are checked against it and the tensors put on its device.

    Raises:
        HyperInverterError: one line naming the file: missing, unreadable, not a codes file (foreign entries,
            wrong shapes, NaN), an unknown format, compact codes without a model or from another model.
    """
    from safetensors import safe_open

    path = Path(path)
    what = "not a codes file written by 'hyperinverter invert'"
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            keys = list(fh.keys())
            foreign = [k for k in keys if k not in ("w", "ws") and not k.startswith(("delta.", "code."))]
            if foreign or "w" not in keys or "ws" not in keys:
                shown = ", ".join(repr(k[:60]) for k in sorted(foreign or keys)[:3])
                raise HyperInverterError(f"{path}: {what} (expected entries w, ws and delta.* or code.*; it has "
                                         f"{shown or 'none'}{' ...' if len(keys) > 3 else ''})")
            tensors = {k: fh.get_tensor(k) for k in keys}
    except HyperInverterError:
        raise
    except FileNotFoundError:
        raise HyperInverterError(f"{path}: no such codes file") from None
    except OSError as e:
        raise HyperInverterError(f"{path}: cannot read the codes file ({e.strerror or type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
        reason = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise HyperInverterError(f"{path}: {what} (unreadable safetensors: {reason})") from None
    try:
        info = json.loads(metadata.get(CODES_METADATA_KEY) or "{}")
    except (ValueError, RecursionError):
        info = None
    if not isinstance(info, dict):
        raise HyperInverterError(f"{path}: {what} (its '{CODES_METADATA_KEY}' metadata is not a JSON object)")
    fmt = info.get("format") or ("compact" if any(k.startswith("code.") for k in keys) else "full")
    if not isinstance(fmt, str) or fmt not in CODES_FORMATS:
        shown = repr(fmt[:40]) if isinstance(fmt, str) else f"of type {type(fmt).__name__}"  # never repr it whole
        raise HyperInverterError(f"{path}: unknown codes format {shown} (this version reads "
                                 f"{', '.join(CODES_FORMATS)})")
    if fmt == "compact":
        if model is None:
            raise HyperInverterError(f"{path}: compact codes (per-layer hypernetwork codes) expand into residuals "
                                     "only with the model that wrote them: pass model=... (on the command line, "
                                     "--model)")
        hidden = info.get("hidden_dim")
        if hidden is not None and hidden != model.config.hidden_dim or not model.codes_probe_matches(
                info.get("model_probe")):
            raise HyperInverterError(f"{path}: written by another model (its hypernetwork weights differ from this "
                                     "model's); load it with the model given to 'hyperinverter invert'")
    try:
        return InversionResult.from_codes(tensors, model)
    except ValueError as e:
        raise HyperInverterError(f"{path}: {what} ({e})") from None


def is_codes_file(path: PathLike) -> bool:
    """Whether ``path`` names a codes file (``*.safetensors``) rather than an image."""
    return Path(path).name.lower().endswith(".safetensors")


def input_stem(path: PathLike) -> str:
    """The base name of an input for output names: ``a.png`` -> ``a``, ``a.codes.safetensors`` -> ``a``."""
    name = Path(path).name
    for ending in (".codes.safetensors", ".safetensors"):
        if name.lower().endswith(ending) and len(name) > len(ending):
            return name[:-len(ending)]
    return Path(path).stem


def load_inversion(path: PathLike, model: HyperInverter, device: Union[str, torch.device] = "cpu"
                   ) -> tuple[InversionResult, Optional[torch.Tensor], list[str]]:
    """One inversion for ``edit`` / ``interpolate``: an image file is loaded and inverted; a codes file
    (:func:`is_codes_file`, any format) is loaded with ``model`` and rendered (no inversion).

    Returns:
        ``(result, x, notes)``: the result with ``image`` and ``image_w`` (batch of 1), the input image
        ``[1, 3, R, R]`` on ``device`` (None for codes), and the image's loading notes.
    """
    path = Path(path)
    if is_codes_file(path):
        result = load_codes(path, model)
        if len(result) != 1:
            raise HyperInverterError(f"{path}: holds {len(result)} inversions; edit and interpolate take one")
        with torch.inference_mode():
            result.image_w = model.render(result.ws)
            result.image = model.render(result.ws, result.deltas)
        return result, None, []
    x, notes = load_single(path, model.resolution)
    x = x.to(device)
    return model.invert(x), x, notes


def find_direction(spec: str, model_dir: Optional[Path]) -> Path:
    """A direction file path, or ``<model_dir>/directions/<spec>.<npy|pt|safetensors>``."""
    path = Path(spec)
    if path.is_file():
        return path
    candidates = []
    if model_dir is not None:
        from .pretrained import resolve

        model_dir = resolve(model_dir)  # a folder, or a shipped model's name
    if model_dir is not None and (model_dir / "directions").is_dir():
        folder = model_dir / "directions"
        for suffix in DIRECTION_SUFFIXES:
            if (folder / f"{spec}{suffix}").is_file():
                return folder / f"{spec}{suffix}"
        candidates = sorted(p.stem for p in folder.iterdir() if p.suffix in DIRECTION_SUFFIXES)
    hint = f"; directions of this model: {candidates}" if candidates else ""
    raise DirectionError(f"{spec}: no such direction file{hint}")


def load_direction(path: PathLike, w_dim: int, num_ws: int) -> torch.Tensor:
    """An edit direction (``[w_dim]`` or ``[num_ws, w_dim]``) from .npy/.pt/.safetensors (see editing.directions)."""
    return load_direction_file(path, w_dim, num_ws).vector


def parse_layers(text: Optional[str]) -> Optional[tuple[int, int]]:
    """``"a:b"`` -> ``(a, b)`` (rows a..b-1 of ws)."""
    if not text:
        return None
    try:
        a, b = text.split(":")
        return int(a), int(b)
    except ValueError:
        raise ValueError(f"--layers must look like 'first:stop' (e.g. 0:6), got {text!r}") from None


def write_gif(frames: torch.Tensor, path: Path, duration_ms: int = 80, bounce: bool = True) -> Path:
    """Frames ``[N, 3, H, W]`` in [-1, 1] -> an endlessly looping GIF (forth and back when ``bounce``)."""
    arrays = list(to_uint8(frames))
    if bounce and len(arrays) > 2:
        arrays = arrays + arrays[-2:0:-1]
    images = [Image.fromarray(a) for a in arrays]
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=duration_ms, loop=0))
    return Path(path)


def write_video(frames: Union[torch.Tensor, Sequence], path: PathLike, fps: float = 12.5, bounce: bool = True,
                quality: int = 8) -> Path:
    """Frames -> an H.264 MP4 (yuv420p, plays in browsers), forth and back when ``bounce``.

    Args:
        frames: a tensor ``[N, 3, H, W]`` in [-1, 1] (like :func:`write_gif`) or a sequence of uint8
            ``[H, W, 3]`` arrays of one size.
        path: the ``.mp4`` file to write (its folder is created).
        fps: frames per second (``1000 / frame_ms`` matches a GIF's timing).
        bounce: append the frames in reverse (without repeating the ends) so the clip loops smoothly.
        quality: imageio's ffmpeg quality, 0 (worst) to 10 (best).

    H.264 in yuv420p needs even sizes: an odd width or height is padded by one pixel (edge copy).
    Needs ``imageio`` and ``imageio-ffmpeg`` (``pip install 'hyperinverter[media]'``), which brings its
    own ffmpeg binary.
    """
    import numpy as np

    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary; imageio's plugin needs it)
    except ImportError as e:
        raise HyperInverterError(f"writing MP4 video needs imageio and imageio-ffmpeg: pip install "
                                 f"'hyperinverter[media]' ({e})") from e
    if not (isinstance(fps, (int, float)) and 0 < fps <= 240):
        raise ValueError(f"fps must be a number in (0, 240], got {fps!r}")
    arrays = list(to_uint8(frames)) if isinstance(frames, torch.Tensor) else [np.asarray(f) for f in frames]
    if not arrays:
        raise ValueError("write_video needs at least one frame")
    shape = arrays[0].shape
    if len(shape) != 3 or shape[2] != 3 or any(a.shape != shape or a.dtype != np.uint8 for a in arrays):
        raise ValueError(f"frames must be [N, 3, H, W] tensors or uint8 [H, W, 3] arrays of one size; got first "
                         f"frame {shape} {arrays[0].dtype}")
    if bounce and len(arrays) > 2:
        arrays = arrays + arrays[-2:0:-1]
    pad = ((0, shape[0] % 2), (0, shape[1] % 2), (0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=quality,
                                pixelformat="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
                                output_params=["-movflags", "+faststart"])
    try:
        for a in arrays:
            writer.append_data(np.pad(a, pad, mode="edge") if any(p[1] for p in pad) else a)
    finally:
        writer.close()
    return path


def generator_from(spec: PathLike, device: Union[str, torch.device] = "cpu") -> tuple[Generator, str]:
    """A StyleGAN2 generator and a description of where it came from.

    Args:
        spec: a generator file or folder (NVIDIA ``.pkl``, ``.pt``/``.pth``, ``.safetensors``, a generator's
            ``save_pretrained`` folder), or a HyperInverter model folder or name (shipped, e.g.
            ``portraits64``, or downloaded, e.g. ``faces-hd128``): then its generator, read alone from the
            model file (the encoders are not loaded).
        device: where to put it.

    Raises:
        CheckpointError: not a generator file and not a model (the message names the shipped models).
    """
    from safetensors import safe_open

    import dataclasses
    import math

    from .checkpoints import CONFIG_NAME, WEIGHTS_NAME, load_state_dict_checked
    from .checkpoints.pretrained import build_within_budget, materialize_non_persistent_buffers, safetensors_shapes
    from .errors import CheckpointError
    from .pretrained import resolve
    from .stylegan2.formats import load_generator, saved_class

    path = resolve(spec)  # the file or folder itself, a model name, or a clear error naming the models
    if path.is_dir():
        if saved_class(path) == "HyperInverter":
            config = HyperInverter.read_config(path)
            weights = path / WEIGHTS_NAME
            if not weights.is_file():
                raise CheckpointError(f"{path}: no {WEIGHTS_NAME}")
            stored = sum(math.prod(s) for k, s in safetensors_shapes(weights).items() if k.startswith("generator."))
            # shapes only (no random initialisation), within the budget the file's generator tensors allow
            generator = build_within_budget(Generator, dataclasses.asdict(config.generator), stored,
                                            str(path / CONFIG_NAME), f"its generator holds {stored:,} elements",
                                            device="meta")
            try:
                with safe_open(str(weights), framework="pt") as fh:
                    state = {k[len("generator."):]: fh.get_tensor(k) for k in fh.keys() if k.startswith("generator.")}
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise CheckpointError(f"{weights}: unreadable safetensors file ({e})") from None
            load_state_dict_checked(generator, state, f"{weights}[generator]", assign=True)
            materialize_non_persistent_buffers(generator)
            return generator.to(device).eval(), f"the generator of model {spec}"
    return load_generator(path, device=device), str(spec)


def model_info(spec: PathLike, network: str = "generator") -> dict:
    """What ``hyperinverter info`` shows about a model, as a JSON-ready dict.

    Args:
        spec: a HyperInverter folder or model name (shipped or downloaded), or a generator / discriminator file
            or folder in any format :func:`~hyperinverter.stylegan2.formats.load_generator` reads.
        network: ``"generator"`` or ``"discriminator"`` for a GAN file (a HyperInverter holds no discriminator).

    Returns:
        For a HyperInverter: ``class``, ``folder``, ``elements_per_part``, ``targets``, ``generator`` (resolution,
        ``num_ws``, ``w_dim``, ``z_dim``), ``config`` and, when recorded, ``domain``. For a GAN network:
        ``class``, ``parameters``, ``config`` and (generators) ``num_ws``.
    """
    import dataclasses

    from .domain import load_domain
    from .pretrained import resolve
    from .stylegan2.formats import load_discriminator, load_generator, saved_class

    if network not in ("generator", "discriminator"):
        raise ValueError(f"network must be 'generator' or 'discriminator', got {network!r}")
    source = resolve(spec)  # a file, folder or name
    if saved_class(source) == "HyperInverter":
        if network == "discriminator":
            raise ValueError(f"{spec}: a HyperInverter model holds no discriminator (its folder may have a "
                             "discriminator/ sub-folder from convert-official --with-discriminator)")
        model = HyperInverter.from_pretrained(source)
        G = model.generator
        info = {"class": "HyperInverter", "folder": str(source), "elements_per_part": model.parameter_counts(),
                "targets": [t.name for t in model.targets],
                "generator": {"resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
                              "z_dim": G.z_dim},
                "config": dataclasses.asdict(model.config)}
        record = load_domain(source)
        if record is not None:
            info["domain"] = dataclasses.asdict(record)
        return info
    loader = load_discriminator if network == "discriminator" else load_generator
    net = loader(source)
    info = {"class": type(net).__name__, "parameters": sum(p.numel() for p in net.parameters()),
            "config": dataclasses.asdict(net.config)}
    if hasattr(net, "num_ws"):
        info["num_ws"] = net.num_ws
    return info


def load_single(path: Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """One image as a batch of 1, raising :class:`ImageLoadError` with the path on any problem."""
    batch, ok, failed, notes = load_images([path], size, on_error="raise")
    assert batch is not None
    return batch, notes.get(path, [])


__all__ = ["CODES_FORMATS", "DirectionError", "ImageLoadError", "InvertReport", "find_direction", "generator_from",
           "input_stem", "invert_files", "is_codes_file", "load_codes", "load_direction", "load_inversion",
           "load_single", "make_grid", "model_info", "parse_layers", "plan_invert_outputs", "save_codes", "save_image",
           "unique_stems", "write_gif"]
