"""The ``align`` and ``paste-back`` commands, and helpers for ``invert --align`` / ``edit --align``.

This module imports without dlib; dlib is loaded when a command runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..utils.outputs import OutputPlan, atomic_write, check_writable, unique_output_names, write_text_atomic
from .errors import FaceError

ALIGNMENT_SUFFIX = ".json"
#: The files ``align`` writes per photo (``{}`` is the photo's output name); with ``--all-faces`` each face
#: ``i`` gets ``{}_face<i>.png`` and ``{}_face<i>.json``.
ALIGN_OUTPUTS = ("{}.png", "{}" + ALIGNMENT_SUFFIX)
_FACE_FILE = re.compile(r"^(.*)_face\d+\.(?:png|json)$", re.IGNORECASE)


@dataclass
class AlignReport:
    """What :func:`align_files` wrote and skipped: ``written`` holds ``(crop.png, crop.json)`` pairs."""

    written: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def crops(self) -> list[Path]:
        """The crop image files, in order."""
        return [crop for crop, _ in self.written]


def _image_format(path: Path) -> str:
    """Pillow's format name for the extension of ``path``; :class:`FaceError` for an unknown extension."""
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise FaceError(f"{path}: unknown image file extension {path.suffix!r} (use .png or .jpg)")
    return fmt


def _save(image, path: Path) -> Path:
    """Save a PIL image atomically (:func:`~hyperinverter.utils.outputs.atomic_write`: a failed write leaves
    an existing file as it was), JPEG at quality 95, with a clear error for formats that cannot hold its mode.
    Whether ``path`` may be replaced is the caller's decision (:class:`~hyperinverter.utils.outputs.OutputPlan`)."""
    fmt = _image_format(path)
    options = {"quality": 95} if fmt == "JPEG" else {}
    try:
        atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **options))
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, OSError) and e.filename is not None:  # the folder, not the format: one line naming it
            raise FaceError(f"{path}: cannot write ({e.strerror or type(e).__name__})") from e
        raise FaceError(f"{path}: cannot write a {image.mode} image in this format ({e}); use .png") from e
    return path


def plan_align_outputs(paths: Sequence[Path], out_dir: Path, all_faces: bool = False, overwrite: bool = False,
                       plan: Optional[OutputPlan] = None) -> list[str]:
    """Output names for :func:`align_files`, checked before any work; one name per photo (same order).

    Each photo gets ``<name>.png`` + ``<name>.json`` (with ``all_faces``: ``<name>_face<i>.png`` + ``.json``
    for each face ``i``), the names chosen so that no two photos share a file (``a.jpg``, ``a.png`` -> ``a``,
    ``a_1``). Refused (one line naming the files, nothing written): an output that is one of the photos, and
    existing outputs unless ``overwrite``. With ``all_faces`` the number of faces is not known before the
    detection, so every existing ``<name>_face<i>.*`` in ``out_dir`` counts as an output, and so does face 0.

    ``plan``: add to this :class:`OutputPlan` and leave the check to the caller (``invert --align``); without
    it the outputs are checked here and ``out_dir`` is tried for writing.
    """
    paths = [Path(p) for p in paths]
    out_dir = Path(out_dir)
    names = unique_output_names(paths, ("{}",) if all_faces else ALIGN_OUTPUTS)
    own = plan is None
    if own:
        plan = OutputPlan(inputs=paths, overwrite=overwrite)
    if all_faces:
        existing: dict[str, list[str]] = {}
        if out_dir.is_dir():
            for entry in sorted(out_dir.iterdir(), key=lambda q: q.name):
                found = _FACE_FILE.match(entry.name)
                if found:
                    existing.setdefault(found.group(1).lower(), []).append(entry.name)
        for path, name in zip(paths, names):
            first = [f"{name}_face0.png", f"{name}_face0{ALIGNMENT_SUFFIX}"]
            files = first + [f for f in existing.get(name.lower(), []) if f.lower() not in {g.lower() for g in first}]
            plan.add_folder_files(out_dir, files, what=str(path))
    else:
        for path, name in zip(paths, names):
            plan.add_folder_files(out_dir, [p.format(name) for p in ALIGN_OUTPUTS], what=str(path))
    if own:
        plan.check()
        check_writable(out_dir)
    return names


