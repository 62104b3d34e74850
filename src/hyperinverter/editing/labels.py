"""Labelled latent codes for fitting a direction: a folder of inverted codes matched to a CSV of labels.

``hyperinverter invert`` writes ``<name>.codes.safetensors`` per image; a labels CSV names the images in a
``file`` (or ``filename``) column and has one column per attribute. :func:`labelled_codes` pairs them by
file stem (``img7.png`` labels ``img7.codes.safetensors``) into the ``[N, w_dim]`` codes and ``[N]`` labels
that :func:`~hyperinverter.editing.fit.fit_interfacegan` takes (``hyperinverter directions fit``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Union

import torch

PathLike = Union[str, os.PathLike]

#: File name ending of the codes files ``hyperinverter invert`` writes.
CODES_SUFFIX = ".codes.safetensors"
#: Fewest labelled codes a direction is fitted from.
MIN_LABELLED_CODES = 4


def read_labels(path: PathLike, attribute: str) -> dict[str, float]:
    """``{file stem: value}`` of the column ``attribute`` of the CSV ``path`` (files named in its ``file`` or
    ``filename`` column).

    Raises:
        ValueError: the CSV has no column ``attribute``, or a value in it is not a number (one line naming
            the file, and the row).
    """
    rows: dict[str, float] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if attribute not in (reader.fieldnames or []):
            raise ValueError(f"{path}: no column {attribute!r} (columns: {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            try:
                value = float(row[attribute])
            except (TypeError, ValueError):
                raise ValueError(f"{path}: line {line}: the {attribute!r} value {row[attribute]!r} is not a number"
                                 ) from None
            rows[Path(row.get("file") or row.get("filename") or "").stem] = value
    return rows


def labelled_codes(codes: PathLike, labels: PathLike, attribute: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``w`` of each ``*.codes.safetensors`` file in the folder ``codes`` that the CSV ``labels`` labels,
    flattened to ``[N, w_dim]``, and their ``[N]`` values of ``attribute`` (files in name order).

    Raises:
        ValueError: no column ``attribute`` (see :func:`read_labels`), or fewer than
            :data:`MIN_LABELLED_CODES` codes with a label.
    """
    from safetensors.torch import load_file

    rows = read_labels(labels, attribute)
    ws, values = [], []
    for path in sorted(Path(codes).glob("*" + CODES_SUFFIX)):
        stem = path.name[: -len(CODES_SUFFIX)]
        if stem in rows:
            ws.append(load_file(str(path))["w"].reshape(-1))
            values.append(rows[stem])
    if len(ws) < MIN_LABELLED_CODES:
        raise ValueError(f"only {len(ws)} codes in {codes} have a label in {labels} "
                         "(codes are matched to the 'file' column by name)")
    return torch.stack(ws), torch.tensor(values)


__all__ = ["CODES_SUFFIX", "MIN_LABELLED_CODES", "labelled_codes", "read_labels"]
