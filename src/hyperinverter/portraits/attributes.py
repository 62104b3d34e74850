"""What decides a procedural portrait, and how it is drawn from a seed or from a Gaussian vector.

Every portrait is a function of its :class:`PortraitAttributes`; :func:`sample_attributes` draws those
from a seed, so a seed names an image exactly (same seed -> identical pixels, on any machine with the
same numpy / Pillow). The attributes come in two kinds:

* global attributes a single W code of a GAN should capture (background, skin tone, face shape, head
  pose, hair colour and style, eyes, eyebrows, smile, glasses, light direction, clothes colour);
* fine detail it is not expected to capture: freckles (count; positions from ``detail_seed``), thin hair
  strands, the stripes / dots of the collar and earrings, all placed by ``detail_seed``. Changing only
  ``detail_seed`` moves these and leaves the rest of the image unchanged.

:func:`attributes_from_latent` is the same distribution read from a Gaussian vector instead of a random
stream (:class:`LatentDraws`): the fixed map from a generator's ``z`` to a portrait that the demo generator
learns. :meth:`PortraitAttributes.to_vector` gives the :data:`ATTRIBUTE_NAMES` entries, in
:data:`ATTRIBUTE_RANGES`.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

RGB = Tuple[float, float, float]

#: Hair styles, in the order of ``PortraitAttributes.hair_style``.
HAIR_STYLES = ("short", "long", "bob", "buzz", "curly", "bun")
#: Collar patterns, in the order of ``PortraitAttributes.collar_pattern``.
COLLAR_PATTERNS = ("plain", "stripes", "dots")
#: Most freckles a portrait has.
MAX_FRECKLES = 40
#: Head yaw at ``yaw = +-1``, in radians (40 degrees).
MAX_YAW = math.radians(40.0)

#: Entries of :meth:`PortraitAttributes.to_vector`, in order. Continuous attributes appear as they are
#: (colours as three channels in [0, 1], angles in degrees); categorical ones (``hair_style``,
#: ``collar_pattern``) one-hot, one entry per category; booleans as 0 / 1. ``detail_seed`` is left out
#: (it is an identifier, not a quantity). Ranges of every entry: :data:`ATTRIBUTE_RANGES`.
ATTRIBUTE_NAMES: List[str] = [
    "background_r", "background_g", "background_b",
    "background_gradient_x", "background_gradient_y",
    "skin_tone", "face_width", "jaw_roundness", "yaw", "tilt",
    "hair_r", "hair_g", "hair_b",
    *[f"hair_style_{s}" for s in HAIR_STYLES],
    "eye_size", "iris_r", "iris_g", "iris_b",
    "eyebrow_angle", "smile", "glasses",
    "light_x", "light_y",
    "clothes_r", "clothes_g", "clothes_b",
    *[f"collar_{p}" for p in COLLAR_PATTERNS],
    "earring", "freckles",
]

# Closed ranges of the scalar fields (checked by PortraitAttributes and drawn from by sample_attributes).
_FIELD_RANGES: Dict[str, Tuple[float, float]] = {
    "skin_tone": (0.0, 1.0),
    "face_width": (0.68, 0.90),
    "jaw_roundness": (0.0, 1.0),
    "yaw": (-1.0, 1.0),
    "tilt": (-15.0, 15.0),
    "eye_size": (0.75, 1.3),
    "eyebrow_angle": (-20.0, 20.0),
    "smile": (-1.0, 1.0),
    "freckles": (0, MAX_FRECKLES),
}


def _vector_ranges() -> Dict[str, Tuple[float, float]]:
    ranges = {}
    for name in ATTRIBUTE_NAMES:
        if name in _FIELD_RANGES:
            ranges[name] = tuple(float(x) for x in _FIELD_RANGES[name])
        elif name.startswith(("background_gradient", "light_")):
            ranges[name] = (-1.0, 1.0)  # components of a vector of length <= 1
        else:
            ranges[name] = (0.0, 1.0)  # colour channels, one-hot entries, booleans
    return ranges


#: ``name -> (low, high)``: the closed range of each :data:`ATTRIBUTE_NAMES` entry.
ATTRIBUTE_RANGES: Dict[str, Tuple[float, float]] = _vector_ranges()


@dataclass
class PortraitAttributes:
    """Everything that decides a portrait. Directions use image axes: x to the right, y down."""

    background_color: RGB = (0.6, 0.7, 0.8)  # Background RGB in [0, 1].
    background_gradient: Tuple[float, float] = (0.0, 0.0)  # Brightens towards (x, y); length <= 1 = strength.
    skin_tone: float = 0.3  # 0 = lightest .. 1 = darkest, along a fixed skin palette.
    face_width: float = 0.8  # Width / height of the face, [0.68, 0.9].
    jaw_roundness: float = 0.5  # 0 = narrow pointed chin .. 1 = broad round jaw.
    yaw: float = 0.0  # Head turn in [-1, 1] (+-40 degrees); > 0 turns the face towards the image's right.
    tilt: float = 0.0  # Head roll in degrees, [-15, 15]; > 0 = counter-clockwise on screen.
    hair_color: RGB = (0.3, 0.2, 0.12)  # Hair RGB in [0, 1] (eyebrows are a darker shade of it).
    hair_style: int = 0  # Index into HAIR_STYLES.
    eye_size: float = 1.0  # Scale of the eyes, [0.75, 1.3].
    iris_color: RGB = (0.4, 0.25, 0.12)  # Iris RGB in [0, 1].
    eyebrow_angle: float = 0.0  # Degrees in [-20, 20]; > 0 raises the inner ends (worried), < 0 lowers them.
    smile: float = 0.3  # Mouth curvature in [-1, 1]: -1 corners down, +1 wide open smile.
    glasses: bool = False  # Whether the portrait wears glasses.
    light_direction: Tuple[float, float] = (-0.4, -0.4)  # Where the light comes from; length <= 1 = how oblique.
    clothes_color: RGB = (0.2, 0.3, 0.5)  # Shirt RGB in [0, 1].
    collar_pattern: int = 0  # Index into COLLAR_PATTERNS (fine detail: its phase comes from detail_seed).
    earring: bool = False  # Earrings on the visible ears (fine detail: kind from detail_seed).
    freckles: int = 0  # Number of freckles, [0, MAX_FRECKLES] (fine detail: positions from detail_seed).
    detail_seed: int = 0  # Seeds the fine detail: freckle positions, hair strands, collar phase, earring kind.

    def __post_init__(self):
        for name in ("background_color", "hair_color", "iris_color", "clothes_color"):
            self._set_vector(name, 3, 0.0, 1.0)
        for name in ("background_gradient", "light_direction"):
            self._set_vector(name, 2, -1.0, 1.0)
            if math.hypot(*getattr(self, name)) > 1.0 + 1e-6:
                raise ValueError(f"{name} must have length <= 1, got {getattr(self, name)!r}")
        for name, (lo, hi) in _FIELD_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
            setattr(self, name, int(value) if name == "freckles" else float(value))
        for name, choices in (("hair_style", HAIR_STYLES), ("collar_pattern", COLLAR_PATTERNS)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or not 0 <= value < len(choices):
                raise ValueError(f"{name} must be an index in [0, {len(choices)}) ({', '.join(choices)}), "
                                 f"got {value!r}")
            setattr(self, name, int(value))
        self.glasses, self.earring = bool(self.glasses), bool(self.earring)
        self.detail_seed = int(self.detail_seed)

    def _set_vector(self, name: str, n: int, lo: float, hi: float) -> None:
        value = tuple(float(x) for x in getattr(self, name))
        if len(value) != n or not all(lo <= x <= hi for x in value):
            raise ValueError(f"{name} must be {n} numbers in [{lo}, {hi}], got {getattr(self, name)!r}")
        setattr(self, name, value)

    def to_vector(self) -> np.ndarray:
        """float32 ``[len(ATTRIBUTE_NAMES)]`` in the order and ranges of ATTRIBUTE_NAMES / ATTRIBUTE_RANGES."""
        hair = [float(i == self.hair_style) for i in range(len(HAIR_STYLES))]
        collar = [float(i == self.collar_pattern) for i in range(len(COLLAR_PATTERNS))]
        values = [
            *self.background_color, *self.background_gradient,
            self.skin_tone, self.face_width, self.jaw_roundness, self.yaw, self.tilt,
            *self.hair_color, *hair,
            self.eye_size, *self.iris_color,
            self.eyebrow_angle, self.smile, float(self.glasses),
            *self.light_direction,
            *self.clothes_color, *collar,
            float(self.earring), float(self.freckles),
        ]
        return np.asarray(values, dtype=np.float32)

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples become lists); ``PortraitAttributes(**d)`` rebuilds the attributes."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PortraitAttributes":
        return cls(**d)


# ----------------------------------------------------------------------------------------------- sampling

# Palettes in 0..255; samples pick one entry and jitter it, so colours cluster like natural ones do.
_HAIR = np.array([(28, 24, 22), (62, 40, 26), (110, 72, 44), (150, 74, 40), (200, 160, 96),
                  (232, 204, 148), (168, 164, 160), (196, 92, 44)], float)
_HAIR_DYED = np.array([(214, 90, 150), (70, 110, 200), (120, 70, 170)], float)
_IRIS = np.array([(96, 58, 30), (52, 32, 20), (70, 120, 180), (78, 128, 80), (120, 132, 142),
                  (140, 108, 50)], float)


def _palette_pick(rng, palette: np.ndarray, jitter: float) -> RGB:
    c = palette[rng.integers(len(palette))] / 255.0 + rng.uniform(-jitter, jitter, 3)
    return tuple(float(x) for x in np.clip(c, 0.0, 1.0))


def _hsv_pick(rng, s: Tuple[float, float], v: Tuple[float, float]) -> RGB:
    return tuple(float(x) for x in colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(*s), rng.uniform(*v)))


def _disk_pick(rng, r_max: float) -> Tuple[float, float]:
    angle, r = rng.uniform(-math.pi, math.pi), r_max * math.sqrt(rng.uniform())
    return (r * math.cos(angle), r * math.sin(angle))


def sample_attributes(seed: int) -> PortraitAttributes:
    """The attributes of portrait ``seed``: a fixed sequence of draws from ``numpy.random.default_rng(seed)``."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return _draw_attributes(np.random.default_rng(int(seed)))


