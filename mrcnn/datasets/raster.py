"""Rasterize annotation shapes into boolean masks, clipped to the image.

Coordinates are in pixels with the centre of pixel (row r, column c) at (y=r, x=c), as in
``skimage.draw``. A pixel belongs to a shape when its centre is inside it (polygon edges included).
Shapes that touch, cross or lie entirely outside the image border are clipped, never an error.
"""

import numpy as np
import skimage.draw

__all__ = [
    "polygon_mask",
    "rectangle_mask",
    "ellipse_mask",
    "paint_polygon",
    "paint_rectangle",
    "paint_ellipse",
]


def _finite(values, what):
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} has non-finite coordinates: {array.tolist()}")
    return array


def paint_polygon(mask, ys, xs):
    """Set the pixels of the polygon with vertices (ys[i], xs[i]) in the bool [H, W] ``mask`` (in place).

    Fewer than 3 vertices paint nothing. Vertices may lie on or outside the border (clipped).
    """
    ys, xs = _finite(ys, "polygon"), _finite(xs, "polygon")
    if ys.size != xs.size:
        raise ValueError(f"polygon has {ys.size} y but {xs.size} x coordinates")
    if ys.size < 3:
        return mask
    rr, cc = skimage.draw.polygon(ys, xs, shape=mask.shape[:2])
    mask[rr, cc] = True
    return mask


def paint_rectangle(mask, y1, x1, y2, x2):
    """Set the pixels of rows [round(y1), round(y2)) and columns [round(x1), round(x2)) (in place).

    Corners may come in any order; the rectangle is clipped to the image.
    """
    y1, x1, y2, x2 = _finite([y1, x1, y2, x2], "rectangle")
    top, bottom = sorted((int(np.round(y1)), int(np.round(y2))))
    left, right = sorted((int(np.round(x1)), int(np.round(x2))))
    height, width = mask.shape[:2]
    mask[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)] = True
    return mask


def paint_ellipse(mask, cy, cx, ry, rx, theta=0.0):
    """Set the pixels whose centre is inside an ellipse (in place).

    Centre (cy, cx), radii ry (vertical before rotation) and rx, rotated by ``theta`` radians clockwise
    on screen (y points down), as VIA 2 and HTML canvas draw it. A circle is ry == rx.
    """
    cy, cx, ry, rx, theta = _finite([cy, cx, ry, rx, theta], "ellipse")
    ry, rx = abs(ry), abs(rx)
    if ry == 0 or rx == 0:
        return mask
    height, width = mask.shape[:2]
    reach = max(ry, rx)
    top, bottom = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, height)
    left, right = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, width)
    if top >= bottom or left >= right:
        return mask
    dy, dx = np.mgrid[top:bottom, left:right].astype(np.float64)
    dy -= cy
    dx -= cx
    cos, sin = np.cos(theta), np.sin(theta)
    u = dx * cos + dy * sin  # along the (rotated) x radius
    v = -dx * sin + dy * cos  # along the (rotated) y radius
    mask[top:bottom, left:right] |= (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    return mask


def polygon_mask(shape, ys, xs):
    """bool [H, W] mask of one polygon; ``shape`` is the image (H, W)."""
    return paint_polygon(np.zeros(shape[:2], dtype=bool), ys, xs)


def rectangle_mask(shape, y1, x1, y2, x2):
    """bool [H, W] mask of the rectangle rows [y1, y2), columns [x1, x2) (rounded, clipped)."""
    return paint_rectangle(np.zeros(shape[:2], dtype=bool), y1, x1, y2, x2)


def ellipse_mask(shape, cy, cx, ry, rx, theta=0.0):
    """bool [H, W] mask of one ellipse (see ``paint_ellipse``)."""
    return paint_ellipse(np.zeros(shape[:2], dtype=bool), cy, cx, ry, rx, theta)
