"""Writers of the official HyperInverter model-zoo file layout (from ../shared/reference/README.md)."""

from __future__ import annotations

from pathlib import Path

import torch

BACKBONE_NAME = {"ir_se": "LayerWiseEncoder", "ir": "LayerWiseEncoder", "resnet": "ResNetLayerWiseEncoder"}


def write_official_files(model, discriminator, directory: Path, dataset_type="ffhq_encode",
                         w_encoder_dataset_type=None, with_optimizers=True) -> tuple[Path, Path]:
    """Write ``hyperinverter.pt`` ({state_dict, opts, ...}) and ``w_encoder.pt`` ({state_dict: encoder.*, opts})."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    # Module registration order of the official HyperInverter: hypernet, w_encoder, discriminator, w_bar_encoder.
    state.update({f"hypernet.{k}": v.clone() for k, v in model.hypernet.state_dict().items()})
    state.update({f"w_encoder.{k}": torch.randn_like(v.float()).to(v.dtype)  # a stale copy: never read back
                  for k, v in model.w_encoder.state_dict().items()})
    if discriminator is not None:
        state.update({f"discriminator.{k}": v.clone() for k, v in discriminator.state_dict().items()})
    state.update({f"w_bar_encoder.{k}": v.clone() for k, v in model.w_bar_encoder.state_dict().items()})
    kind = model.w_bar_encoder.config.backbone.kind
    opts = {"exp_dir": "/experiments/x", "dataset_type": dataset_type, "encoder_type": BACKBONE_NAME[kind],
            "output_size": model.resolution, "batch_size": 8, "hidden_dim": model.config.hidden_dim,
            "target_shape_name": "conv_without_bias", "hyper_adv_lambda": 0.005, "device": "cuda:0",
            "n_styles": model.num_ws, "w_encoder_path": "pretrained_models/w_encoder.pt", "lpips_type": "alex"}
    ckpt = {"state_dict": state, "opts": opts}
    if with_optimizers:
        ckpt["encoder_optimizer"] = {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}
        ckpt["loss_dict"] = {"loss": 0.12}
    hi_path = directory / "hyperinverter.pt"
    torch.save(ckpt, hi_path)
    w_state = {f"encoder.{k}": v.clone() for k, v in model.w_encoder.state_dict().items()}
    w_state["decoder.style.1.weight"] = torch.zeros(2, 2)  # pSp files carry the decoder too; ignored
    w_path = directory / "w_encoder.pt"
    torch.save({"state_dict": w_state, "opts": {"dataset_type": w_encoder_dataset_type or dataset_type},
                "latent_avg": torch.zeros(model.generator.w_dim)}, w_path)
    return hi_path, w_path
