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

from __future__ import annotations

from ..lazy import lazy_exports

#: public name -> module that defines it (imported on first use: see hyperinverter.lazy)
_EXPORTS = {
    **dict.fromkeys((
        'DEFAULT_ATTRIBUTES', 'KNOWN_ATTRIBUTES', 'AttributeRegressor', 'AttributeRegressorConfig',
        'AttributeTrainConfig', 'LabelledPortraits', 'attribute_columns', 'evaluate_regressor',
        'load_labelled_portraits', 'render_labelled_portraits', 'save_regressor', 'train_attribute_regressor'
    ), '.attributes'),
    **dict.fromkeys(('METHOD_KINDS', 'InversionMethod', 'MethodOutput', 'render_codes', 'synchronize'), '.base'),
    **dict.fromkeys((
        'EditabilityConfig', 'EditabilityMeter', 'detail_correlation', 'fit_attribute_directions',
        'load_attribute_directions', 'save_attribute_directions'
    ), '.editability'),
    **dict.fromkeys(('EncoderMethodConfig', 'HyperInverterMethod', 'WEncoderMethod'), '.encoders'),
    **dict.fromkeys((
        'LatentOptConfig', 'WOptimization', 'WPlusOptimization', 'optimize_latent', 'reconstruction_loss'
    ), '.optimization'),
    **dict.fromkeys(('PTIConfig', 'PTIMethod'), '.pti'),
    **dict.fromkeys((
        'METHOD_NAMES', 'METHODS', 'build_method', 'parse_method_names', 'parse_overrides'
    ), '.registry'),
    **dict.fromkeys(('markdown_table', 'write_grids', 'write_results'), '.report'),
    **dict.fromkeys(('EditabilitySetup', 'MethodResult', 'evaluate_method', 'evaluate_methods'), '.runner'),
    **dict.fromkeys(('RUNTIME_BATCH_SIZES', 'measure_runtime'), '.runtime'),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
