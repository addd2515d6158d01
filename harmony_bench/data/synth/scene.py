"""Drawing learnable scenes: coloured shapes on textured backgrounds, with exact geometry.

Every synthetic dataset kind is drawn here, so their labels (class, mask,
boxes, caption) are all determined by what is drawn and a model can actually
learn them.  Shapes are polygons: the same vertex list draws the object, fills
its segmentation mask and becomes its COCO polygon, so masks and annotations
agree exactly.  Objects sit in disjoint grid cells, so nothing is occluded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# name -> (number of vertices, radius of every other vertex relative to the outer radius)
SHAPES: dict[str, tuple[int, float]] = {
    "circle": (32, 1.0),
    "square": (4, 1.0),
    "triangle": (3, 1.0),
    "diamond": (4, 1.0),
    "hexagon": (6, 1.0),
    "star": (10, 0.45),
    "cross": (12, 0.0),  # built specially below; the tuple only documents it
}
SHAPE_ROTATION: dict[str, float] = {"square": math.pi / 4, "diamond": 0.0}

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 215),
    "yellow": (235, 200, 30),
    "magenta": (200, 40, 190),
    "cyan": (30, 190, 200),
}


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Per-pixel Gaussian grain."""
    return rng.normal(0, 12, (size, size))


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Horizontal sinusoidal stripes of random period."""
    period = rng.integers(6, 14)
    return 18 * np.sin(np.arange(size)[:, None] * 2 * np.pi / period + np.zeros((1, size)))


def _checker(rng: np.random.Generator, size: int) -> np.ndarray:
    """A checkerboard of random cell size."""
    cell = rng.integers(6, 14)
    yy, xx = np.indices((size, size)) // cell
    return 15 * (((yy + xx) % 2) * 2 - 1)


# Background style -> texture (offsets around a random grey level); captions name the style.
TEXTURES = {"noise": _noise, "stripes": _stripes, "checker": _checker}
BACKGROUNDS = tuple(TEXTURES)


@dataclass(frozen=True)
class DrawnObject:
    """One drawn shape: what it is and exactly where it is."""

    shape: str
    color: str
    polygon: list[tuple[float, float]]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """COCO-style ``[x, y, width, height]`` of the polygon."""
        xs, ys = [p[0] for p in self.polygon], [p[1] for p in self.polygon]
        return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def shape_polygon(
    shape: str, center: tuple[float, float], radius: float, angle: float
) -> list[tuple[float, float]]:
    """Vertices of ``shape`` centred at ``center``, rotated by ``angle`` (radians)."""
    if shape == "cross":
        arm = radius / 3
        unit = [
            (-arm, -radius),
            (arm, -radius),
            (arm, -arm),
            (radius, -arm),
            (radius, arm),
            (arm, arm),
            (arm, radius),
            (-arm, radius),
            (-arm, arm),
            (-radius, arm),
            (-radius, -arm),
            (-arm, -arm),
        ]
    else:
        count, inner = SHAPES[shape]
        start = SHAPE_ROTATION.get(shape, -math.pi / 2)
        unit = []
        for i in range(count):
            r = radius if i % 2 == 0 else radius * inner
            theta = start + 2 * math.pi * i / count
            unit.append((r * math.cos(theta), r * math.sin(theta)))
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = center
    return [(round(cx + x * cos - y * sin, 2), round(cy + x * sin + y * cos, 2)) for x, y in unit]


def background(rng: np.random.Generator, size: int, style: str) -> np.ndarray:
    """A low-contrast grey texture (HxWx3 uint8) that never looks like an object colour."""
    base = rng.integers(90, 160)
    field = base + TEXTURES[style](rng, size)
    return np.repeat(np.clip(field, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def grid_cells(size: int, per_side: int) -> list[tuple[float, float, float]]:
    """Centres and half-widths of a ``per_side`` × ``per_side`` grid of disjoint cells."""
    step = size / per_side
    return [((i + 0.5) * step, (j + 0.5) * step, step / 2) for j in range(per_side) for i in range(per_side)]


def place(
    rng: np.random.Generator, cell: tuple[float, float, float], min_fill: float = 0.55
) -> tuple[tuple[float, float], float, float]:
    """Random centre jitter, radius and rotation that keep a shape inside its cell."""
    cx, cy, half = cell
    radius = half * rng.uniform(min_fill, 0.85)
    slack = half - radius
    center = (cx + rng.uniform(-slack, slack), cy + rng.uniform(-slack, slack))
    return center, radius, float(rng.uniform(-0.3, 0.3))


def draw_scene(
    rng: np.random.Generator,
    size: int,
    objects: list[tuple[str, str]],
    per_side: int,
    style: str | None = None,
) -> tuple[Image.Image, list[DrawnObject]]:
    """Draw ``objects`` ((shape, colour) pairs) into distinct random cells of a textured image."""
    style = style or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    image = Image.fromarray(background(rng, size, style))
    pen = ImageDraw.Draw(image)
    cells = grid_cells(size, per_side)
    chosen = rng.permutation(len(cells))[: len(objects)]
    drawn = []
    for (shape, color), cell_index in zip(objects, chosen, strict=True):
        center, radius, angle = place(rng, cells[int(cell_index)], min_fill=0.55 if per_side > 1 else 0.6)
        polygon = shape_polygon(shape, center, radius, angle)
        shade = np.clip(np.array(COLORS[color]) + rng.integers(-15, 16, 3), 0, 255)
        pen.polygon(polygon, fill=tuple(int(v) for v in shade))
        drawn.append(DrawnObject(shape, color, polygon))
    return image, drawn


def rasterize(polygon: list[tuple[float, float]], size: int) -> np.ndarray:
    """Boolean mask of a polygon, drawn with the same rasteriser as the image."""
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=1)
    return np.asarray(mask, dtype=bool)
