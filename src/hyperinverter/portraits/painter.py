"""Drawing a portrait from its :class:`~hyperinverter.portraits.attributes.PortraitAttributes`.

Rendering draws polygons with Pillow's ``ImageDraw`` at ``size * supersample`` pixels (smooth shading
through small numpy fields pasted under polygon masks) and downsamples with a Lanczos filter, so edges
are anti-aliased. The head is drawn in its own coordinates ``(u, v)``: ``u`` across the face in units
of the face half-width (-1 = left silhouette, +1 = right), ``v`` down the head in units of the half-height
(-1 = crown, 0 = eye line, +1 = chin). Features on the face surface are projected as if on a vertical
cylinder turned by the yaw (they shift sideways and the far side is squeezed); then the whole head is
rotated by the tilt about the top of the neck.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .attributes import HAIR_STYLES, MAX_YAW, PortraitAttributes, sample_attributes

_Resampling = getattr(Image, "Resampling", Image)  # Pillow >= 9.1 moved the filter constants

# Skin palette in 0..255, from the lightest to the darkest tone (``PortraitAttributes.skin_tone``).
_SKIN = np.array([(255, 226, 204), (236, 190, 152), (196, 138, 96), (140, 92, 62), (92, 60, 42)], float)


def _skin_rgb(tone: float) -> np.ndarray:
    x = tone * (len(_SKIN) - 1)
    i = min(int(x), len(_SKIN) - 2)
    return _SKIN[i] + (x - i) * (_SKIN[i + 1] - _SKIN[i])


def _rgb(c, scale: float = 1.0, add: float = 0.0) -> Tuple[int, int, int]:
    c = np.clip(np.asarray(c, float) * scale + add, 0, 255)
    return tuple(int(round(x)) for x in c)


def _mix(a, b, t: float) -> np.ndarray:
    return (1.0 - t) * np.asarray(a, float) + t * np.asarray(b, float)


def _flat(points: np.ndarray) -> List[float]:
    return points.ravel().tolist()


# Where eyes and mouth sit on the face, in head coordinates (u across, v down; -1 crown, 0 eye line, +1 chin):
# the eyes' centres at (+-EYE_U, EYE_V), the mouth's middle at (0, MOUTH_V) on a surface MOUTH_DEPTH in front
# of the cylinder. _Painter.eyes and _Painter.mouth draw there and _Painter.face_centre aligns on them.
EYE_U, EYE_V = 0.40, 0.02
MOUTH_V, MOUTH_DEPTH = 0.57, 0.1


class _Painter:
    """Draws one portrait on a square canvas of ``S`` pixels."""

    def __init__(self, attrs: PortraitAttributes, S: int):
        self.at, self.S = attrs, S
        self.skin = _skin_rgb(attrs.skin_tone)
        self.hair_rgb = np.asarray(attrs.hair_color) * 255.0
        lx, ly = attrs.light_direction
        self.light = np.array([lx, ly, math.sqrt(max(0.0, 1.0 - lx * lx - ly * ly))])
        # Head frame: centre, half-width a, half-height b (pixels); the pivot of the tilt is the top of the neck.
        self.cx, self.cy = 0.5 * S, 0.44 * S
        self.b = 0.235 * S
        self.a = attrs.face_width * self.b
        self.phi = attrs.yaw * MAX_YAW
        self.sphi = math.sin(self.phi)
        t = math.radians(attrs.tilt)
        self.cos_t, self.sin_t = math.cos(t), math.sin(t)
        self.pivot = (self.cx, self.cy + 0.9 * self.b)
        self.img = self._background()
        self.draw = ImageDraw.Draw(self.img)

    # -- geometry
    def width(self, frac: float) -> int:
        return max(1, int(round(frac * self.S)))

    def head(self, u, v, proj: bool = False, depth: float = 0.0) -> np.ndarray:
        """Head coordinates -> canvas pixels ``[N, 2]``; ``proj`` for points on the face surface."""
        u, v = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float))
        if proj:
            # A point at longitude asin(u) on a vertical cylinder, turned by the yaw; features that turn
            # past the silhouette stay on it (squeezed) instead of wrapping around.
            lon = np.arcsin(np.clip(u, -1.0, 1.0)) + self.phi
            x = np.sin(np.clip(lon, -math.pi / 2, math.pi / 2)) + depth * self.sphi
        else:
            x = u
        dx = self.cx + self.a * x - self.pivot[0]
        dy = self.cy + self.b * v - self.pivot[1]
        return np.stack([self.pivot[0] + self.cos_t * dx + self.sin_t * dy,
                         self.pivot[1] - self.sin_t * dx + self.cos_t * dy], axis=-1).reshape(-1, 2)

    def face_centre(self, upright: bool = False) -> np.ndarray:
        """Canvas pixels ``[2]`` of the point halfway between the eyes' midpoint and the centre of the mouth
        (where :meth:`eyes` and :meth:`mouth` put them); ``upright``: where it is with no yaw and no tilt."""
        if upright:
            return np.array([self.cx, self.cy + self.b * 0.5 * (EYE_V + MOUTH_V)])
        eyes = self.head([-EYE_U, EYE_U], [EYE_V, EYE_V], proj=True).mean(0)
        mouth = self.head(0.0, MOUTH_V, proj=True, depth=MOUTH_DEPTH)[0]
        return 0.5 * (eyes + mouth)

    def ellipse(self, u0, v0, ru, rv, proj=False, depth=0.0, n=32) -> np.ndarray:
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        return self.head(u0 + ru * np.cos(t), v0 + rv * np.sin(t), proj, depth)

    def circle_box(self, u, v, r_px: float, proj=False, depth=0.0) -> Tuple[float, float, float, float]:
        x, y = self.head(u, v, proj, depth)[0]
        return (x - r_px, y - r_px, x + r_px, y + r_px)

    # -- shading
    def sphere(self, cu: float, cv: float, ru: float, rv: float, ambient: float, diffuse: float,
               tilted: bool = True) -> Callable:
        """Lambert shading of an ellipsoid centred on head point (cu, cv) with radii (ru, rv) in head units."""
        L = self.light
        px, py = self.pivot
        c, s = self.cos_t, self.sin_t
        ex, ey = self.cx + self.a * cu, self.cy + self.b * cv
        rx, ry = self.a * ru, self.b * rv

        def shade(X, Y):
            if tilted:  # undo the tilt: the ellipsoid turns with the head
                dx, dy = X - px, Y - py
                X, Y = px + c * dx - s * dy, py + s * dx + c * dy
            nx, ny = (X - ex) / rx, (Y - ey) / ry
            r = np.maximum(np.sqrt(nx * nx + ny * ny), 1.0)
            nx, ny = nx / r, ny / r
            nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))
            return ambient + diffuse * np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0.0, 1.0)

        return shade

    def paste(self, shapes: Sequence[Tuple[str, object]], color, shade: Optional[Callable] = None,
              decorate: Optional[Callable] = None, warm: bool = False) -> None:
        """Fill the union of ``shapes`` with ``color * shade(X, Y)``; ``decorate(draw, x0, y0)`` may draw
        on the layer first (clipped to the shapes, which is how hair strands stay inside the hair).
        ``warm`` darkens blue faster than red, so shadows on skin stay warm instead of turning grey."""
        boxes = []
        for kind, geom in shapes:
            if kind == "polygon":
                p = np.asarray(geom).reshape(-1, 2)
                boxes.append((*p.min(0), *p.max(0)))
            else:
                boxes.append(geom)
        bx = np.asarray(boxes, float)
        x0, y0 = max(0, int(bx[:, 0].min()) - 1), max(0, int(bx[:, 1].min()) - 1)
        x1, y1 = min(self.S, int(math.ceil(bx[:, 2].max())) + 2), min(self.S, int(math.ceil(bx[:, 3].max())) + 2)
        if x1 <= x0 or y1 <= y0:
            return
        mask = Image.new("L", (x1 - x0, y1 - y0), 0)
        md = ImageDraw.Draw(mask)
        for kind, geom in shapes:
            if kind == "polygon":
                md.polygon(_flat(np.asarray(geom).reshape(-1, 2) - (x0, y0)), fill=255)
            else:
                g = geom
                md.ellipse((g[0] - x0, g[1] - y0, g[2] - x0, g[3] - y0), fill=255)
        color = np.asarray(color, float)
        if shade is None:
            layer = Image.new("RGB", mask.size, _rgb(color))
        else:
            X = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
            Y = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
            f = shade(X, Y)[..., None]
            f = f ** np.array([0.8, 1.0, 1.25]) if warm else f
            arr = np.clip(color[None, None, :] * f, 0, 255).astype(np.uint8)
            layer = Image.fromarray(arr, "RGB")
        if decorate is not None:
            decorate(ImageDraw.Draw(layer), x0, y0)
        self.img.paste(layer, (x0, y0), mask)

    # -- layers, back to front
    def _background(self) -> Image.Image:
        S, at = self.S, self.at
        # The field is smooth, so it is computed on at most 64 x 64 pixels and scaled up (cheap at any S).
        n = min(S, 64)
        t = (np.arange(n, dtype=np.float64) + 0.5) / n - 0.5
        gx, gy = at.background_gradient
        # Linear gradient plus a light vignette.
        f = 1.0 + 0.55 * (gx * t[None, :] + gy * t[:, None]) - 0.35 * (t[None, :] ** 2 + t[:, None] ** 2)
        arr = np.asarray(at.background_color, float)[None, None, :] * 255.0 * f[..., None]
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")
        return img if n == S else img.resize((S, S), _Resampling.BILINEAR)

    def clothes(self) -> None:
        S, at = self.S, self.at
        color = np.asarray(at.clothes_color) * 255.0
        # Shoulders: the top of a superellipse, flat near the neck and rounding into the arms.
        t = np.linspace(math.pi, 2 * math.pi, 48)
        c, s = np.cos(t), np.sin(t)
        p = 2.0 / 2.6
        body = np.stack([0.5 * S + 0.47 * S * np.sign(c) * np.abs(c) ** p,
                         1.06 * S + 0.29 * S * np.sign(s) * np.abs(s) ** p], -1)
        body = np.concatenate([body, [[S + 2, S + 2], [-2, S + 2]]])
        L = self.light

        def shade(X, Y):  # a wide horizontal cylinder: brighter on the lit side, darker at the bottom
            nx = np.clip((X - 0.5 * S) / (0.5 * S), -1, 1)
            lam = nx * L[0] + np.sqrt(1 - nx * nx) * L[2] - 0.5 * L[1]
            return 0.72 + 0.32 * np.clip(lam, -0.4, 1.0) - 0.25 * (Y / S - 0.8)

        self.paste([("polygon", body)], color, shade)

    def neck(self) -> None:
        S = self.S
        a, b = self.a, self.b
        top = self.cy + 0.3 * b
        bottom = 0.82 * S
        # Neck trapezoid (not tilted: the body stays upright) plus the neckline opening of the shirt.
        neck = np.array([[self.cx - 0.46 * a, top], [self.cx + 0.46 * a, top],
                         [0.5 * S + 0.56 * a, bottom], [0.5 * S - 0.56 * a, bottom]])
        t = np.linspace(0, math.pi, 24)
        centre = np.array([0.5 * S, 0.785 * S])
        radii = np.array([0.56 * a + 0.03 * S, 0.065 * S])
        neckline = centre + radii * np.stack([np.cos(t), np.sin(t)], -1)
        chin = self.cy + b

        def shade(X, Y):  # the chin casts a shadow onto the top of the neck
            f = 0.78 + 0.14 * np.clip((Y - chin) / (0.1 * S), 0, 1)
            return np.broadcast_to(f, np.broadcast_shapes(X.shape, Y.shape))

        cap = np.concatenate([[neckline[0] - (0, 0.03 * S)], neckline, [neckline[-1] - (0, 0.03 * S)]])
        self.paste([("polygon", neck), ("polygon", cap)], self.skin, shade, warm=True)
        self.collar(centre + (radii + 0.012 * S) * np.stack([np.cos(t), np.sin(t)], -1))

    def collar(self, band: np.ndarray) -> None:
        """The shirt's collar band along the neckline; stripes / dots are fine detail (phase from detail_seed)."""
        at, S = self.at, self.S
        base = np.asarray(at.clothes_color) * 255.0
        accent = _mix(base, (255, 255, 255) if base.mean() < 140 else (20, 20, 30), 0.65)
        color = _mix(base, (255, 255, 255), 0.2) if at.collar_pattern != 1 else base
        w = self.width(0.028)
        self.draw.line(_flat(band), fill=_rgb(color), width=w, joint="curve")
        rng = np.random.default_rng([at.detail_seed, 3])
        phase, period = rng.uniform(0, 1), int(rng.integers(2, 4))
        if at.collar_pattern == 1:  # stripes: every other short run of the band in the accent colour
            n = len(band)
            for i in range(int(phase * period), n - 1, 2 * period):
                self.draw.line(_flat(band[i:min(n, i + period + 1)]), fill=_rgb(accent), width=w)
        elif at.collar_pattern == 2:  # dots along the band
            r = 0.006 * S
            for i in range(int(phase * period), len(band), period + 1):
                x, y = band[i]
                self.draw.ellipse((x - r, y - r, x + r, y + r), fill=_rgb(accent))

    def ears(self) -> None:
        for s in (-1, 1):
            # The ear on the side the face turns towards slides behind the head.
            k = max(0.0, 1.0 - 1.3 * max(0.0, s * self.sphi))
            if k <= 0.05:
                continue
            ear = self.ellipse(s * (1.0 + 0.02 * k), 0.12, 0.14 * k, 0.19, n=20)
            self.draw.polygon(_flat(ear), fill=_rgb(self.skin, 0.86))
            inner = self.head(s * (1.0 + np.array([0.06, 0.09, 0.07]) * k), [0.02, 0.12, 0.24])
            self.draw.line(_flat(inner), fill=_rgb(self.skin, 0.66), width=self.width(0.006))

    def face(self) -> None:
        at = self.at
        theta = np.linspace(-math.pi, math.pi, 72, endpoint=False)
        c, s = np.cos(theta), np.sin(theta)
        r = at.jaw_roundness
        lower = s > 0
        # Below the eye line the outline widens into a squarish round jaw (r -> 1) or narrows to a chin.
        u = np.where(lower, np.sign(c) * np.abs(c) ** (1.0 - 0.4 * r) * (1.0 - (1.0 - r) * 0.32 * s * s), c)
        u = u + 0.28 * self.sphi * np.clip(s, 0, 1) ** 2  # the chin follows the turn
        outline = self.head(u, s)
        self.paste([("polygon", outline)], self.skin, self.sphere(0.1 * self.sphi, -0.05, 1.08, 1.12, 0.6, 0.45),
                   warm=True)

    def eyes(self) -> None:
        at = self.at
        E = at.eye_size
        iris = np.asarray(at.iris_color) * 255.0
        lash = (40, 30, 28)
        L = self.light
        for side in (-1, 1):
            ue, ve = side * EYE_U, EYE_V
            t = np.linspace(0, 2 * math.pi, 28, endpoint=False)
            st = np.sin(t)
            almond = self.head(ue + 0.19 * E * np.cos(t), ve + np.where(st < 0, 0.085, 0.06) * E * st, proj=True)
            ri = 0.07 * E
            iris_pts = self.ellipse(ue, ve + 0.005, ri * self.b / self.a, ri, proj=True, n=20)
            pupil_pts = self.ellipse(ue, ve + 0.005, 0.45 * ri * self.b / self.a, 0.45 * ri, proj=True, n=14)
            hx, hy = self.head(ue, ve, proj=True)[0] + np.array([L[0], L[1]]) * 0.35 * ri * self.b
            hr = 0.25 * ri * self.b

            def decorate(d, x0, y0, iris_pts=iris_pts, pupil_pts=pupil_pts, hx=hx, hy=hy, hr=hr):
                d.polygon(_flat(iris_pts - (x0, y0)), fill=_rgb(iris))
                d.polygon(_flat(pupil_pts - (x0, y0)), fill=(15, 12, 12))
                d.ellipse((hx - hr - x0, hy - hr - y0, hx + hr - x0, hy + hr - y0), fill=(250, 250, 250))

            self.paste([("polygon", almond)], (246, 243, 238), decorate=decorate)
            # Upper lid with lashes: the top half of the almond, thick, plus a flick at the outer corner.
            top_idx = [0] + list(range(len(t) - 1, len(t) // 2 - 1, -1))
            upper = almond[top_idx]
            self.draw.line(_flat(upper), fill=lash, width=self.width(0.011 * E), joint="curve")
            corner = self.head([ue + side * 0.19 * E, ue + side * 0.24 * E], [ve, ve - 0.04 * E], proj=True)
            self.draw.line(_flat(corner), fill=lash, width=self.width(0.008 * E))

    def eyebrows(self) -> None:
        at = self.at
        color = _rgb(_mix(self.hair_rgb, (30, 22, 18), 0.45))
        slope = math.tan(math.radians(at.eyebrow_angle)) * self.a / self.b
        for side in (-1, 1):
            t = np.linspace(-1, 1, 9)  # -1 = inner end, +1 = outer end
            u = side * (0.40 + 0.25 * t)
            arch = -0.035 * (1 - t * t)
            v = -0.19 + arch + slope * 0.25 * t  # t = -1 (inner end) rises for angle > 0
            thick = 0.05 * (1.0 - 0.45 * (t + 1) / 2)
            pts = np.concatenate([self.head(u, v - thick / 2, proj=True),
                                  self.head(u[::-1], (v + thick / 2)[::-1], proj=True)])
            self.draw.polygon(_flat(pts), fill=color)

    def nose(self) -> None:
        L = self.light
        side = 1.0 if L[0] <= 0 else -1.0  # the shadowed side, away from the light
        shadow = _rgb(self.skin, 0.72)
        ridge = self.head([side * 0.07, side * 0.10, side * 0.05], [0.12, 0.34, 0.40], proj=True, depth=0.25)
        self.draw.line(_flat(ridge), fill=shadow, width=self.width(0.006), joint="curve")
        for s in (-1, 1):
            nostril = self.circle_box(s * 0.08, 0.38, 0.0065 * self.S, proj=True, depth=0.2)
            self.draw.ellipse(nostril, fill=_rgb(self.skin, 0.62))

    def mouth(self) -> None:
        at = self.at
        smile = at.smile
        hw = 0.27 * (1.0 + 0.15 * smile)
        k = 0.1 * smile
        t = np.linspace(-1, 1, 17)
        u = hw * t
        v0 = MOUTH_V
        line = v0 - k * t * t + 0.5 * k * 0.3  # corners rise with the smile
        bulge = (1 - t * t) ** 0.7
        lip = _rgb(_mix(self.skin, (190, 70, 80), 0.45), 0.95)
        opening = max(0.0, smile - 0.35) * 0.18 * bulge
        upper = self.head(u, line - 0.035 * bulge, proj=True, depth=MOUTH_DEPTH)
        lower = self.head(u, line + opening + 0.05 * bulge, proj=True, depth=MOUTH_DEPTH)
        mid = self.head(u, line, proj=True, depth=MOUTH_DEPTH)
        mid_low = self.head(u, line + opening, proj=True, depth=MOUTH_DEPTH)
        self.draw.polygon(_flat(np.concatenate([upper, lower[::-1]])), fill=lip)
        if opening.max() > 0:
            self.draw.polygon(_flat(np.concatenate([mid, mid_low[::-1]])), fill=(90, 28, 34))
            teeth = self.head(u * 0.85, line + 0.55 * opening, proj=True, depth=MOUTH_DEPTH)
            self.draw.polygon(_flat(np.concatenate([mid[2:-2], teeth[::-1][2:-2]])), fill=(240, 236, 226))
        self.draw.line(_flat(mid), fill=_rgb(self.skin, 0.35), width=self.width(0.007), joint="curve")

    def freckles(self) -> None:
        at, S = self.at, self.S
        if at.freckles == 0:
            return
        rng = np.random.default_rng([at.detail_seed, 1])
        u = rng.uniform(-0.7, 0.7, at.freckles)
        v = rng.uniform(0.12, 0.42, at.freckles) - 0.12 * (1 - np.abs(u))
        radius = rng.uniform(0.0045, 0.007, at.freckles) * S
        color = _rgb(_mix(self.skin, (120, 70, 40), 0.3))
        centres = self.head(u, v, proj=True)
        for (x, y), r in zip(centres, radius):
            self.draw.ellipse((x - r, y - r, x + r, y + r), fill=color)

    # -- hair
    def _cap(self, sx, sy, dv, side_v, top_v, part=0.0, jag=0.0, n=28) -> np.ndarray:
        """Hair covering the skull: outer arc (silhouette) over the top, back along the hairline (on the face)."""
        d = math.asin(np.clip((side_v - dv) / sy, -1, 1))
        th = np.linspace(-math.pi - d, d, n)
        outer = self.head(sx * np.cos(th), dv + sy * np.sin(th))
        u = np.linspace(0.98, -0.98, 17)
        hairline_v = top_v + (side_v - top_v) * np.abs(u) ** 3 + part * np.exp(-((u - 0.35) / 0.25) ** 2)
        hairline_v = hairline_v + jag * np.abs(np.sin(4.5 * math.pi * u))  # tufts of a cut fringe
        return np.concatenate([outer, self.head(u, hairline_v, proj=True)])

    def _back_hair(self) -> List[Tuple[str, object]]:
        style = HAIR_STYLES[self.at.hair_style]
        b = self.b
        if style == "long":
            th = np.linspace(-math.pi, 0, 24)
            top = self.head(1.16 * np.cos(th), -0.04 + 1.12 * np.sin(th))
            right = self.head([1.2, 1.3, 1.32, 1.1, 0.5], [0.4, 1.2, 1.85, 2.05, 1.8])
            left = self.head([-0.5, -1.1, -1.32, -1.3, -1.2], [1.8, 2.05, 1.85, 1.2, 0.4])
            return [("polygon", np.concatenate([top, right, left]))]
        if style == "bob":
            th = np.linspace(-math.pi, 0, 24)
            top = self.head(1.22 * np.cos(th), 0.0 + 1.14 * np.sin(th))
            right = self.head([1.26, 1.22, 1.0], [0.55, 0.8, 0.86])
            left = self.head([-1.0, -1.22, -1.26], [0.86, 0.8, 0.55])
            return [("polygon", np.concatenate([top, right, left]))]
        if style == "curly":
            shapes: List[Tuple[str, object]] = [("polygon", self.ellipse(0, -0.1, 1.22, 1.1))]
            for th in np.linspace(-math.pi - 0.55, 0.55, 15):
                shapes.append(("ellipse", self.circle_box(1.22 * math.cos(th), -0.1 + 1.1 * math.sin(th), 0.3 * b)))
            return shapes
        if style == "bun":
            return [("ellipse", self.circle_box(0.0, -1.12, 0.36 * b))]
        return []

    def _front_hair(self) -> List[Tuple[str, object]]:
        style = HAIR_STYLES[self.at.hair_style]
        b = self.b
        if style == "short":
            cap = self._cap(1.09, 1.12, -0.06, -0.12, -0.56, part=0.05, jag=0.05)
            burns = [("polygon", self.head(s * np.array([1.02, 1.04, 0.99, 0.92]), [-0.2, 0.12, 0.14, -0.2]))
                     for s in (-1, 1)]
            return [("polygon", cap), *burns]
        if style == "long":
            cap = self._cap(1.13, 1.1, -0.03, 0.02, -0.5, part=0.12)
            curtains = []
            for s in (-1, 1):
                curtains.append(("polygon", self.head(s * np.array([1.15, 1.2, 1.22, 0.98, 0.9, 0.86]),
                                                      [-0.1, 0.6, 1.3, 1.25, 0.6, -0.2])))
            return [("polygon", cap), *curtains]
        if style == "bob":
            cap = self._cap(1.2, 1.12, 0.0, 0.05, -0.33, n=28)
            sides = [("polygon", self.head(s * np.array([1.2, 1.26, 1.22, 0.98, 0.9, 0.88]),
                                           [0.0, 0.55, 0.8, 0.75, 0.4, -0.1])) for s in (-1, 1)]
            return [("polygon", cap), *sides]
        if style == "buzz":
            return [("polygon", self._cap(1.02, 1.02, 0.0, -0.15, -0.6))]
        if style == "curly":
            shapes = [("polygon", self._cap(1.12, 1.08, -0.06, 0.0, -0.5))]
            for u in np.linspace(-0.9, 0.9, 9):
                shapes.append(("ellipse", self.circle_box(u, -0.5 + 0.42 * u * u, 0.13 * b, proj=True)))
            return shapes
        return [("polygon", self._cap(1.04, 1.05, -0.02, -0.1, -0.62))]  # bun: hair pulled back

    def hair(self, front: bool) -> None:
        at = self.at
        style = HAIR_STYLES[at.hair_style]
        color = self.hair_rgb if style != "buzz" else _mix(self.hair_rgb, self.skin, 0.45)
        if not front:
            shapes = self._back_hair()
            if shapes:
                self.paste(shapes, color, self.sphere(0, -0.1, 1.3, 1.4, 0.45, 0.4))
            return
        shapes = self._front_hair()
        decorate = None if style == "buzz" else self._strands
        self.paste(shapes, color, self.sphere(0.0, -0.15, 1.2, 1.2, 0.5, 0.6), decorate)

    def _strands(self, d: ImageDraw.ImageDraw, x0: float, y0: float) -> None:
        """Thin strands from the crown towards the hairline (fine detail: placed by detail_seed)."""
        at = self.at
        rng = np.random.default_rng([at.detail_seed, 2])
        light = _rgb(self.hair_rgb, 1.2, 14)
        dark = _rgb(self.hair_rgb, 0.68)
        w = self.width(0.004)
        curly = HAIR_STYLES[at.hair_style] == "curly"
        part = -0.25  # strands flow away from a side parting near the crown
        for i in range(18):
            u_end, v_end = rng.uniform(-1.15, 1.15), rng.uniform(-0.65, 0.15)
            t = np.linspace(rng.uniform(0.0, 0.35), 1.0, 6)
            u = part + (u_end - part) * t ** 0.8
            if curly:
                u = u + 0.05 * np.sin(12 * t + rng.uniform(0, 6))
            v = -1.08 + (v_end + 1.08) * (1.0 - (1.0 - t) ** 2)
            pts = self.head(u, v) - (x0, y0)
            d.line(_flat(pts), fill=light if i % 2 == 0 else dark, width=w)

    def glasses(self) -> None:
        if not self.at.glasses:
            return
        frame = (35, 30, 30)
        w = self.width(0.013)
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        # A rounded rectangle (superellipse) around each eye, projected on the face like the eyes.
        ru, rv = 0.27, 0.15
        inner = []
        for side in (-1, 1):
            u = side * EYE_U + ru * np.sign(c) * np.abs(c) ** 0.6
            v = 0.03 + rv * np.sign(s) * np.abs(s) ** 0.6
            rim = self.head(u, v, proj=True, depth=0.12)
            self.draw.line(_flat(np.concatenate([rim, rim[:1]])), fill=frame, width=w, joint="curve")
            temple = np.concatenate([self.head(side * 0.67, 0.0, proj=True, depth=0.12), self.head(side * 1.0, 0.05)])
            self.draw.line(_flat(temple), fill=frame, width=w)
            inner.append(self.head(side * 0.13, 0.0, proj=True, depth=0.12)[0])
        bridge = np.stack([inner[0], self.head(0.0, -0.03, proj=True, depth=0.2)[0], inner[1]])
        self.draw.line(_flat(bridge), fill=frame, width=w, joint="curve")

    def earrings(self) -> None:
        at, S = self.at, self.S
        if not at.earring:
            return
        rng = np.random.default_rng([at.detail_seed, 4])
        hoop = rng.uniform() < 0.5
        metal = (225, 185, 70) if rng.uniform() < 0.6 else (205, 208, 215)
        size = rng.uniform(0.010, 0.018) * S
        for s in (-1, 1):
            k = max(0.0, 1.0 - 1.3 * max(0.0, s * self.sphi))
            if k <= 0.3:
                continue
            x, y = self.head(s * (1.0 + 0.03 * k), 0.32)[0]
            if hoop:
                self.draw.ellipse((x - size, y, x + size, y + 2 * size), outline=metal, width=self.width(0.006))
            else:
                r = 0.6 * size
                self.draw.ellipse((x - r, y - r, x + r, y + r), fill=metal)

    def render(self) -> Image.Image:
        self.clothes()
        self.hair(front=False)
        self.neck()
        self.ears()
        self.earrings()
        self.face()
        self.freckles()
        self.eyes()
        self.eyebrows()
        self.nose()
        self.mouth()
        self.hair(front=True)
        self.glasses()
        return self.img


#: How much of the figure a portrait shows: ``name -> (zoom, centre_y, aligned)``. The figure is drawn on a
#: canvas ``zoom`` times the image's side and the image is the square around ``(0.5, centre_y)`` of that canvas
#: (fractions of its side). ``"portrait"``: head and shoulders (eyes about 2 px apart from the brows at 64 px).
#: ``"face"``: the face fills the frame (eyes about 5 px wide at 64 px), with the top of the hair and the
#: shoulders cut off. ``"aligned"``: the same crop moved with the face, as FFHQ's alignment crops are: with
#: ``aligned`` the square follows the face centre (:meth:`_Painter.face_centre`, halfway between the eyes'
#: midpoint and the mouth), so that it lands where a frontal, upright face has it. Turned and tilted heads
#: then keep their eyes and mouth within about 2 px of the same place (in the ``"face"`` crop the eyes move
#: up to about 10 px with the yaw), and pose shows in the outline of the head, the hair and the neck instead.
FRAMINGS = {"portrait": (1.0, 0.5, False), "face": (1.75, 0.46, False), "aligned": (1.75, 0.46, True)}


def check_framing(framing: str) -> str:
    """``framing`` if it names an entry of :data:`FRAMINGS`, else a ValueError naming the choices."""
    if framing not in FRAMINGS:
        raise ValueError(f"unknown framing {framing!r}; expected one of {', '.join(FRAMINGS)}")
    return framing


def crop_origin(painter: _Painter, side: int, framing: str) -> Tuple[int, int]:
    """Canvas pixels of the top-left corner of the ``side``-pixel square that ``framing`` crops from
    ``painter``'s canvas."""
    _, centre_y, aligned = FRAMINGS[check_framing(framing)]
    shift = painter.face_centre() - painter.face_centre(upright=True) if aligned else np.zeros(2)
    return (int(round(0.5 * painter.S - 0.5 * side + shift[0])),
            int(round(centre_y * painter.S - 0.5 * side + shift[1])))


def render_portrait(attrs: PortraitAttributes, size: int = 64, supersample: int = 4,
                    framing: str = "portrait") -> Image.Image:
    """Draw ``attrs`` as an RGB ``size x size`` image (drawn at ``size * supersample``, then downsampled),
    framed as :data:`FRAMINGS` ``[framing]`` says."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    zoom = FRAMINGS[check_framing(framing)][0]
    side = int(size) * int(supersample)
    painter = _Painter(attrs, int(round(side * zoom)))
    img = painter.render()
    if painter.S != side:
        x0, y0 = crop_origin(painter, side, framing)
        img = img.crop((x0, y0, x0 + side, y0 + side))
    if supersample > 1:
        img = img.resize((int(size), int(size)), _Resampling.LANCZOS)
    return img


def render_seed(seed: int, size: int = 64, framing: str = "portrait") -> Tuple[Image.Image, PortraitAttributes]:
    """Portrait ``seed`` and its attributes."""
    attrs = sample_attributes(seed)
    return render_portrait(attrs, size=size, framing=framing), attrs


def portrait_grid(seeds: Sequence[int], size: int = 64, cols: int = 4, framing: str = "portrait") -> Image.Image:
    """The portraits of ``seeds`` tiled row by row, ``cols`` per row (for a quick look at the domain)."""
    seeds = list(seeds)
    rows = max(1, -(-len(seeds) // cols))
    grid = Image.new("RGB", (cols * size, rows * size), (255, 255, 255))
    for i, seed in enumerate(seeds):
        grid.paste(render_seed(seed, size, framing)[0], ((i % cols) * size, (i // cols) * size))
    return grid


__all__ = ["FRAMINGS", "check_framing", "portrait_grid", "render_portrait", "render_seed"]