def plan_invert_align(paths: Sequence[Path], out_dir: Path, overwrite: bool = False) -> list[str]:
    """``invert --align``, before any work: the crops and records (``<out_dir>/aligned``) and the inversions of
    the crops (``<out_dir>``) checked together against the photos and existing files (see
    :func:`plan_align_outputs`); returns the crops' names for :func:`align_files`."""
    from ..workflows import INVERT_OUTPUTS

    plan = OutputPlan(inputs=paths, overwrite=overwrite)
    aligned = Path(out_dir) / "aligned"
    names = plan_align_outputs(paths, aligned, plan=plan)
    crops = [aligned / f"{n}.png" for n in names]
    for crop, name in zip(crops, unique_output_names(crops, INVERT_OUTPUTS)):
        plan.add_folder_files(out_dir, [p.format(name) for p in INVERT_OUTPUTS], what=str(crop))
    plan.check()
    check_writable(aligned)
    return names


def check_crop_inversions(photos: Sequence[Path], crops: Sequence[Path], out_dir: Path) -> None:
    """``invert --align``, after aligning: the inversions of the crops that were made (their names can differ
    from the planned ones when some photos had no face) must not replace a photo, even with ``--overwrite``."""
    from ..workflows import INVERT_OUTPUTS

    plan = OutputPlan(inputs=photos, overwrite=True)
    for crop, name in zip(crops, unique_output_names(crops, INVERT_OUTPUTS)):
        plan.add_folder_files(out_dir, [p.format(name) for p in INVERT_OUTPUTS], what=str(crop))
    plan.check()


def align_files(paths: Sequence[Path], out_dir: Path, size: int, all_faces: bool = False,
                landmarks: Optional[Path] = None, min_score: Optional[float] = None, aligner=None,
                names: Optional[Sequence[str]] = None) -> AlignReport:
    """Align every photo in ``paths``; write ``<name>.png`` + ``<name>.json`` per face (``<name>_face<i>``
    with ``all_faces``) into ``out_dir``, each file atomically. Photos that fail (no face, several faces,
    unreadable) are reported in ``failed`` and skipped; a missing dlib or landmark model raises at once.

    ``names``: one output name per photo, as :func:`plan_align_outputs` returns them after checking that no
    output replaces a photo or an existing file (call it first); default: the same names, unchecked.
    """
    from ..utils.image_io import ImageLoadError
    from .align import DEFAULT_MIN_SCORE, FaceAligner
    from .photo import open_photo

    if aligner is None:
        aligner = FaceAligner(landmarks, output_size=size,
                              min_score=DEFAULT_MIN_SCORE if min_score is None else min_score)
    out_dir.mkdir(parents=True, exist_ok=True)
    if names is None:
        names = unique_output_names(paths, ("{}",) if all_faces else ALIGN_OUTPUTS)
    if len(names) != len(paths):
        raise ValueError(f"align_files: {len(names)} names for {len(paths)} photos")
    report = AlignReport()
    for path, stem in zip(paths, names):
        try:
            photo = open_photo(path)
            faces = aligner.align(photo, all_faces=all_faces, output_size=size)
        except (FaceError, ImageLoadError) as e:
            message = str(e)
            report.failed.append((Path(path), message if message.startswith(str(path)) else f"{path}: {message}"))
            continue
        for i, face in enumerate(faces):
            name = f"{stem}_face{i}" if all_faces else stem
            crop = _save(face.image, out_dir / f"{name}.png")
            record = {**face.to_dict(), "photo": str(path), "crop": crop.name, "face_index": i}
            meta = write_text_atomic(out_dir / f"{name}{ALIGNMENT_SUFFIX}", json.dumps(record, indent=1))
            report.written.append((crop, meta))
    return report


