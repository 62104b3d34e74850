"""The evaluated methods' names and ``--steps`` keys as plain data (no torch: the command line's help uses them).

:mod:`.registry` maps each name to its class and checks that the two lists agree."""

#: ``--methods`` names, in the report's row order.
METHOD_NAMES = ("w_encoder", "hyperinverter", "hyperinverter+refine", "w_opt", "wplus_opt", "pti")

#: ``--steps`` keys -> (method, config field).
STEP_KEYS = {
    "w_opt": ("w_opt", "steps"),
    "wplus_opt": ("wplus_opt", "steps"),
    "pti": ("pti", "steps"),
    "hyperinverter+refine": ("hyperinverter+refine", "steps"),
    "refine": ("hyperinverter+refine", "steps"),
    "pti.pivot": ("pti", "pivot_steps"),
    "pti_pivot": ("pti", "pivot_steps"),
}
