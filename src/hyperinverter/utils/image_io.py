"""Loading user images for inversion, with clear errors and notes about every conversion.

:func:`load_image` turns any image file Pillow can read into the tensor the encoders expect: float32
``[3, H, W]`` in [-1, 1] (``x / 127.5 - 1``, the same as the official pipeline's ``ToTensor()`` +
``Normalize([0.5] * 3, [0.5] * 3)``). It also returns a list of human-readable notes about what it had
to change (mode conversion, alpha, bit depth, EXIF rotation, animation, resizing), so that a command
line can tell the user why an inversion looks different from the file they gave.

Pixel modes are converted to 8-bit RGB as follows:

* ``RGB``: unchanged. ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: Pillow's
  ``convert("RGB")`` (CMYK without color management: an embedded ICC profile is ignored).
* Modes with alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``) and images with a ``transparency`` entry
  (``P``/``L``/``RGB`` with a tRNS chunk, transparent GIFs): composited on white, rounding
  ``(c * a + 255 * (255 - a)) / 255`` to the nearest integer. (The official pipeline calls
  ``convert("RGB")``, which drops the alpha channel and keeps whatever colour is under it.)
* 16-bit (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): ``round(v / 257)``, so 0 -> 0 and 65535 -> 255.
* 32-bit integer (``I``): values within 0..255 are used as they are, values within 0..65535 are read
  as 16-bit (``round(v / 257)``), anything else (negative, > 65535) is rescaled linearly from its
  min..max to 0..255. Each case leaves a note.
* 32-bit float (``F``): NaN or infinite values are an error; values within [0, 1] are multiplied by
  255, then the same rules as for ``I`` apply (0..255 as is, 0..65535 as 16-bit, else min..max).

Resizing uses ``PIL.Image.resize((size, size), Image.BILINEAR)`` by default. That is what the official
HyperInverter pipeline does too: torchvision's ``Resize((256, 256))`` on a PIL image calls
``img.resize(..., BILINEAR)``, and Pillow's bilinear resize is a convolution whose support widens when
downscaling, i.e. it is antialiased (unlike ``torch.nn.functional.interpolate`` without
``antialias=True``). The resize happens after the conversion to 8-bit RGB, as in the official pipeline.

Truncated files are detected by forcing a full decode (``img.load()``) at load time; this relies on
``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` being False (Pillow's default), which this module never changes.

This is the one place image files are opened and converted: :func:`open_image` (checked, decoded, upright,
in the file's own pixel mode), :func:`read_image_size` (the checked header size, no decode) and
:func:`to_rgb8` (any mode to 8-bit RGB, with notes) serve the face tools (``faces.photo``), the web page's
uploads (``serve.images``) and the training data sets (``data.folder``) as well as :func:`load_image`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import HyperInverterError
from .images import to_uint8

if TYPE_CHECKING:  # torch is imported where tensors are made: opening and checking images does not need it
    import torch

PathLike = Union[str, os.PathLike]

#: File name extensions (lower case) that :func:`iter_image_paths` picks up from folders.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: Default limit on width * height (64 megapixels); larger images are refused before decoding.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
#: Default smallest accepted width and height.
DEFAULT_MIN_SIZE = 8

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_MODE_NAMES = {
    "1": "1-bit black-and-white (1)",
    "L": "grayscale (L)",
    "P": "palette (P)",
    "CMYK": "CMYK",
    "YCbCr": "YCbCr",
    "LAB": "CIELAB (LAB)",
    "HSV": "HSV",
    "RGBX": "RGBX",
}
_ORIENTATIONS = {
    2: "mirrored horizontally",
    3: "rotated 180 degrees",
    4: "mirrored vertically",
    5: "transposed",
    6: "rotated 90 degrees clockwise",
    7: "transversed",
    8: "rotated 90 degrees counter-clockwise",
}


class ImageLoadError(HyperInverterError, ValueError):
    """An image file is missing, unreadable, corrupt, truncated, too small or too large.

    ``str(err)`` is ``"<path>: <reason>"``; ``err.path`` and ``err.reason`` hold the two parts.
    """

    def __init__(self, path: PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{os.fspath(path)}: {reason}")

    def __reduce__(self):  # keep it picklable (DataLoader workers) despite the two-argument __init__
        return type(self), (self.path, self.reason)


class ImageConversionError(HyperInverterError, ValueError):
    """:func:`to_rgb8` cannot turn an image into 8-bit RGB (NaN or infinite values in a float image, a
    pixel mode Pillow cannot convert). ``str(err)`` is the reason, without a path."""


class _Problem(Exception):
    """Internal: a reason to refuse the image; :func:`open_image` adds the path."""


def _resample_filter(resample) -> Image.Resampling:
    if isinstance(resample, str):
        try:
            return _RESAMPLE[resample.lower()]
        except KeyError:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}") from None
    return Image.Resampling(resample)


def _check_size_arg(size: Optional[int], name: str = "size") -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"{name} must be a positive int or None, got {size!r}")


def _fmt(x: float) -> str:
    return f"{x:g}"


def _scale_to_uint8(values: np.ndarray, what: str, notes: List[str]) -> np.ndarray:
    """Integer or float gray values -> uint8 following the module's rules; appends one note."""
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 255:
        notes.append(f"reduced {what} to 8-bit: values in [{_fmt(lo)}, {_fmt(hi)}] used as 0..255")
        out = values
    elif lo >= 0 and hi <= 65535:
        notes.append(f"reduced {what} to 8-bit: values in [{_fmt(lo)}, {_fmt(hi)}] read as 16-bit (divided by 257)")
        out = values / 257.0
    else:
        notes.append(f"reduced {what} to 8-bit: rescaled its value range [{_fmt(lo)}, {_fmt(hi)}] to 0..255")
        out = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.floor(np.clip(out, 0, 255) + 0.5).astype(np.uint8)


