"""Drawing labels and markers that stay legible at any image size, on any machine.

Text uses Pillow's built-in scalable font (``ImageFont.load_default(size=...)``, bundled with Pillow's FreeType
build), so no system font is needed; a dark outline keeps it readable on any background.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, features

from .errors import SSRLError

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
RED = (230, 25, 25)


@lru_cache(maxsize=64)
def font(size_px: int) -> ImageFont.FreeTypeFont:
    if not features.check("freetype2"):
        raise SSRLError("Pillow was built without FreeType; labels need it (install the Pillow wheel from PyPI)")
    return ImageFont.load_default(size=max(8, int(size_px)))  # type: ignore[return-value]


def label_size(side_px: float, fraction: float = 0.22, minimum: int = 14) -> int:
    """Font size for a label on a patch/image whose shorter side is ``side_px``."""
    return max(minimum, int(round(side_px * fraction)))


def draw_label(
    draw: ImageDraw.ImageDraw,
    center: tuple[float, float],
    text: str,
    size_px: int,
    fill: tuple[int, int, int] = WHITE,
    outline: tuple[int, int, int] = BLACK,
) -> None:
    """Text centred on ``center`` with an outline of ~1/12 of the font size."""
    draw.text(center, text, font=font(size_px), fill=fill, anchor="mm", stroke_width=max(2, size_px // 12), stroke_fill=outline)


def draw_badge(
    draw: ImageDraw.ImageDraw,
    center: tuple[float, float],
    text: str,
    radius: float,
    fill: tuple[int, int, int] = WHITE,
    ink: tuple[int, int, int] = BLACK,
    edge: tuple[int, int, int] = RED,
) -> None:
    """A filled circle with a centred label (the paper's "circled label")."""
    x, y = center
    r = max(6.0, radius)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=edge, width=max(2, int(r / 6)))
    draw.text((x, y), text, font=font(int(r * 1.2)), fill=ink, anchor="mm")


def draw_region_marker(
    image: Image.Image,
    center: tuple[float, float],
    ring_radius: float,
    text: str,
    badge_radius: float,
    color: tuple[int, int, int] = RED,
) -> tuple[float, float]:
    """Mark a region without hiding it: a hollow ring around the region and a circled label beside the ring.

    The badge sits on the ring's upper-right diagonal, moved to another diagonal when it would leave the image.
    Returns the badge centre (recorded in the metadata so a reader can check what was drawn).
    """
    draw = ImageDraw.Draw(image)
    x, y = center
    width = max(2, int(ring_radius / 6))
    draw.ellipse((x - ring_radius, y - ring_radius, x + ring_radius, y + ring_radius), outline=WHITE, width=width + 2)
    draw.ellipse((x - ring_radius, y - ring_radius, x + ring_radius, y + ring_radius), outline=color, width=width)
    offset = (ring_radius + badge_radius) * 0.7071
    w, h = image.size
    for dx, dy in ((1, -1), (-1, -1), (1, 1), (-1, 1)):
        bx, by = x + dx * offset, y + dy * offset
        if badge_radius <= bx <= w - badge_radius and badge_radius <= by <= h - badge_radius:
            break
    else:
        bx = min(max(x + offset, badge_radius), w - badge_radius)
        by = min(max(y - offset, badge_radius), h - badge_radius)
    draw_badge(draw, (bx, by), text, badge_radius, edge=color)
    return (float(bx), float(by))
