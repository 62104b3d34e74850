"""The demo model's edit attributes as plain data (no torch: ``directions fit-portraits --help`` lists them)."""

#: Attributes the shipped demo model has directions for, in the order the demo shows them.
DEMO_ATTRIBUTES = ("smile", "yaw", "tilt", "glasses", "hair_lightness", "skin_tone")