def _composite_on_white(img: Image.Image, notes: List[str]) -> Image.Image:
    mode = img.mode
    if mode == "La":  # Pillow converts La only to LA
        img = img.convert("LA")
    rgba = np.asarray(img.convert("RGBA"), dtype=np.uint32)
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    if mode in _ALPHA_MODES:
        what = f"the alpha channel of an {mode} image"
    else:
        what = f"the transparency of a {_MODE_NAMES.get(mode, mode)} image"
    if alpha.min() == 255:
        notes.append(f"dropped {what} (fully opaque)")
    else:
        notes.append(f"dropped {what} (composited on white)")
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return Image.fromarray(out.astype(np.uint8))


def to_rgb8(img: Image.Image, notes: Optional[List[str]] = None) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB by the rules in the module documentation; ``img`` itself when it is RGB
    already (without a transparency entry).

    Args:
        notes: a list to append one sentence to about the conversion made (None: not recorded).

    Raises:
        ImageConversionError: NaN or infinite values in a 32-bit float image, or a mode Pillow cannot convert.
    """
    notes = [] if notes is None else notes
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16"):
        arr = np.asarray(img)
        if arr.dtype.kind == "u":  # unsigned 16-bit: the mode's range is 0..65535
            gray = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
            notes.append(f"reduced 16-bit grayscale ({mode}) to 8-bit (values divided by 257)")
        else:
            gray = _scale_to_uint8(arr, f"signed 16-bit grayscale ({mode})", notes)
    elif mode in ("I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            bad = ~np.isfinite(arr)
            if bad.any():
                raise ImageConversionError(
                    "the 32-bit float (F) image contains NaN or infinite values "
                    f"({int(bad.sum())} of {arr.size} pixels)"
                )
            if arr.min() >= 0 and arr.max() <= 1:
                notes.append(
                    f"reduced 32-bit float (F) to 8-bit: values in [{_fmt(arr.min())}, {_fmt(arr.max())}] "
                    "read as 0..1 (multiplied by 255)"
                )
                gray = np.floor(arr.astype(np.float64) * 255 + 0.5).astype(np.uint8)
            else:
                gray = _scale_to_uint8(arr, "32-bit float (F)", notes)
        else:
            gray = _scale_to_uint8(arr, "32-bit integer (I)", notes)
    else:
        if mode in _ALPHA_MODES or "transparency" in img.info:
            try:
                return _composite_on_white(img, notes)
            except (ValueError, OSError) as e:
                raise ImageConversionError(f"cannot convert pixel mode {mode} with transparency to RGB ({e})"
                                           ) from e
        try:
            rgb = img.convert("RGB")
        except (ValueError, OSError) as e:
            raise ImageConversionError(f"unsupported pixel mode {mode} ({e})") from e
        note = f"converted {_MODE_NAMES.get(mode, mode)} to RGB"
        if mode == "CMYK":
            note += " (simple conversion, no color management" + (
                ": the embedded ICC profile is ignored)" if img.info.get("icc_profile") else ")"
            )
        notes.append(note)
        return rgb
    notes.append("converted grayscale to RGB")
    return Image.fromarray(gray).convert("RGB")


def _check_file(p: Path) -> None:
    """Refuse what is not a non-empty regular file (raises _Problem)."""
    if not p.exists():
        raise _Problem("file not found")
    if p.is_dir():
        raise _Problem("is a folder, not an image file (use iter_image_paths to list the images in a folder)")
    if not p.is_file():
        raise _Problem("is not a regular file")
    if p.stat().st_size == 0:
        raise _Problem("the file is empty (0 bytes)")


def _open_header(path: Path) -> Image.Image:
    """``Image.open`` (reads the header only), its failures turned into one-line reasons (raises _Problem)."""
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that; we apply our own limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as e:
        raise _Problem(
            f"the image is too large: Pillow refuses it as a possible decompression bomb "
            f"(more than 2 x Image.MAX_IMAGE_PIXELS = {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels): {e}"
        ) from e
    except UnidentifiedImageError as e:
        raise _Problem(
            "not an image Pillow can read (unknown or unsupported format, a corrupt header, or an image with no pixels)"
        ) from e
    except PermissionError as e:
        raise _Problem("cannot read the file: permission denied") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # plugins raise all of these on bad headers
        raise _Problem(f"cannot open the image: {e}") from e


def _check_dimensions(size: Tuple[int, int], max_pixels: Optional[int], min_size: int) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise _Problem(f"the image has no pixels ({w}x{h})")
    if max_pixels is not None and w * h > max_pixels:
        raise _Problem(
            f"the image is too large: {w}x{h} = {w * h} pixels, more than the limit of {max_pixels} (max_pixels)"
        )
    if w < min_size or h < min_size:
        raise _Problem(f"the image is too small: {w}x{h} pixels, at least {min_size}x{min_size} are needed")


def _decode_upright(img: Image.Image, notes: List[str]) -> Image.Image:
    """Fully decode an open image (its first frame) and apply its EXIF orientation; a detached copy."""
    w, h = img.size
    if getattr(img, "is_animated", False):
        try:
            n = img.n_frames
            img.seek(0)
        except Exception:  # counting frames reads the file; a broken tail shows up in load() below
            n = None
        fmt = img.format or "image"
        notes.append(f"used the first frame of an animated {fmt}" + (f" ({n} frames)" if n else ""))

    try:
        img.load()
    except Image.DecompressionBombError as e:  # a few plugins check again while decoding
        raise _Problem(f"the image is too large: {e}") from e
    except MemoryError as e:
        raise _Problem(f"not enough memory to decode the {w}x{h} image") from e
    except Exception as e:  # truncated data, bad compressed stream, decoder errors
        raise _Problem(f"the image data is truncated or corrupt: {e}") from e

    try:
        orientation = img.getexif().get(0x0112)
    except Exception:
        orientation = None
        notes.append("ignored unreadable EXIF data")
    try:
        if orientation in _ORIENTATIONS:
            out = ImageOps.exif_transpose(img)
            notes.append(f"applied EXIF orientation {orientation} ({_ORIENTATIONS[orientation]})")
        else:
            out = img.copy()  # detach from the file before it is closed
    except Exception as e:
        raise _Problem(f"cannot apply the EXIF orientation {orientation}: {e}") from e
    return out


def read_image_size(
    path: PathLike,
    *,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> Tuple[int, int]:
    """``(width, height)`` of an image file from its header, checked like :func:`open_image` but without
    decoding the pixels (fast; truncated pixel data is only found when the image is opened).

    Raises:
        ImageLoadError: missing, empty or non-image file, corrupt header, too small or too large image.
    """
    _check_size_arg(max_pixels, "max_pixels")
    p = Path(path)
    try:
        _check_file(p)
        with _open_header(p) as img:
            size = img.size
        _check_dimensions(size, max_pixels, min_size)
    except _Problem as e:
        raise ImageLoadError(path, str(e)) from e.__cause__
    return size


def open_image(
    path: PathLike,
    *,
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
    notes: Optional[List[str]] = None,
    check_size: Optional[Callable[[Tuple[int, int]], None]] = None,
) -> Image.Image:
    """Open an image file: checked, fully decoded (the first frame of an animation) and turned upright by its
    EXIF orientation, in the file's own pixel mode (:func:`to_rgb8` converts it).

    Args:
        max_pixels: refuse images with more pixels than this (width * height) before decoding them; None for
            no limit of ours (Pillow still refuses more than ``2 * MAX_IMAGE_PIXELS``).
        min_size: refuse images narrower or lower than this.
        notes: a list to append sentences to (first frame of an animation, EXIF orientation applied).
        check_size: called with ``(width, height)`` after the header is read and before the pixels are
            decoded, for limits of the caller's own; what it raises propagates as it is.

    Raises:
        ImageLoadError: missing file, folder, empty or non-image file, truncated or corrupt data, too small or
            too large image. The message starts with the path.
    """
    _check_size_arg(max_pixels, "max_pixels")
    notes = [] if notes is None else notes
    p = Path(path)
    try:
        _check_file(p)
        with _open_header(p) as img:
            _check_dimensions(img.size, max_pixels, min_size)
            if check_size is not None:
                check_size(img.size)
            return _decode_upright(img, notes)
    except _Problem as e:
        raise ImageLoadError(path, str(e)) from e.__cause__


def load_image(
    path: PathLike,
    size: Optional[int] = None,
    *,
    resample="bilinear",
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> Tuple[torch.Tensor, List[str]]:
    """Load one image as float32 ``[3, H, W]`` in [-1, 1] plus notes about the conversions applied.

    :func:`open_image`, then :func:`to_rgb8`, then the resize.

    Args:
        path: image file (anything Pillow reads; animated GIF/WebP give their first frame).
        size: resize to ``size x size`` (Pillow resize, antialiased for bilinear, as in the official
            pipeline); None keeps the image's own size (after EXIF rotation).
        resample: "bilinear" (default), "bicubic", "lanczos", "nearest", "box", "hamming", or a
            ``PIL.Image.Resampling`` member.
        max_pixels: refuse images with more than this many pixels (width * height) before decoding
            them; None for no limit of ours (Pillow still refuses more than ``2 * MAX_IMAGE_PIXELS``).
        min_size: refuse images narrower or lower than this.

    Returns:
        ``(tensor, notes)``; notes are sentences such as ``"converted grayscale (L) to RGB"``.

    Raises:
        ImageLoadError: missing file, folder, empty or non-image file, truncated or corrupt data,
            too small or too large image, NaN/inf in a float image. The message starts with the path.
        ValueError: bad ``size``/``resample``/``max_pixels`` arguments.
    """
    _check_size_arg(size)
    _check_size_arg(max_pixels, "max_pixels")
    filt = _resample_filter(resample)
    notes: List[str] = []
    img = open_image(path, max_pixels=max_pixels, min_size=min_size, notes=notes)
    try:
        img = to_rgb8(img, notes)
    except ImageConversionError as e:
        raise ImageLoadError(path, str(e)) from e.__cause__

    if size is not None and img.size != (size, size):
        w, h = img.size
        note = f"resized {w}x{h} to {size}x{size}"
        if w != h:
            note += f": the aspect ratio changes from {w / h:.2f} to 1"
        notes.append(note)
        img = img.resize((size, size), filt)
    return pil_to_tensor(img), notes


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An 8-bit RGB PIL image -> float32 ``[3, H, W]`` in [-1, 1] (``x / 127.5 - 1``)."""
    if img.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {img.mode!r} (load_image converts any mode)")
    import torch

    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).to(torch.float32)
    return (x / 127.5 - 1).contiguous()


