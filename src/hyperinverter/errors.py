"""Exceptions with messages meant for the user."""


class HyperInverterError(Exception):
    """Base class of the errors this package raises on bad input."""


class CheckpointError(HyperInverterError, ValueError):
    """A model file or folder is missing, corrupt, of an unknown format, or does not match the model."""


class UnsafePickleError(CheckpointError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


class DeclaredSizeError(CheckpointError):
    """A file declares sizes beyond the documented limits (``hyperinverter.utils.limits``) or beyond the bytes
    it holds; it was refused before anything was allocated for them."""
