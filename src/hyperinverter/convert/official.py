"""The official HyperInverter model zoo: HyperInverter ``.pt`` + W-encoder ``.pt`` + a StyleGAN2 generator.

The HyperInverter file holds ``{"state_dict", "opts"[, optimiser states]}`` with the prefixes
``hypernet.``, ``w_encoder.``, ``discriminator.``, ``w_bar_encoder.``; the W-encoder (E1) is read
from its own file (``state_dict`` entries under ``encoder.``), as the official code does, and the
average latent is the generator's ``w_avg``. Architectures are read off the tensors and checked
against ``opts``; every tensor of both files is either loaded or accounted for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch

from ..encoders import BackboneConfig
from ..errors import CheckpointError
from ..stylegan2 import Discriminator, Generator
from ..stylegan2.formats import load_generator, read_model_file
from ..stylegan2.formats.infer import infer_discriminator_config
from ..checkpoints.pretrained import MAX_UNSTORED_ELEMENTS, build_within_budget, load_state_dict_checked
from ..utils.limits import allocation_budget, check_config_limits, describe, describe_all

PathLike = Union[str, os.PathLike]

#: ``opts.target_shape_name`` -> our target set.
OFFICIAL_TARGETS = {"conv_without_bias": "conv", "conv_without_bias_without_torgb": "conv_no_torgb",
                    "all_without_bias": "conv_affine"}
#: ``opts.encoder_type`` -> backbone family of E2 (and of the matching E1).
OFFICIAL_ENCODERS = {"LayerWiseEncoder": "ir", "ResNetLayerWiseEncoder": "resnet"}


@dataclass
class OfficialCheckpoint:
    """What :func:`load_official` returns: the model, the fine-tuned discriminator (if stored) and ``opts``."""

    model: Any  # HyperInverter
    discriminator: Optional[Discriminator]
    opts: dict


def _family(kind: str) -> str:
    return "resnet" if kind == "resnet" else "ir"


def infer_backbone(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """BackboneConfig fields from an encoder trunk's tensors (official key names).

    A stage starts at unit 0 and wherever a unit changes the channel count (it then has a projection
    shortcut); trunks whose consecutive stages have equal widths beyond the first cannot be told apart.
    """
    units = sorted({int(m.group(1)) for k in state for m in [re.match(r"body\.(\d+)\.", k)] if m})
    if not units or units != list(range(len(units))):
        raise CheckpointError(f"{source}: no encoder trunk (body.<i>.*) found")
    if "input_layer.0.weight" in state:
        kind = "ir_se" if "body.0.res_layer.5.fc1.weight" in state else "ir"
        stem = int(state["input_layer.0.weight"].shape[0])
        conv, shortcut = "res_layer.1.weight", "shortcut_layer.0.weight"
    elif "conv1.weight" in state:
        kind, stem = "resnet", int(state["conv1.weight"].shape[0])
        conv, shortcut = "conv1.weight", "downsample.0.weight"
    else:
        raise CheckpointError(f"{source}: unknown encoder stem (expected input_layer.* or conv1.*)")
    blocks: list[int] = []
    widths: list[int] = []
    for i in units:
        key = f"body.{i}.{conv}"
        if key not in state:
            raise CheckpointError(f"{source}: missing {key!r}")
        if i == 0 or f"body.{i}.{shortcut}" in state:
            blocks.append(0)
            widths.append(int(state[key].shape[0]))
        blocks[-1] += 1
    config = dict(kind=kind, blocks=blocks, widths=widths, stem_width=stem)
    if kind == "ir_se":
        config["se_reduction"] = max(1, widths[0] // int(state["body.0.res_layer.5.fc1.weight"].shape[0]))
    return config


def _split(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...], source: str) -> dict[str, dict]:
    parts: dict[str, dict] = {p: {} for p in prefixes}
    unknown = []
    for key, value in state.items():
        head = key.split(".", 1)[0]
        if head in parts and "." in key:
            parts[head][key.split(".", 1)[1]] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: unexpected tensors outside {list(prefixes)}: {unknown[:5]}")
    return parts


def _read_checkpoint(path: PathLike, what: str) -> dict:
    obj = read_model_file(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        found = describe_all(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{path}: not an official {what} checkpoint (expected a dict with 'state_dict' "
                              f"and 'opts'; found {found})")
    opts = obj.get("opts")
    if opts is not None and not isinstance(opts, Mapping):
        opts = vars(opts) if hasattr(opts, "__dict__") else None
    return {"state_dict": dict(obj["state_dict"]), "opts": dict(opts or {})}


def load_official(hyperinverter_ckpt: PathLike, w_encoder_ckpt: PathLike,
                  generator: Union[Generator, PathLike], device: Union[str, torch.device] = "cpu"
                  ) -> OfficialCheckpoint:
    """Build a :class:`~hyperinverter.HyperInverter` from the official files (see the module docstring).

    Raises:
        CheckpointError: a file is missing or corrupt, is not of this kind, or does not match the others
            (output resolution, hidden_dim, a W-encoder of another domain, shapes).
    """
    from ..inverter import HyperInverter

    G = generator if isinstance(generator, Generator) else load_generator(generator)
    ckpt = _read_checkpoint(hyperinverter_ckpt, "HyperInverter")
    source = str(hyperinverter_ckpt)
    opts = ckpt["opts"]
    parts = _split(ckpt["state_dict"], ("hypernet", "w_encoder", "discriminator", "w_bar_encoder"), source)
    if not parts["hypernet"] or not parts["w_bar_encoder"]:
        raise CheckpointError(f"{source}: no hypernet.* or w_bar_encoder.* tensors: not a HyperInverter checkpoint")

    output_size = int(opts.get("output_size", G.img_resolution))
    if output_size != G.img_resolution:
        raise CheckpointError(f"{source}: the checkpoint is for {output_size}px outputs but the generator is "
                              f"{G.img_resolution}px")
    target_name = opts.get("target_shape_name", "conv_without_bias")
    if not isinstance(target_name, str) or target_name not in OFFICIAL_TARGETS:
        raise CheckpointError(f"{source}: unknown target_shape_name {describe(target_name)}")
    first_w1 = next((v for k, v in parts["hypernet"].items() if k.endswith(".w1")), None)
    if first_w1 is None:
        raise CheckpointError(f"{source}: the hypernetwork has no weight regressors")
    hidden_dim = int(first_w1.shape[0])
    declared = opts.get("hidden_dim", hidden_dim)
    try:
        declared = int(declared)  # argparse opts: an int (a str or float elsewhere)
    except (TypeError, ValueError, OverflowError):
        pass
    if declared != hidden_dim:
        raise CheckpointError(f"{source}: opts say hidden_dim={describe(opts['hidden_dim'])} but the tensors have "
                              f"{hidden_dim}")

    # The regressors' stride-2 convs bring the E2 maps to 1x1: that fixes the map size, and so the input size
    # (256 for the released models: 8x8 maps, three convs).
    prefix = next(k for k in parts["hypernet"] if k.endswith(".w1"))[: -len("w1")]
    num_down = len([k for k in parts["hypernet"] if k.startswith(prefix + "feature_extractor.")
                    and k.endswith(".weight")]) - 1

    e2_backbone = infer_backbone(parts["w_bar_encoder"], f"{source}[w_bar_encoder]")
    encoder_type = opts.get("encoder_type", "")
    expected_family = OFFICIAL_ENCODERS.get(encoder_type if isinstance(encoder_type, str) else "",
                                            _family(e2_backbone["kind"]))
    if _family(e2_backbone["kind"]) != expected_family:
        raise CheckpointError(f"{source}: opts.encoder_type={describe(opts.get('encoder_type'))} does not match the "
                              f"stored {e2_backbone['kind']} trunk")
    num_slots = len({int(m.group(1)) for k in parts["w_bar_encoder"]
                     for m in [re.match(r"styles\.(\d+)\.", k)] if m})

    e1 = _read_checkpoint(w_encoder_ckpt, "W-encoder")
    e1_source = str(w_encoder_ckpt)
    e1_state = {k[len("encoder."):]: v for k, v in e1["state_dict"].items() if k.startswith("encoder.")}
    if not e1_state:
        raise CheckpointError(f"{e1_source}: no 'encoder.*' tensors in state_dict: not a W-encoder checkpoint")
    e1_backbone = infer_backbone(e1_state, e1_source)
    domain, e1_domain = opts.get("dataset_type"), e1["opts"].get("dataset_type")
    if _family(e1_backbone["kind"]) != _family(e2_backbone["kind"]) or (domain and e1_domain and domain != e1_domain):
        raise CheckpointError(f"{e1_source}: a W-encoder for another domain ({e1_backbone['kind']} trunk"
                              f"{', ' + str(e1_domain) if e1_domain else ''}) than the HyperInverter checkpoint "
                              f"({e2_backbone['kind']} trunk{', ' + str(domain) if domain else ''})")
    if "linear.weight" not in e1_state:
        raise CheckpointError(f"{e1_source}: the W-encoder has no 'encoder.linear.weight'")
    w_dim = int(e1_state["linear.weight"].shape[0])

    reduction = 2 * BackboneConfig(**e2_backbone).stage_reductions[-1]
    encoder_input_size = reduction * 2**num_down

    # The architecture read off the tensors is held to the limits, and building it to the tensors both files
    # hold (a lone [4096, 1] "w1" would otherwise make every regressor 4096 wide).
    w_encoder = {"backbone": e1_backbone, "w_dim": w_dim}
    layer_encoder = {"backbone": e2_backbone, "num_slots": num_slots}
    check_config_limits(dict(w_encoder=w_encoder, layer_encoder=layer_encoder, hidden_dim=hidden_dim,
                             encoder_input_size=encoder_input_size), source)
    stored = sum(t.numel() for t in (*ckpt["state_dict"].values(), *e1_state.values(), *G.state_dict().values()))
    try:
        with allocation_budget(2 * stored + MAX_UNSTORED_ELEMENTS,
                               f"{source}: a HyperInverter of the shapes in this checkpoint"):
            model = HyperInverter.from_generator(
                G, w_encoder=w_encoder, layer_encoder=layer_encoder, hidden_dim=hidden_dim,
                targets=OFFICIAL_TARGETS[target_name], encoder_input_size=encoder_input_size)
    except CheckpointError:
        raise
    except ValueError as e:
        raise CheckpointError(f"{source}: does not fit the generator: {e}") from None
    load_state_dict_checked(model.hypernet, parts["hypernet"], f"{source}[hypernet]")
    load_state_dict_checked(model.w_bar_encoder, parts["w_bar_encoder"], f"{source}[w_bar_encoder]")
    load_state_dict_checked(model.w_encoder, e1_state, f"{e1_source}[encoder]")

    discriminator = None
    if parts["discriminator"]:
        d_source = f"{source}[discriminator]"
        stored = sum(t.numel() for t in parts["discriminator"].values())
        discriminator = build_within_budget(Discriminator, infer_discriminator_config(parts["discriminator"], d_source),
                                            stored, d_source)
        load_state_dict_checked(discriminator, parts["discriminator"], d_source)
        discriminator = discriminator.to(device).eval()
    return OfficialCheckpoint(model=model.to(device).eval(), discriminator=discriminator, opts=opts)