def load_images(
    paths: Iterable[PathLike],
    size: int,
    *,
    on_error: str = "skip",
    resample="bilinear",
    max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
    min_size: int = DEFAULT_MIN_SIZE,
) -> Tuple[Optional[torch.Tensor], List[Path], List[Tuple[Path, str]], Dict[Path, List[str]]]:
    """Load several image files, resized to ``size x size``, into one batch.

    Folders are not expanded here (a folder is reported as an error); pass the output of
    :func:`iter_image_paths`.

    Args:
        on_error: "skip" collects ``(path, message)`` for each bad file and goes on; "raise" raises the
            first :class:`ImageLoadError`.

    Returns:
        ``(batch, loaded, errors, notes)``: ``batch`` is float32 ``[N, 3, size, size]`` in [-1, 1] for the
        N files that loaded (None when none did), ``loaded`` their paths in input order, ``errors`` the
        ``(path, message)`` of each skipped file (the message starts with the path), ``notes`` maps each
        loaded path to its conversion notes (possibly empty).
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if size is None:
        raise ValueError("load_images needs a size to stack the images into one batch")
    _check_size_arg(size)
    import torch

    tensors: List[torch.Tensor] = []
    loaded: List[Path] = []
    errors: List[Tuple[Path, str]] = []
    notes: Dict[Path, List[str]] = {}
    for path in paths:
        try:
            x, n = load_image(path, size, resample=resample, max_pixels=max_pixels, min_size=min_size)
        except ImageLoadError as e:
            if on_error == "raise":
                raise
            errors.append((Path(path), str(e)))
            continue
        tensors.append(x)
        loaded.append(Path(path))
        notes[Path(path)] = n
    batch = torch.stack(tensors) if tensors else None
    return batch, loaded, errors, notes


def _entry_problem(q: Path) -> Optional[str]:
    """Why a folder entry is not an image file to read (None when it is a regular file or a link to one)."""
    import stat

    try:
        st = q.stat()  # follows symlinks
    except OSError as e:
        if q.is_symlink():
            import errno

            return "a symbolic link loop" if e.errno == errno.ELOOP else "a dangling symbolic link"
        return f"cannot be read ({e.strerror or type(e).__name__})"
    if stat.S_ISDIR(st.st_mode):
        return "a sub-folder (folders are not searched recursively)"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else \
            "a device file" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
        return kind
    return None


def iter_image_paths(inputs: Union[PathLike, Iterable[PathLike]],
                     skipped: Optional[Callable[[Path, str], None]] = None) -> List[Path]:
    """Expand folders into their image files; keep other paths as given.

    A folder contributes its regular files (or links to regular files), not hidden ``.*`` ones, whose
    extension is one of :data:`IMAGE_EXTENSIONS` (any case), sorted by name. Any other path is kept as
    given, even if it does not exist or has another extension, so that :func:`load_images` reports it.
    Returns a list (folders are read eagerly, so errors surface here).

    Args:
        skipped: called as ``skipped(path, reason)`` for each folder entry left out that is not a plain
            file of another type: sub-folders, FIFOs, sockets, device files, dangling links and link loops,
            and once per folder with the count of files with other extensions.

    Raises:
        ImageLoadError: a folder contains no image files.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            try:
                entries = sorted(p.iterdir(), key=lambda q: q.name)
            except OSError as e:
                raise ImageLoadError(item, f"cannot list the folder: {e.strerror or e}") from None
            found, others = [], 0
            for q in entries:
                if q.name.startswith("."):
                    continue
                problem = _entry_problem(q)
                if problem is not None:
                    if skipped is not None:
                        skipped(q, problem)
                elif q.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(q)
                else:
                    others += 1
            if others and skipped is not None:
                skipped(p, f"{others} file(s) without an image extension ({', '.join(IMAGE_EXTENSIONS)})")
            if not found:
                raise ImageLoadError(
                    item, f"the folder contains no image files (looked for {', '.join(IMAGE_EXTENSIONS)})"
                )
            out.extend(found)
        else:
            out.append(p)
    return out


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """``[3, H, W]`` (or ``[1, H, W]``) in [-1, 1] -> PIL RGB (or L) image, via :func:`images.to_uint8`.

    Uses ``((x + 1) / 2).clamp(0, 1) * 255`` truncated to uint8, the same convention as ``to_uint8``.
    """
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image [3, H, W] or [1, H, W], got {list(img.shape)}")
    arr = to_uint8(img[None])[0]
    return Image.fromarray(np.ascontiguousarray(arr[..., 0]) if arr.shape[-1] == 1 else arr)
