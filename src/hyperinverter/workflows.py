"""File-level jobs behind the command line: invert folders of images, edit, interpolate, load directions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from .domain import phase1_psnr
from .editing.directions import DirectionError, load_direction_file
from .errors import HyperInverterError
from .inverter import HyperInverter, InversionResult
from .stylegan2 import Generator
from .utils.image_io import ImageLoadError, load_images
from .utils.images import make_grid, save_image, to_uint8
from .utils.outputs import OutputPlan, atomic_write, check_writable, unique_output_names

PathLike = Union[str, os.PathLike]
DIRECTION_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")  # names looked up in <model>/directions/


@dataclass
class InvertReport:
    """What :func:`invert_files` wrote and what it skipped."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: dict[Path, list[str]] = field(default_factory=dict)
    phase1_psnr: dict[Path, float] = field(default_factory=dict)  # per input: phase I against the input (dB)


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output base names from file stems, suffixed where two inputs share a stem (``a``, ``a_1``); see
    :func:`hyperinverter.utils.outputs.unique_output_names`."""
    return unique_output_names(paths, ("{}",))


#: The files ``invert_files`` writes per input (``{}`` is the input's output name).
INVERT_OUTPUTS = ("{}.png", "{}_w.png", "{}.codes.safetensors")


def plan_invert_outputs(paths: Sequence[Path], out_dir: Path, overwrite: bool = False) -> list[str]:
    """Output names for :func:`invert_files`, checked before any work: no output replaces an input or another
    output, and no existing file is replaced unless ``overwrite`` (:class:`OutputPlan`); the folder is tried
    for writing. Returns one name per path (same order)."""
    names = unique_output_names(paths, INVERT_OUTPUTS)
    plan = OutputPlan(inputs=paths, overwrite=overwrite)
    for path, name in zip(paths, names):
        plan.add_folder_files(out_dir, [p.format(name) for p in INVERT_OUTPUTS], what=str(path))
    plan.check()
    check_writable(out_dir)
    return names


def invert_files(model: HyperInverter, paths: Sequence[Path], out_dir: Path, batch_size: int = 8,
                 device: Union[str, torch.device] = "cpu",
                 progress: Optional[Callable[[int], None]] = None, overwrite: bool = False) -> InvertReport:
    """Invert image files in batches; per image write ``<name>.png`` (phase II), ``<name>_w.png`` (phase I)
    and ``<name>.codes.safetensors`` (``w``, ``ws``, ``delta.<layer>``). Bad files are reported and skipped.

    Before any work the outputs are checked (:func:`plan_invert_outputs`): an output that would replace an
    input or another output is refused, and so are existing outputs unless ``overwrite``."""
    paths = [Path(p) for p in paths]
    names = plan_invert_outputs(paths, out_dir, overwrite)
    report = InvertReport()
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        chunk_names = names[start:start + batch_size]
        batch, ok, failed, notes = load_images(chunk, model.resolution, on_error="skip")
        report.failed += failed
        report.notes.update({p: n for p, n in notes.items() if n})
        if batch is not None:
            failed_paths = {p for p, _ in failed}
            ok_names = [n for p, n in zip(chunk, chunk_names) if p not in failed_paths]
            result = model.invert(batch.to(device), batch_size=batch_size)
            psnrs = phase1_psnr(batch.to(device), result.image_w).tolist()
            for i, (path, name) in enumerate(zip(ok, ok_names)):
                report.phase1_psnr[path] = psnrs[i]
                save_image(to_uint8(result.image[i:i + 1])[0], out_dir / f"{name}.png")
                save_image(to_uint8(result.image_w[i:i + 1])[0], out_dir / f"{name}_w.png")
                codes = result[i].codes()
                atomic_write(out_dir / f"{name}.codes.safetensors",
                             lambda tmp: save_file(codes, tmp, metadata={"source": str(path)}))
                report.written.append(out_dir / f"{name}.png")
        if progress is not None:
            progress(len(chunk))
    return report


def load_codes(path: PathLike) -> InversionResult:
    """Read a ``.codes.safetensors`` file written by :func:`invert_files`."""
    try:
        return InversionResult.from_codes(load_file(str(path)))
    except (OSError, ValueError, Exception) as e:  # safetensors raises its own error type
        raise HyperInverterError(f"{path}: not a codes file written by 'hyperinverter invert' ({e})") from None


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
    import json

    from safetensors import safe_open

    from .checkpoints import CONFIG_NAME, WEIGHTS_NAME, load_state_dict_checked
    from .errors import CheckpointError
    from .stylegan2.formats import load_generator

    path = Path(spec)
    if not path.exists():
        from .pretrained import resolve

        path = resolve(spec)  # a model name, or a clear error naming the models
    config_file = path / CONFIG_NAME
    if path.is_dir() and config_file.is_file():
        try:
            is_inverter = json.loads(config_file.read_text()).get("class") == "HyperInverter"
        except (ValueError, OSError, AttributeError):
            is_inverter = False
        if is_inverter:
            config = HyperInverter.read_config(path)
            generator = Generator(**config.generator)
            weights = path / WEIGHTS_NAME
            try:
                with safe_open(str(weights), framework="pt") as fh:
                    state = {k[len("generator."):]: fh.get_tensor(k) for k in fh.keys() if k.startswith("generator.")}
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise CheckpointError(f"{weights}: unreadable safetensors file ({e})") from None
            load_state_dict_checked(generator, state, f"{weights}[generator]")
            return generator.to(device).eval(), f"the generator of model {spec}"
    return load_generator(path, device=device), str(spec)


def load_single(path: Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """One image as a batch of 1, raising :class:`ImageLoadError` with the path on any problem."""
    batch, ok, failed, notes = load_images([path], size, on_error="raise")
    assert batch is not None
    return batch, notes.get(path, [])


__all__ = ["DirectionError", "ImageLoadError", "InvertReport", "find_direction", "generator_from", "invert_files",
           "load_codes", "load_direction", "load_single", "make_grid", "parse_layers", "plan_invert_outputs", "save_image",
           "unique_stems",
           "write_gif"]
