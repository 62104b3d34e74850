"""The demo's ``index.html``: one self-contained page (no scripts, no external files) over the demo folder."""

from __future__ import annotations

import html
from pathlib import Path

from ..utils.outputs import write_text_atomic

#: The page's file name in the demo folder.
INDEX_NAME = "index.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
img.pix { image-rendering: pixelated; max-width: 100%; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.note { color: #a60; }
"""


def _rel(path: Path, root: Path) -> str:
    return html.escape(path.relative_to(root).as_posix())


def write_index(report, source: str, resolution: int) -> Path:
    """Write ``<out_dir>/index.html`` for a :class:`~hyperinverter.demo.run.DemoReport`; returns its path."""
    root = report.out_dir
    s = report.summary
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>hyperinverter demo</title>"
             f"<style>{_STYLE}</style></head><body>",
             "<h1>hyperinverter demo</h1>",
             f"<p>{html.escape(source)}, {resolution}&times;{resolution}. Phase I encodes each image to one code "
             "<i>w</i>; HyperInverter adds residual weights &Delta;&theta; predicted by the hypernetworks. "
             "Edits move <i>w</i> and keep &Delta;&theta;.</p>",
             "<h2>Mean reconstruction quality</h2><table><tr><th>method</th><th>MSE &darr;</th>"
             "<th>PSNR (dB) &uarr;</th><th>SSIM &uarr;</th></tr>"]
    for phase, label in (("phase1", "phase I (W encoder)"), ("hyperinverter", "HyperInverter (W + &Delta;&theta;)")):
        m = s[phase]
        parts.append(f"<tr><td>{label}</td><td>{m['mse']:.4f}</td><td>{m['psnr']:.2f}</td>"
                     f"<td>{m['ssim']:.4f}</td></tr>")
    parts.append("</table>")
    edits = ", ".join(html.escape(d) for d in report.directions) or "none (the model has no directions)"
    parts.append(f"<h2>Inversions and edits</h2><p>Columns: input | phase I | HyperInverter | edits ({edits}), "
                 "each at minus and plus its strength.</p>"
                 f"<img class='pix' src='{_rel(report.files['grid'], root)}' alt='inversions and edits'>")
    if "interpolation_gif" in report.files:
        parts.append("<h2>Interpolation</h2><p>Between the first two inversions: <i>w</i> and every "
                     "&Delta;&theta; blended.</p>"
                     f"<img class='pix' width='{4 * resolution}' src='{_rel(report.files['interpolation_gif'], root)}'"
                     " alt='interpolation'><br>"
                     f"<img class='pix' src='{_rel(report.files['interpolation_strip'], root)}' alt='frames'>")
    if "samples" in report.files:
        parts.append("<h2>Generator samples</h2><p>Random codes through the StyleGAN2 alone.</p>"
                     f"<img class='pix' src='{_rel(report.files['samples'], root)}' alt='samples'>")
    parts.append("<h2>Per image</h2><table><tr><th>image</th><th>MSE phase I</th><th>MSE HyperInverter</th>"
                 "<th>PSNR phase I</th><th>PSNR HyperInverter</th><th>SSIM phase I</th>"
                 "<th>SSIM HyperInverter</th></tr>")
    for row in report.per_image:
        parts.append(f"<tr><td>{html.escape(row['image'])}</td><td>{row['mse_phase1']:.4f}</td>"
                     f"<td>{row['mse_hyperinverter']:.4f}</td><td>{row['psnr_phase1']:.2f}</td>"
                     f"<td>{row['psnr_hyperinverter']:.2f}</td><td>{row['ssim_phase1']:.4f}</td>"
                     f"<td>{row['ssim_hyperinverter']:.4f}</td></tr>")
    parts.append("</table><p>Files: <a href='metrics.csv'>metrics.csv</a>, <a href='metrics.json'>metrics.json</a>, "
                 "<a href='images/'>images/</a>.</p>")
    for warning in report.warnings:
        parts.append(f"<p class='note'><b>Warning:</b> {html.escape(warning)}</p>")
    for note in report.notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("</body></html>\n")
    return write_text_atomic(root / INDEX_NAME, "\n".join(parts))


__all__ = ["INDEX_NAME", "write_index"]
