"""Matterport's ``mrcnn.utils``, as a facade: every name it had, re-exported from the module that owns it.

Box geometry lives in ``mrcnn.boxes``, anchors in ``mrcnn.anchors``, AP metrics in ``mrcnn.metrics``,
``Dataset`` in ``mrcnn.datasets.base``, ``batch_slice`` in ``mrcnn.graph_ops`` and the weights download in
``mrcnn.download``. New code should import from those modules; Matterport-style scripts
(``from mrcnn import utils``; ``utils.Dataset``, ``utils.compute_ap``, ...) keep working.

Conventions: boxes are (y1, x1, y2, x2). Pixel boxes have exclusive (y2, x2); normalized boxes are in
[0, 1] as produced by ``norm_boxes``. Masks are [H, W, N] with one channel per instance.

Importing this module does not import TensorFlow: the ``*_graph`` box ops import it when called, and
``batch_slice`` (whose module builds Keras layers) is loaded on first access.

The resizing and mask functions below are still defined here until they move to ``mrcnn.transform``.
"""

import random

import numpy as np
import scipy.ndimage
import skimage.transform

from mrcnn.anchors import generate_anchors, generate_pyramid_anchors
from mrcnn.boxes import (
    apply_box_deltas,
    box_refinement,
    box_refinement_graph,
    compute_iou,
    compute_overlaps,
    compute_overlaps_masks,
    denorm_boxes,
    extract_bboxes,
    non_max_suppression,
    norm_boxes,
)
from mrcnn.datasets.base import Dataset
from mrcnn.download import COCO_MODEL_URL, download_trained_weights
from mrcnn.metrics import compute_ap, compute_ap_range, compute_matches, compute_recall, trim_zeros

__all__ = [
    "COCO_MODEL_URL",
    "extract_bboxes",
    "compute_iou",
    "compute_overlaps",
    "compute_overlaps_masks",
    "non_max_suppression",
    "apply_box_deltas",
    "box_refinement_graph",
    "box_refinement",
    "Dataset",
    "resize_image",
    "resize_mask",
    "minimize_mask",
    "expand_mask",
    "unmold_mask",
    "generate_anchors",
    "generate_pyramid_anchors",
    "trim_zeros",
    "compute_matches",
    "compute_ap",
    "compute_ap_range",
    "compute_recall",
    "batch_slice",  # noqa: F822  (resolved by __getattr__ below)
    "download_trained_weights",
    "norm_boxes",
    "denorm_boxes",
    "resize",
]


def __getattr__(name):
    """``batch_slice`` on first access: ``mrcnn.graph_ops`` imports TensorFlow and Keras."""
    if name == "batch_slice":
        from mrcnn.graph_ops import batch_slice

        return batch_slice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


RESIZE_MODES = ("none", "square", "pad64", "crop")


############################################################
#  Resizing
############################################################


def resize(
    image,
    output_shape,
    order=1,
    mode="constant",
    cval=0,
    clip=True,
    preserve_range=False,
    anti_aliasing=False,
    anti_aliasing_sigma=None,
):
    """``skimage.transform.resize`` with Matterport's defaults (no anti-aliasing).

    Bool input with order > 0 is interpolated as float32 (scikit-image >= 0.19 refuses to interpolate
    bool); the result is then float in [0, 1].
    """
    image = np.asarray(image)
    if image.dtype == bool and order != 0:
        image = image.astype(np.float32)
    return skimage.transform.resize(
        image,
        output_shape,
        order=order,
        mode=mode,
        cval=cval,
        clip=clip,
        preserve_range=preserve_range,
        anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma,
    )


