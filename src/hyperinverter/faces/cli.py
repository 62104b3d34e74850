"""The ``align`` and ``paste-back`` commands, and helpers for ``invert --align`` / ``edit --align``.

This module imports without dlib; dlib is loaded when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .errors import FaceError

ALIGNMENT_SUFFIX = ".json"


@dataclass
class AlignReport:
    """What :func:`align_files` wrote and skipped: ``written`` holds ``(crop.png, crop.json)`` pairs."""

    written: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def crops(self) -> list[Path]:
        """The crop image files, in order."""
        return [crop for crop, _ in self.written]


def _save(image, path: Path) -> Path:
    """Save a PIL image (JPEG at quality 95), with a clear error for formats that cannot hold its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    try:
        image.save(path, **options)
    except (OSError, ValueError, KeyError) as e:
        raise FaceError(f"{path}: cannot write a {image.mode} image in this format ({e}); use .png") from e
    return path


def align_files(paths: Sequence[Path], out_dir: Path, size: int, all_faces: bool = False,
                landmarks: Optional[Path] = None, min_score: Optional[float] = None, aligner=None) -> AlignReport:
    """Align every photo in ``paths``; write ``<stem>.png`` + ``<stem>.json`` per face (``<stem>_face<i>``
    with ``all_faces``) into ``out_dir``. Photos that fail (no face, several faces, unreadable) are
    reported in ``failed`` and skipped; a missing dlib or landmark model raises at once."""
    from ..utils.image_io import ImageLoadError
    from .align import DEFAULT_MIN_SCORE, FaceAligner
    from .photo import open_photo

    if aligner is None:
        aligner = FaceAligner(landmarks, output_size=size,
                              min_score=DEFAULT_MIN_SCORE if min_score is None else min_score)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = AlignReport()
    used: set[str] = set()
    for path in paths:
        try:
            photo = open_photo(path)
            faces = aligner.align(photo, all_faces=all_faces, output_size=size)
        except (FaceError, ImageLoadError) as e:
            message = str(e)
            report.failed.append((Path(path), message if message.startswith(str(path)) else f"{path}: {message}"))
            continue
        stem = Path(path).stem
        n = 1
        while stem in used:  # two photos with one name (a/x.jpg, b/x.png)
            stem, n = f"{Path(path).stem}_{n}", n + 1
        used.add(stem)
        for i, face in enumerate(faces):
            name = f"{stem}_face{i}" if all_faces else stem
            crop = _save(face.image, out_dir / f"{name}.png")
            record = {**face.to_dict(), "photo": str(path), "crop": crop.name, "face_index": i}
            meta = out_dir / f"{name}{ALIGNMENT_SUFFIX}"
            meta.write_text(json.dumps(record, indent=1))
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
    (out_dir / f"{image.stem}_aligned{ALIGNMENT_SUFFIX}").write_text(
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
    start = time.perf_counter()
    report = align_files(paths, args.output, args.size, all_faces=args.all_faces, landmarks=args.landmarks,
                         min_score=args.min_score)
    for _, message in report.failed:
        print(f"skipped: {message}", file=sys.stderr)
    print(f"wrote {len(report.written)} aligned {args.size}px crops (<name>.png + <name>.json) to {args.output} "
          f"from {len(paths)} photos in {time.perf_counter() - start:.1f} s; {len(report.failed)} skipped")
    return 1 if report.failed else 0


def cmd_paste_back(args: argparse.Namespace) -> int:
    from .photo import open_photo

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
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("paste-back", help="put an edited aligned crop back into the original photo")
    p.add_argument("--photo", type=Path, required=True, help="the photo given to 'hyperinverter align'")
    p.add_argument("--alignment", type=Path, required=True, help="the crop's <name>.json written by align")
    p.add_argument("--edited", type=Path, required=True, help="the edited crop (any size)")
    p.add_argument("--output", "-o", type=Path, required=True, help="output photo file")
    p.add_argument("--feather", type=float, default=DEFAULT_FEATHER,
                   help="width of the soft border, as a fraction of the crop's side")
    p.set_defaults(func=cmd_paste_back)


__all__ = ["AlignReport", "add_commands", "align_files", "align_one", "cmd_align", "cmd_paste_back",
           "load_alignment", "save_pasted"]
