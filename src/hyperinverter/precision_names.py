"""The inference precision names (no torch: ``--precision`` choices are built from them)."""

PRECISIONS = ("fp32", "bf16", "fp16")