def _draw_attributes(rng) -> PortraitAttributes:
    """The attribute distribution, as a fixed sequence of draws from ``rng`` (a numpy Generator or a
    :class:`LatentDraws`; only ``uniform``, ``normal``, ``integers`` and ``beta`` are called)."""
    background = _hsv_pick(rng, (0.08, 0.5), (0.5, 0.95))
    gradient = _disk_pick(rng, 1.0)
    skin = float(rng.uniform())
    width = float(rng.uniform(*_FIELD_RANGES["face_width"]))
    jaw = float(rng.uniform())
    yaw = float(np.clip(rng.normal(0.0, 0.4), -1.0, 1.0))
    tilt = float(np.clip(rng.normal(0.0, 5.0), -15.0, 15.0))
    dyed = rng.uniform() < 0.06
    hair_natural, hair_dyed = _palette_pick(rng, _HAIR, 0.06), _palette_pick(rng, _HAIR_DYED, 0.06)
    hair_style = int(rng.integers(len(HAIR_STYLES)))
    eye_size = float(rng.uniform(*_FIELD_RANGES["eye_size"]))
    iris = _palette_pick(rng, _IRIS, 0.05)
    brow = float(rng.uniform(-20.0, 20.0))
    smile = float(2.0 * rng.beta(2.2, 1.6) - 1.0)  # mostly smiling, sometimes neutral or sad
    glasses = bool(rng.uniform() < 0.3)
    light = _disk_pick(rng, 0.85)
    clothes = _hsv_pick(rng, (0.2, 0.85), (0.2, 0.9))
    collar = int(rng.integers(len(COLLAR_PATTERNS)))
    earring = bool(rng.uniform() < 0.25)
    freckles = int(rng.integers(5, MAX_FRECKLES + 1)) if rng.uniform() < 0.35 else 0
    detail_seed = int(rng.integers(0, 2**31 - 1))
    return PortraitAttributes(
        background_color=background, background_gradient=gradient, skin_tone=skin, face_width=width,
        jaw_roundness=jaw, yaw=yaw, tilt=tilt, hair_color=hair_dyed if dyed else hair_natural,
        hair_style=hair_style, eye_size=eye_size, iris_color=iris, eyebrow_angle=brow, smile=smile,
        glasses=glasses, light_direction=light, clothes_color=clothes, collar_pattern=collar, earring=earring,
        freckles=freckles, detail_seed=detail_seed,
    )


