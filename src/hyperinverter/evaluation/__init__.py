"""Evaluation of inversion methods as in the HyperInverter paper: baselines behind one interface,
reconstruction metrics, editability on the portrait domain, runtime, and reports.

* Methods (:data:`METHODS`, :func:`build_method`): ``w_encoder`` (phase I), ``hyperinverter`` (phase II),
  ``w_opt`` / ``wplus_opt`` (latent optimisation in W / W+), ``pti`` (pivotal tuning). Each is an
  :class:`InversionMethod`: ``invert(images) -> MethodOutput(reconstructions, codes, seconds)``.
* :func:`evaluate_methods` runs them on the same images; :func:`write_results` / :func:`write_grids` write
  ``results.md`` (the paper's table shape), ``results.json``, ``results.csv`` and example grids;
  :func:`measure_runtime` times batch sizes 1 and 8.
* Editability: :class:`AttributeRegressor` (+ :func:`train_attribute_regressor`) reads portrait attributes;
  :class:`EditabilityMeter` measures edits along directions from :func:`fit_attribute_directions`.
* The command line: ``hyperinverter evaluate`` and ``hyperinverter train-attributes`` (:mod:`.cli`).
"""

from .attributes import (DEFAULT_ATTRIBUTES, KNOWN_ATTRIBUTES, AttributeRegressor, AttributeRegressorConfig,
                         AttributeTrainConfig, LabelledPortraits, attribute_columns, evaluate_regressor,
                         load_labelled_portraits, render_labelled_portraits, save_regressor, train_attribute_regressor)
from .base import METHOD_KINDS, InversionMethod, MethodOutput, render_codes, synchronize
from .editability import (EditabilityConfig, EditabilityMeter, detail_correlation, fit_attribute_directions,
                          load_attribute_directions, save_attribute_directions)
from .encoders import EncoderMethodConfig, HyperInverterMethod, WEncoderMethod
from .optimization import LatentOptConfig, WOptimization, WPlusOptimization, optimize_latent, reconstruction_loss
from .pti import PTIConfig, PTIMethod
from .registry import METHOD_NAMES, METHODS, build_method, parse_method_names, parse_overrides
from .report import markdown_table, write_grids, write_results
from .runner import EditabilitySetup, MethodResult, evaluate_method, evaluate_methods
from .runtime import RUNTIME_BATCH_SIZES, measure_runtime

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "KNOWN_ATTRIBUTES",
    "METHODS",
    "METHOD_KINDS",
    "METHOD_NAMES",
    "RUNTIME_BATCH_SIZES",
    "AttributeRegressor",
    "AttributeRegressorConfig",
    "AttributeTrainConfig",
    "EditabilityConfig",
    "EditabilityMeter",
    "EditabilitySetup",
    "EncoderMethodConfig",
    "HyperInverterMethod",
    "InversionMethod",
    "LabelledPortraits",
    "LatentOptConfig",
    "MethodOutput",
    "MethodResult",
    "PTIConfig",
    "PTIMethod",
    "WEncoderMethod",
    "WOptimization",
    "WPlusOptimization",
    "attribute_columns",
    "build_method",
    "detail_correlation",
    "evaluate_method",
    "evaluate_methods",
    "evaluate_regressor",
    "fit_attribute_directions",
    "load_attribute_directions",
    "load_labelled_portraits",
    "markdown_table",
    "measure_runtime",
    "optimize_latent",
    "parse_method_names",
    "parse_overrides",
    "reconstruction_loss",
    "render_codes",
    "render_labelled_portraits",
    "save_attribute_directions",
    "save_regressor",
    "synchronize",
    "train_attribute_regressor",
    "write_grids",
    "write_results",
]
