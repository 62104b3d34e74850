"""The demo domain's names as plain data (no torch, no numpy: the command line's help and choices list them)."""

#: Attributes the shipped demo model has directions for, in the order the demo shows them.
DEMO_ATTRIBUTES = ("smile", "yaw", "tilt", "glasses", "hair_lightness", "skin_tone")
#: The names of :data:`hyperinverter.portraits.FRAMINGS`, in its order (``--framing`` choices).
FRAMING_NAMES = ("portrait", "face", "aligned")