def load_alignment(path: Path):
    """An :class:`~hyperinverter.faces.AlignedFace` (without pixels) from a JSON written by ``align``."""
    from .align import AlignedFace

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FaceError(f"{path}: alignment file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FaceError(f"{path}: not a JSON alignment file written by 'hyperinverter align' ({e})") from None
    try:
        return AlignedFace.from_dict(data)
    except FaceError as e:
        raise FaceError(f"{path}: {e}") from None


def align_one(image: Path, out_dir: Path, size: int, landmarks: Optional[Path] = None):
    """``edit --align``: align the single face of ``image``; returns ``(face, photo, crop_path)``."""
    from .align import FaceAligner
    from .photo import open_photo

    photo = open_photo(image)
    face = FaceAligner(landmarks, output_size=size).align(photo)[0]
    crop = _save(face.image, out_dir / f"{image.stem}_aligned.png")
    write_text_atomic(out_dir / f"{image.stem}_aligned{ALIGNMENT_SUFFIX}",
                      json.dumps({**face.to_dict(), "photo": str(image), "crop": crop.name, "face_index": 0}, indent=1))
    return face, photo, crop


def save_pasted(face, photo, images, path: Path) -> Path:
    """Paste the first image of a ``[B, 3, H, W]`` tensor in [-1, 1] back into ``photo`` and save it as
    ``<path>.png`` (``path`` has no extension: ``.png`` is appended to its name)."""
    from PIL import Image

    from ..utils.images import to_uint8

    pasted = face.paste_back(Image.fromarray(to_uint8(images[:1])[0]), photo)
    return _save(pasted, path.with_name(path.name + ".png"))


def cmd_align(args: argparse.Namespace) -> int:
    from ..utils.image_io import iter_image_paths

    paths = iter_image_paths(args.photos)
    names = plan_align_outputs(paths, args.output, args.all_faces, args.overwrite)  # refuse before any work
    start = time.perf_counter()
    report = align_files(paths, args.output, args.size, all_faces=args.all_faces, landmarks=args.landmarks,
                         min_score=args.min_score, names=names)
    for _, message in report.failed:
        print(f"skipped: {message}", file=sys.stderr)
    print(f"wrote {len(report.written)} aligned {args.size}px crops (<name>.png + <name>.json) to {args.output} "
          f"from {len(paths)} photos in {time.perf_counter() - start:.1f} s; {len(report.failed)} skipped")
    return 1 if report.failed else 0


def cmd_paste_back(args: argparse.Namespace) -> int:
    from .photo import open_photo

    plan = OutputPlan(inputs=[args.photo, args.alignment, args.edited], overwrite=args.overwrite)
    plan.add(args.output)
    plan.check()  # the output is never one of the inputs, even with --overwrite
    _image_format(args.output)
    check_writable(args.output.parent)
    face = load_alignment(args.alignment)
    photo = open_photo(args.photo)
    edited = open_photo(args.edited, min_size=1)
    out = _save(face.paste_back(edited, photo, feather=args.feather), args.output)
    print(f"wrote {out} ({photo.width}x{photo.height}, {photo.mode}): {args.edited} pasted back onto the face "
          f"of {args.photo}")
    return 0


def add_commands(sub) -> None:
    """Register ``align`` and ``paste-back`` on the ``hyperinverter`` sub-command parser ``sub``."""
    from .paste import DEFAULT_FEATHER

    p = sub.add_parser("align", help="find faces in photos and cut out FFHQ-aligned crops (+ JSON for paste-back)")
    p.add_argument("photos", nargs="+", type=Path, help="photo files or folders")
    p.add_argument("--output", "-o", type=Path, required=True, help="folder for <name>.png and <name>.json")
    p.add_argument("--size", type=int, default=256, help="side of the aligned crops in pixels")
    p.add_argument("--all-faces", action="store_true",
                   help="align every face found (<name>_face<i>.png) instead of expecting exactly one")
    p.add_argument("--landmarks", type=Path, default=None,
                   help="dlib shape_predictor_68_face_landmarks.dat (default: $HYPERINVERTER_DLIB_LANDMARKS, the "
                        "face_recognition_models package, /usr/share/dlib)")
    p.add_argument("--min-score", type=float, default=None, help="ignore detections scoring below this (0.3)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing crops and records in the output folder (default: refuse, listing them; "
                        "a photo is never replaced)")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("paste-back", help="put an edited aligned crop back into the original photo")
    p.add_argument("--photo", type=Path, required=True, help="the photo given to 'hyperinverter align'")
    p.add_argument("--alignment", type=Path, required=True, help="the crop's <name>.json written by align")
    p.add_argument("--edited", type=Path, required=True, help="the edited crop (any size)")
    p.add_argument("--output", "-o", type=Path, required=True, help="output photo file")
    p.add_argument("--feather", type=float, default=DEFAULT_FEATHER,
                   help="width of the soft border, as a fraction of the crop's side")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (default: refuse; an input is never replaced)")
    p.set_defaults(func=cmd_paste_back)


__all__ = ["ALIGN_OUTPUTS", "AlignReport", "add_commands", "align_files", "align_one", "check_crop_inversions",
           "cmd_align", "cmd_paste_back", "load_alignment", "plan_align_outputs", "plan_invert_align", "save_pasted"]
