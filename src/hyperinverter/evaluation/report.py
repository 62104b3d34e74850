"""Writing evaluation results: ``results.md`` (the paper's table shape), ``results.json``, ``results.csv``
and example grids.

Rows are methods; columns are those any method has a value for: MSE, LPIPS, PSNR, SSIM, MS-SSIM, ID
(ArcFace), dlib ID, FID, KID, the editability numbers, and seconds per image (while evaluating, and at
batch 1 and 8 when runtime was measured). Missing values print as "–".
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from .runner import MethodResult

Getter = Callable[[MethodResult], Optional[float]]


def _get(*keys: str) -> Getter:
    def get(r: MethodResult) -> Optional[float]:
        value: Any = r
        for k in keys:
            value = getattr(value, k, None) if not isinstance(value, dict) else value.get(k)
            if value is None:
                return None
        return float(value)
    return get


#: (csv key, table header, getter, format) in table order.
COLUMNS: list[tuple[str, str, Getter, str]] = [
    ("mse", "MSE ↓", _get("metrics", "mse"), "{:.4f}"),
    ("lpips", "LPIPS ↓", _get("metrics", "lpips"), "{:.4f}"),
    ("psnr", "PSNR ↑", _get("metrics", "psnr"), "{:.2f}"),
    ("ssim", "SSIM ↑", _get("metrics", "ssim"), "{:.4f}"),
    ("ms_ssim", "MS-SSIM ↑", _get("metrics", "ms_ssim"), "{:.4f}"),
    ("id", "ID ↑", _get("metrics", "id"), "{:.4f}"),
    ("dlib_id", "dlib ID ↑", _get("dlib", "cosine"), "{:.4f}"),
    ("dlib_distance", "dlib dist. ↓", _get("dlib", "distance"), "{:.4f}"),
    ("fid", "FID ↓", _get("fid", "fid"), "{:.2f}"),
    ("kid", "KID ↓", _get("fid", "kid_mean"), "{:.4f}"),
    ("edit_target_change", "Edit Δ ↑", _get("editability", "target_change"), "{:.3f}"),
    ("edit_entanglement", "Entangl. ↓", _get("editability", "entanglement"), "{:.3f}"),
    ("edit_detail_kept", "Detail kept ↑", _get("editability", "detail_kept"), "{:.3f}"),
    ("attribute_error", "Attr. err. ↓", _get("editability", "attribute_error"), "{:.3f}"),
    ("seconds_per_image", "s/img ↓", _get("seconds_per_image"), "{:.4g}"),
    ("runtime_b1", "s/img @1", lambda r: (r.runtime or {}).get(1), "{:.4g}"),
    ("runtime_b8", "s/img @8", lambda r: (r.runtime or {}).get(8), "{:.4g}"),
]


def _fmt(value: Optional[float], fmt: str) -> str:
    return "–" if value is None or not math.isfinite(value) else fmt.format(value)


def active_columns(results: Sequence[MethodResult]) -> list[tuple[str, str, Getter, str]]:
    """The columns at least one result has a value for."""
    return [c for c in COLUMNS if any(c[2](r) is not None for r in results)]


def markdown_table(results: Sequence[MethodResult]) -> str:
    """``| Method | Type | MSE ↓ | ... |`` with one row per method."""
    cols = active_columns(results)
    lines = ["| Method | Type | " + " | ".join(c[1] for c in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for r in results:
        lines.append(f"| {r.label} | {r.kind} | " + " | ".join(_fmt(c[2](r), c[3]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def editability_table(results: Sequence[MethodResult]) -> Optional[str]:
    """Per attribute: target change per unit strength and entanglement, one row per method (or None)."""
    with_edit = [r for r in results if r.editability]
    if not with_edit:
        return None
    attrs = list(with_edit[0].editability["per_attribute"])
    lines = ["| Method | " + " | ".join(f"{a}: Δ/unit, entangl." for a in attrs) + " |",
             "|---|" + "---:|" * len(attrs)]
    for r in with_edit:
        per = r.editability["per_attribute"]
        cells = [f"{_fmt(per[a]['target_change_per_unit'], '{:+.3f}')}, {_fmt(per[a]['entanglement'], '{:.3f}')}"
                 if a in per else "–" for a in attrs]
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: Sequence[MethodResult], out_dir: Path, meta: dict,
                  notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``results.md``, ``results.json`` and ``results.csv`` to ``out_dir`` (each atomically); returns
    their paths."""
    from ..utils.outputs import write_text_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = ["# Inversion evaluation\n\n", f"{meta.get('num_images')} images from `{meta.get('data')}`, "
          f"model `{meta.get('model')}` ({meta.get('resolution')} px), device {meta.get('device')}.\n\n",
          markdown_table(results)]
    edit = editability_table(results)
    if edit:
        md += ["\n## Editability per attribute\n\n",
               "Δ/unit: change of the edited attribute (attribute units) per unit of edit strength in W; "
               "entangl.: mean change of the other attributes (0..1 scale) at the edit strength.\n\n", edit]
    md.append("\n## Notes\n\n")
    md += [f"- {n}\n" for n in notes]
    md.append("- Figures: examples.png has one row per image (input, then each method in table order); "
              "examples_<method>.png inputs over reconstructions; edits_<method>.png per image the edit at -s, "
              "the reconstruction and the edit at +s along the first direction.\n")
    md.append("- Columns: MSE and LPIPS at 256x256 on [-1, 1] images; PSNR, SSIM, MS-SSIM at full resolution; "
              "s/img: wall time per image while evaluating (batches of "
              f"{meta.get('batch_size')}, warm-up excluded); s/img @1 / @8: timed at batch 1 and 8.\n")
    paths = {"md": out_dir / "results.md", "json": out_dir / "results.json", "csv": out_dir / "results.csv"}
    write_text_atomic(paths["md"], "".join(md))
    payload = {"meta": meta, "notes": list(notes), "methods": [r.to_dict() for r in results]}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, default=str) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    keys = [c[0] for c in COLUMNS]
    writer.writerow(["method", "label", "kind", "num_images", *keys])
    for r in results:
        row = [c[2](r) for c in COLUMNS]
        writer.writerow([r.name, r.label, r.kind, r.num_images,
                         *("" if v is None or not math.isfinite(v) else repr(v) for v in row)])
    write_text_atomic(paths["csv"], buf.getvalue())
    return paths


def write_grids(results: Sequence[MethodResult], inputs: torch.Tensor, out_dir: Path) -> list[Path]:
    """``examples.png`` (columns: input, then each method), ``examples_<method>.png`` (row 1 inputs, row 2
    reconstructions) and ``edits_<method>.png`` (per image: -s, reconstruction, +s) when available."""
    from ..utils.images import make_grid, save_image

    out_dir = Path(out_dir)
    written = []
    with_examples = [r for r in results if r.examples is not None]
    if not with_examples:
        return written
    k = min(len(inputs), *(len(r.examples) for r in with_examples))
    inputs = inputs[:k].cpu()
    columns = [inputs] + [r.examples[:k] for r in with_examples]
    tiles = torch.stack(columns, dim=1).flatten(0, 1)  # row i: input i, then each method's reconstruction
    written.append(save_image(make_grid(tiles, columns=len(columns)), out_dir / "examples.png"))
    for r in with_examples:
        pair = torch.cat([inputs, r.examples[:k]])
        written.append(save_image(make_grid(pair, columns=k), out_dir / f"examples_{r.name}.png"))
        if r.edit_examples is not None:
            written.append(save_image(make_grid(r.edit_examples, columns=3), out_dir / f"edits_{r.name}.png"))
    return written