def _cast_like(array, dtype):
    """Cast interpolated values back to ``dtype``, rounding and clipping for integer types."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = np.clip(np.round(array), info.min, info.max)
    return array.astype(dtype)


def _scaled_size(h, w, scale):
    """(round(h * scale), round(w * scale)), at least 1 pixel each (a 1x1000 strip stays 1 pixel high)."""
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square"):
    """Resize (and pad or crop) an image, keeping its aspect ratio.

    image: [H, W, C] (or [H, W]) array. Modes:
      "none": unchanged; window (0, 0, h, w), scale 1.
      "square": scale up so the short side >= min_dim (never down for min_dim), raise to min_scale,
        then reduce so the long side <= max_dim; pad centered to [max_dim, max_dim].
      "pad64": scale as above (max_dim ignored), pad centered to multiples of 64; min_dim % 64 == 0.
      "crop": scale as above, then a random [min_dim, min_dim] crop (uses ``random.randint``).
    Returns (image, window, scale, padding, crop): the image in the input dtype (integer types rounded);
    window (y1, x1, y2, x2) of the resized image inside the output, y2/x2 exclusive; scale (float, or
    int 1); padding [(top, bottom), (left, right), (0, 0)]; crop (y, x, h, w) or None.
    The scaled size is (round(h * scale), round(w * scale)) but at least 1 pixel per side (Matterport
    produced a 0-pixel side for very elongated images, e.g. 3x700 into 64). An empty image raises ValueError.
    """
    image = np.asarray(image)
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; allowed modes are {', '.join(RESIZE_MODES)}")
    if image.ndim not in (2, 3):
        raise ValueError(f"resize_image expects an image of shape [H, W, C] or [H, W], got {image.shape}")
    image_dtype = image.dtype
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(
            f"resize_image got an empty image of shape {image.shape}; height and width must be >= 1"
        )
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError("resize mode 'square' needs max_dim (the side of the square output)")
    if mode == "pad64" and (not min_dim or min_dim % 64 != 0):
        raise ValueError(f"resize mode 'pad64' needs min_dim to be a positive multiple of 64, got {min_dim}")
    if mode == "crop" and not min_dim:
        raise ValueError("resize mode 'crop' needs min_dim (the side of the square crop)")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square":
        image_max = max(h, w)
        if round(image_max * scale) > max_dim:
            scale = max_dim / image_max
    if scale != 1:
        resized = resize(image, _scaled_size(h, w, scale), preserve_range=True)
        image = _cast_like(resized, image_dtype)

    h, w = image.shape[:2]
    if mode == "square":
        top = (max_dim - h) // 2
        left = (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
        image = np.pad(image, padding[: image.ndim], mode="constant", constant_values=0)
        window = (top, left, top + h, left + w)
    elif mode == "pad64":
        full_h = -(-h // 64) * 64
        full_w = -(-w // 64) * 64
        top = (full_h - h) // 2
        left = (full_w - w) // 2
        padding = [(top, full_h - h - top), (left, full_w - w - left), (0, 0)]
        image = np.pad(image, padding[: image.ndim], mode="constant", constant_values=0)
        window = (top, left, top + h, left + w)
    elif mode == "crop":
        y = random.randint(0, h - min_dim)
        x = random.randint(0, w - min_dim)
        crop = (y, x, min_dim, min_dim)
        image = image[y : y + min_dim, x : x + min_dim]
        window = (0, 0, min_dim, min_dim)
    return image.astype(image_dtype, copy=False), window, scale, padding, crop


def resize_mask(mask, scale, padding, crop=None):
    """Resize masks with the scale/padding/crop returned by ``resize_image``.

    mask: [H, W, N] (any dtype; bool stays bool). Nearest-neighbour zoom to the size ``resize_image``
    gives the image (round(H*scale), round(W*scale), at least 1), then crop (y, x, h, w) if given, else
    pad. The zoom samples pixel centres (``grid_mode=True``), the same alignment ``resize_image`` uses, so
    masks line up with the resized image (Matterport's corner-aligned zoom could be off by up to half a
    pixel).
    """
    mask = np.asarray(mask)
    if scale != 1 and mask.shape[0] > 0 and mask.shape[1] > 0:
        h, w = mask.shape[:2]
        out_h, out_w = _scaled_size(h, w, scale)
        mask = scipy.ndimage.zoom(
            mask, zoom=[out_h / h, out_w / w, 1], order=0, grid_mode=True, mode="nearest"
        )
    if crop is not None:
        y, x, h, w = crop
        return mask[y : y + h, x : x + w]
    return np.pad(mask, padding, mode="constant", constant_values=0)


def _box_ints(box):
    y1, x1, y2, x2 = (int(v) for v in np.asarray(box)[:4])
    return y1, x1, y2, x2


def minimize_mask(bbox, mask, mini_shape):
    """Crop each instance mask to its box and resize it to ``mini_shape`` (saves memory).

    bbox: int [N, 4] pixel boxes; mask: [H, W, N]; mini_shape: (h, w). Returns bool [h, w, N].
    Bilinear resize of a float copy thresholded at >= 0.5 (works with bool masks on any scikit-image).
    """
    mask = np.asarray(mask)
    mini_shape = tuple(int(s) for s in mini_shape)
    mini_mask = np.zeros(mini_shape + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = _box_ints(bbox[i])
        m = mask[y1:y2, x1:x2, i].astype(np.float32)
        if m.size == 0:
            raise ValueError(f"instance {i} has an empty bounding box {(y1, x1, y2, x2)}; cannot minimize it")
        mini_mask[:, :, i] = resize(m, mini_shape) >= 0.5
    return mini_mask


def expand_mask(bbox, mini_mask, image_shape):
    """Inverse of ``minimize_mask``: paste each mini mask back into its box.

    bbox: int [N, 4] pixel boxes; mini_mask: [h, w, N]; image_shape: (H, W, ...). Returns bool [H, W, N].
    """
    mini_mask = np.asarray(mini_mask)
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mini_mask.shape[-1]):
        y1, x1, y2, x2 = _box_ints(bbox[i])
        if y2 <= y1 or x2 <= x1:
            continue
        m = resize(mini_mask[:, :, i].astype(np.float32), (y2 - y1, x2 - x1))
        mask[y1:y2, x1:x2, i] = m >= 0.5
    return mask


def unmold_mask(mask, bbox, image_shape):
    """Turn a small float mask from the mask head into a full-size bool mask.

    mask: float [h, w] (e.g. 28x28 sigmoid output); bbox: (y1, x1, y2, x2) pixel box, y2/x2 exclusive;
    image_shape: (H, W, ...). The mask is resized to the box, thresholded at >= 0.5 and pasted into a
    bool [H, W] image; parts of the box outside the image are dropped; an empty box gives an all-False mask.
    """
    y1, x1, y2, x2 = _box_ints(bbox)
    height, width = int(image_shape[0]), int(image_shape[1])
    full_mask = np.zeros((height, width), dtype=bool)
    if y2 <= y1 or x2 <= x1:
        return full_mask
    box_mask = resize(np.asarray(mask, dtype=np.float32), (y2 - y1, x2 - x1)) >= 0.5
    cy1, cx1 = max(y1, 0), max(x1, 0)
    cy2, cx2 = min(y2, height), min(x2, width)
    if cy2 > cy1 and cx2 > cx1:
        full_mask[cy1:cy2, cx1:cx2] = box_mask[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1]
    return full_mask
