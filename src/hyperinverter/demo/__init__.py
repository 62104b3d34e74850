"""The offline demo domain put to work: directions fitted on labelled portraits, and ``hyperinverter demo``."""

from .directions import (DEMO_ATTRIBUTES, DERIVED_ATTRIBUTES, LabelledCodes, attribute_values, encode_portraits,
                         fit_portrait_directions)
from .run import DemoOptions, DemoReport, labelled_grid, run_demo

__all__ = ["DEMO_ATTRIBUTES", "DERIVED_ATTRIBUTES", "DemoOptions", "DemoReport", "LabelledCodes", "attribute_values",
           "encode_portraits", "fit_portrait_directions", "labelled_grid", "run_demo"]
