"""Colours and pixel drawing with numpy only (no matplotlib): ``random_colors``, ``apply_mask``,
``draw_box``, ``render_instances``, and the input checks the figure functions share."""

import colorsys
import random
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

Color = Sequence[float]
"""An RGB or RGBA colour: floats in [0, 1] (``draw_box`` takes values in the image's own scale)."""


def _check_image(image):
    """``image`` as an array, checked to be [H, W, 3]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"image must be an RGB array of shape [H, W, 3], got shape {image.shape}; "
            "convert grayscale with np.stack([image] * 3, axis=-1)"
        )
    return image


def _pixel_box(box):
    """(y1, x1, y2, x2) as Python ints (rounded)."""
    return tuple(int(round(float(v))) for v in np.asarray(box).reshape(4))


def _check_instances(image, boxes, masks, class_ids, class_names, scores, colors, captions):
    """Validate a detection set against ``image``; returns (boxes [N, 4], masks [H, W, N], class_ids [N]).

    Raises ValueError naming the mismatch when N differs between the inputs or a class id has no name.
    """
    boxes = np.asarray(boxes)
    boxes = np.zeros((0, 4)) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4] (y1, x1, y2, x2), got {boxes.shape}")
    n = boxes.shape[0]
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"masks must have shape [H, W, N] = [{image.shape[0]}, {image.shape[1]}, N] to match the image, "
            f"got {masks.shape}"
        )
    class_ids = np.asarray(class_ids).reshape(-1)
    lengths = {"boxes": n, "masks (last dim)": masks.shape[-1], "class_ids": class_ids.shape[0]}
    if scores is not None:
        lengths["scores"] = len(scores)
    if captions is not None:
        lengths["captions"] = len(captions)
    if len(set(lengths.values())) != 1:
        found = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"instance counts disagree ({found}); pass one entry per instance")
    if colors is not None and len(colors) < n:
        raise ValueError(f"colors has {len(colors)} entries for {n} instances; pass one colour per instance")
    bad = [int(c) for c in class_ids if not 0 <= int(c) < len(class_names)]
    if bad:
        raise ValueError(f"class ids {bad} have no entry in class_names (which has {len(class_names)} names)")
    return boxes, masks, class_ids


############################################################
#  Colours and pixel drawing
############################################################


def random_colors(
    N: int, bright: bool = True, *, seed: int | None = None
) -> list[tuple[float, float, float]]:
    """N distinct RGB colours (tuples of floats in [0, 1]) in shuffled order.

    Hues are evenly spaced in HSV with full saturation and value 1.0 (``bright``) or 0.7. The order is
    shuffled with ``random`` (the global generator, or ``random.Random(seed)`` when ``seed`` is given, which
    makes the result reproducible).
    """
    value = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / N, 1.0, value) for i in range(N)]
    if seed is None:
        random.shuffle(colors)
    else:
        random.Random(seed).shuffle(colors)
    return colors


def apply_mask(image: np.ndarray, mask: ArrayLike, color: Color, alpha: float = 0.5) -> np.ndarray:
    """Alpha-blend ``color`` into ``image`` in place where ``mask == 1`` and return ``image``.

    image: [H, W, 3] array (0..255); mask: [H, W] (bool or 0/1); color: RGB floats in [0, 1] (scaled by 255).
    Blended value = (1 - alpha) * pixel + alpha * 255 * color. Integer images are rounded to the nearest
    integer (Matterport truncated).
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] < 3:
        raise ValueError("image must be a numpy array of shape [H, W, 3]; it is modified in place")
    mask = np.asarray(mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} must equal the image's [H, W] {image.shape[:2]}")
    inside = mask == 1
    for c in range(3):
        blended = image[..., c][inside] * (1 - alpha) + alpha * float(color[c]) * 255
        if np.issubdtype(image.dtype, np.integer):
            blended = np.rint(blended)
        image[..., c][inside] = blended
    return image


def draw_box(image: np.ndarray, box: ArrayLike, color: ArrayLike) -> np.ndarray:
    """Burn a 2-pixel rectangle outline into ``image`` in place and return it.

    image: [H, W, C] array; box: (y1, x1, y2, x2) pixel box with exclusive y2/x2 (the outline lies inside
    the box; Matterport drew the bottom and right edges just outside it); color: a value per channel in the
    image's own scale (e.g. (255, 0, 0) for uint8). Parts outside the image are clipped.
    """
    y1, x1, y2, x2 = _pixel_box(box)
    height, width = image.shape[:2]
    y1, y2 = max(y1, 0), min(y2, height)
    x1, x2 = max(x1, 0), min(x2, width)
    if y2 <= y1 or x2 <= x1:
        return image
    image[y1 : min(y1 + 2, y2), x1:x2] = color
    image[max(y2 - 2, y1) : y2, x1:x2] = color
    image[y1:y2, x1 : min(x1 + 2, x2)] = color
    image[y1:y2, max(x2 - 2, x1) : x2] = color
    return image


def _mask_edge(mask):
    """Boolean [H, W]: pixels of ``mask`` with a 4-neighbour outside the mask (or on the image border)."""
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    )
    return mask & ~interior


def render_instances(
    image: ArrayLike,
    boxes: ArrayLike,
    masks: ArrayLike,
    class_ids: ArrayLike,
    class_names: Sequence[str],
    scores: ArrayLike | None = None,
    colors: Sequence[Color] | None = None,
) -> np.ndarray:
    """Overlay instances on a copy of ``image`` with numpy only; returns uint8 [H, W, 3].

    Arguments as in ``display_instances`` (validated the same way). Each instance with a non-zero box gets
    its mask blended at alpha 0.5, its mask outline (mask pixels touching the background) and its 2-pixel
    box (inside the exclusive box) in solid colour. No text is drawn. Colours default to
    ``random_colors(N)``; pass ``colors`` for reproducible output.
    """
    image = _check_image(image)
    boxes, masks, class_ids = _check_instances(
        image, boxes, masks, class_ids, class_names, scores, colors, None
    )
    n = boxes.shape[0]
    colors = random_colors(n) if colors is None else colors
    canvas = image.astype(np.float64)
    for i in range(n):
        if not np.any(boxes[i]):
            continue
        rgb = np.asarray(colors[i][:3], dtype=np.float64)
        mask = masks[:, :, i] > 0.5
        apply_mask(canvas, mask, rgb, alpha=0.5)
        canvas[_mask_edge(mask)] = rgb * 255
        draw_box(canvas, boxes[i], rgb * 255)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
