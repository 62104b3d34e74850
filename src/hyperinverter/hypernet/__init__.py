"""Target-layer selection (derived from the generator) and the per-layer weight regressors."""

from .hypernetwork import Hypernetwork
from .regressor import WeightRegressor
from .targets import TARGET_SETS, TargetLayer, target_layers

__all__ = ["Hypernetwork", "TARGET_SETS", "TargetLayer", "WeightRegressor", "target_layers"]