#: Entries of a latent vector that :func:`attributes_from_latent` reads (one per scalar draw of the
#: attribute distribution; the freckle count's entry is read only when the portrait has freckles, so the
#: detail seed's entry is the last one read). A latent may be longer: the rest is ignored.
LATENT_DRAWS = 38


def _phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


_BETA_TABLES: Dict[Tuple[float, float], Tuple[np.ndarray, np.ndarray]] = {}


def _beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile of Beta(a, b) by inverting its CDF tabulated on 4097 points (error < 1e-4)."""
    if (a, b) not in _BETA_TABLES:
        x = np.linspace(0.0, 1.0, 4097)
        mid = 0.5 * (x[1:] + x[:-1])
        pdf = mid ** (a - 1.0) * (1.0 - mid) ** (b - 1.0)
        cdf = np.concatenate([[0.0], np.cumsum(pdf)])
        _BETA_TABLES[(a, b)] = (cdf / cdf[-1], x)
    cdf, x = _BETA_TABLES[(a, b)]
    return float(np.interp(q, cdf, x))


class LatentDraws:
    """The draws of the attribute distribution taken from a Gaussian vector instead of a random stream.

    Each scalar draw reads the next entry ``z_k`` of ``z``: ``uniform(lo, hi)`` is
    ``lo + (hi - lo) * Phi(z_k)``, ``normal(m, s)`` is ``m + s * z_k``, ``integers(lo, hi)`` is
    ``lo + floor((hi - lo) * Phi(z_k))`` and ``beta(a, b)`` is the Beta quantile of ``Phi(z_k)``
    (``Phi`` = the standard normal CDF). For ``z ~ N(0, I)`` every attribute has exactly the distribution
    of :func:`sample_attributes`, and each continuous attribute is a smooth monotone function of its own
    entry: this is the fixed map from a generator's ``z`` to a portrait that the demo generator learns
    (:func:`attributes_from_latent`).
    """

    def __init__(self, z: Sequence[float]):
        self.z = np.asarray(z, dtype=np.float64).reshape(-1)
        self.k = 0

    def _next(self, n: int = 1) -> np.ndarray:
        if self.k + n > self.z.size:
            raise ValueError(f"a latent needs at least {LATENT_DRAWS} entries, got {self.z.size}")
        out = self.z[self.k:self.k + n]
        self.k += n
        return out

    def _u(self, n: int) -> np.ndarray:
        # Clipped away from 0 and 1 so that integers() never reaches its (exclusive) upper end.
        return np.clip([_phi(x) for x in self._next(n)], 1e-12, 1.0 - 1e-12)

    def uniform(self, low: float = 0.0, high: float = 1.0, size: Optional[int] = None):
        u = low + (high - low) * self._u(1 if size is None else int(size))
        return float(u[0]) if size is None else u

    def normal(self, loc: float = 0.0, scale: float = 1.0) -> float:
        return float(loc + scale * self._next(1)[0])

    def integers(self, low: int, high: Optional[int] = None) -> int:
        low, high = (0, low) if high is None else (low, high)
        return int(low + min(int((high - low) * self._u(1)[0]), high - low - 1))

    def beta(self, a: float, b: float) -> float:
        return _beta_ppf(float(self._u(1)[0]), a, b)


def attributes_from_latent(z: Sequence[float]) -> PortraitAttributes:
    """The portrait of a Gaussian vector ``z`` (at least :data:`LATENT_DRAWS` entries; see :class:`LatentDraws`).

    The demo generator is trained to draw ``render_portrait(attributes_from_latent(z))`` from the same
    ``z``; :func:`normalize_latent` is applied first, as the generator's mapping network does.
    """
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    if z.size < LATENT_DRAWS or not np.all(np.isfinite(z)):
        raise ValueError(f"z must hold at least {LATENT_DRAWS} finite numbers, got {z.size} entries")
    return _draw_attributes(LatentDraws(normalize_latent(z)))


@functools.lru_cache(maxsize=None)  # a pure function of its arguments: 4 x z_dim renders of the attributes each
def latent_entry(attribute: str, z_dim: int = LATENT_DRAWS) -> int:
    """The entry of a latent vector that decides a scalar attribute of :data:`ATTRIBUTE_NAMES` in
    :func:`attributes_from_latent` (e.g. ``smile``), found by moving each entry in turn at a few random
    points; :class:`ValueError` for an attribute that no single entry decides (a colour, a one-hot class)."""
    if attribute not in ATTRIBUTE_NAMES:
        raise ValueError(f"unknown portrait attribute {attribute!r}; known: {', '.join(ATTRIBUTE_NAMES)}")
    t = ATTRIBUTE_NAMES.index(attribute)
    effect = np.zeros(z_dim)
    for z in np.random.default_rng(0).standard_normal([4, z_dim]):
        ref = attributes_from_latent(z).to_vector()[t]
        for k in range(z_dim):
            moved = z.copy()
            moved[k] += 0.5
            effect[k] += abs(attributes_from_latent(moved).to_vector()[t] - ref)
    order = np.argsort(effect)[::-1]
    if effect[order[0]] == 0 or effect[order[1]] > 0.2 * effect[order[0]]:
        raise ValueError(f"no single latent entry decides {attribute!r}")
    return int(order[0])


def sweep_latents(base: np.ndarray, attribute: str, values: Sequence[float]) -> np.ndarray:
    """float32 ``[len(base) * len(values), z_dim]``: each row of ``base`` ``[N, z_dim]`` repeated once per
    value, with the :func:`latent_entry` of ``attribute`` set to it (consecutive rows share a base). Their
    portraits differ in that attribute alone: pairs that show a generator what it changes and nothing else."""
    base = np.asarray(base, dtype=np.float32)
    if base.ndim != 2 or len(values) < 2:
        raise ValueError(f"need base latents [N, z_dim] and at least two values, got {list(base.shape)} and "
                         f"{len(values)} value(s)")
    z = np.repeat(base, len(values), axis=0)
    z[:, latent_entry(attribute, base.shape[1])] = np.tile(np.asarray(values, dtype=np.float32), len(base))
    return z


def normalize_latent(z: np.ndarray) -> np.ndarray:
    """``z / rms(z)``: StyleGAN2's mapping normalises z this way, so the portrait is a function of what the
    generator sees (the direction of z), not of its length."""
    z = np.asarray(z, dtype=np.float64)
    return z / np.sqrt(np.mean(z * z) + 1e-8)


__all__ = ["ATTRIBUTE_NAMES", "ATTRIBUTE_RANGES", "COLLAR_PATTERNS", "HAIR_STYLES", "LATENT_DRAWS", "LatentDraws",
           "MAX_FRECKLES", "MAX_YAW", "PortraitAttributes", "attributes_from_latent", "latent_entry",
           "normalize_latent", "sample_attributes", "sweep_latents"]
