"""Per-page memory bounds of the web page (plain numbers: ``serve --help`` shows them without importing torch)."""

#: The most page sessions whose reconstruction is kept at once (the least recently used is released first).
DEFAULT_MAX_SESSIONS = 32

#: A page session's reconstruction is released after this many seconds without a request (30 minutes).
DEFAULT_IDLE_S = 1800.0

#: The photo kept for paste-back (aligned faces only) is downscaled to at most this many pixels (2 MP, 6 MB).
DEFAULT_KEEP_PHOTO_PIXELS = 2_000_000

#: Default and largest number of refine steps the page offers (per-image tuning, see hyperinverter.tuning).
DEFAULT_REFINE_STEPS = 30
MAX_REFINE_STEPS = 300
