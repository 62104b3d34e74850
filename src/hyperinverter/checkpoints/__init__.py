"""Our checkpoint format (config.json + model.safetensors)."""

from .pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedMixin, config_from_dict, load_state_dict_checked

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "PretrainedMixin", "config_from_dict", "load_state_dict_checked"]
