"""Resizing images and masks to the network's input size, in numpy and in TensorFlow.

``resize_image`` (numpy, used by ``detect()`` and the training data) and ``resize_images_graph``
(TensorFlow, used by the exported models) compute the same pixels: one scale rule (``resize_scale``,
written once for both array libraries), the same pixel-centre-aligned bilinear interpolation (that of
``skimage.transform.resize``, i.e. ``scipy.ndimage.zoom(order=1, grid_mode=True, mode="constant")``), the
same clipping and the same cast back to the input dtype: truncation, as Matterport's
``.astype(image.dtype)`` (a uint8 value of 99.7 becomes 99). ``tests/test_transform.py`` holds them equal,
and ``tests/test_matterport_compat.py`` holds ``resize_image`` equal to Matterport's resize call.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import scipy.ndimage
import skimage.transform

from mrcnn.transform._lazy import tf

RESIZE_MODES = ("none", "square", "pad64", "crop")

_NUMPY_OPS = SimpleNamespace(maximum=np.maximum, minimum=np.minimum, where=np.where, round=np.round)


def _tf_ops(dtype):
    """maximum/minimum/where/round on ``dtype`` tensors; Python numbers are cast rather than inferred."""

    def cast(value):
        return tf.cast(value, dtype)

    return SimpleNamespace(
        maximum=lambda a, b: tf.maximum(cast(a), cast(b)),
        minimum=lambda a, b: tf.minimum(cast(a), cast(b)),
        where=lambda condition, a, b: tf.where(condition, cast(a), cast(b)),
        round=tf.round,
    )


def resize_scale(height, width, min_dim, max_dim, min_scale, mode, ops=_NUMPY_OPS):
    """The factor ``resize_image`` scales an image of (height, width) by (float64).

    Scale up so the short side reaches ``min_dim`` (never down for it), at least ``min_scale``; in
    "square" mode then down so that round(long side * scale) <= ``max_dim``. "none" gives 1.
    ``ops`` holds maximum/minimum/where/round of the array library (numpy by default; ``_tf_ops(dtype)``
    in the graph), so both forms follow one rule.
    """
    scale = 1.0
    if mode == "none":
        return scale
    if min_dim:
        scale = ops.maximum(1.0, min_dim / ops.minimum(height, width))
    if min_scale:
        scale = ops.maximum(scale, float(min_scale))
    if max_dim and mode == "square":
        image_max = ops.maximum(height, width)
        scale = ops.where(ops.round(image_max * scale) > max_dim, max_dim / image_max, scale)
    return scale


def scaled_size(height, width, scale, ops=_NUMPY_OPS):
    """(round(height * scale), round(width * scale)), at least 1 each (a 1x1000 strip stays 1 pixel high)."""
    return ops.maximum(1.0, ops.round(height * scale)), ops.maximum(1.0, ops.round(width * scale))


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


def _int_size(height, width, scale):
    out_h, out_w = scaled_size(height, width, scale)
    return int(out_h), int(out_w)


def _centered_padding(height, width, full_height, full_width):
    top = (full_height - height) // 2
    left = (full_width - width) // 2
    return [(top, full_height - height - top), (left, full_width - width - left), (0, 0)]


def _random_crop_corner(height, width, side, rng):
    """Top-left corner of a random [side, side] crop: global ``random`` (Matterport) or ``rng``."""
    if rng is None:
        return random.randint(0, height - side), random.randint(0, width - side)
    return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))


def resize_image(image, min_dim=None, max_dim=None, min_scale=None, mode="square", *, rng=None):
    """Resize (and pad or crop) an image, keeping its aspect ratio.

    image: [H, W, C] (or [H, W]) array. Modes:
      "none": unchanged; window (0, 0, h, w), scale 1.
      "square": scale up so the short side >= min_dim (never down for min_dim), raise to min_scale,
        then reduce so the long side <= max_dim; pad centered to [max_dim, max_dim].
      "pad64": scale as above (max_dim ignored), pad centered to multiples of 64; min_dim % 64 == 0.
      "crop": scale as above, then a random [min_dim, min_dim] crop, drawn from ``rng`` (a numpy
        Generator) when given, else from Python's global ``random`` as Matterport.
    Pixel-identical to Matterport's ``resize_image`` for every mode and dtype: scikit-image's bilinear
    ``resize`` (order 1, constant mode, clipped, range preserved, no anti-aliasing), then ``astype`` back
    to the input dtype, which truncates integer types (e.g. uint8 99.7 -> 99) rather than rounding.
    Returns (image, window, scale, padding, crop): the image in the input dtype;
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
    padding = [(0, 0), (0, 0), (0, 0)]
    if mode == "none":
        return image, window, 1, padding, None
    if mode == "square" and not max_dim:
        raise ValueError("resize mode 'square' needs max_dim (the side of the square output)")
    if mode == "pad64" and (not min_dim or min_dim % 64 != 0):
        raise ValueError(f"resize mode 'pad64' needs min_dim to be a positive multiple of 64, got {min_dim}")
    if mode == "crop" and not min_dim:
        raise ValueError("resize mode 'crop' needs min_dim (the side of the square crop)")

    scale = float(resize_scale(float(h), float(w), min_dim, max_dim, min_scale, mode))
    if scale == 1:
        scale = 1
    else:
        # As Matterport: interpolate in float (clipped to the image's own value range, so integer types
        # cannot overflow), then truncate back to the input dtype with astype.
        image = resize(image, _int_size(h, w, scale), preserve_range=True).astype(image_dtype)

    h, w = image.shape[:2]
    crop = None
    if mode == "crop":
        y, x = _random_crop_corner(h, w, min_dim, rng)
        crop = (y, x, min_dim, min_dim)
        image = image[y : y + min_dim, x : x + min_dim]
        window = (0, 0, min_dim, min_dim)
    else:
        if mode == "square":
            full_h = full_w = max_dim
        else:  # pad64
            full_h, full_w = -(-h // 64) * 64, -(-w // 64) * 64
        padding = _centered_padding(h, w, full_h, full_w)
        image = np.pad(image, padding[: image.ndim], mode="constant", constant_values=0)
        window = (padding[0][0], padding[1][0], padding[0][0] + h, padding[1][0] + w)
    return image.astype(image_dtype, copy=False), window, scale, padding, crop


def resize_image_for(image, config, *, rng=None):
    """``resize_image`` with the config's IMAGE_MIN_DIM, IMAGE_MAX_DIM, IMAGE_MIN_SCALE and
    IMAGE_RESIZE_MODE: what ``detect()`` and the training data do to every image."""
    return resize_image(
        image,
        min_dim=config.IMAGE_MIN_DIM,
        min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM,
        mode=config.IMAGE_RESIZE_MODE,
        rng=rng,
    )


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
        out_h, out_w = _int_size(h, w, scale)
        mask = scipy.ndimage.zoom(
            mask, zoom=[out_h / h, out_w / w, 1], order=0, grid_mode=True, mode="nearest"
        )
    if crop is not None:
        y, x, h, w = crop
        return mask[y : y + h, x : x + w]
    return np.pad(mask, padding, mode="constant", constant_values=0)


############################################################
#  TensorFlow twins (used by the exported models)
############################################################


FLOAT32_FLOOR_SLACK = 1e-3
"""Added before flooring float32 resize results: far above float32's rounding error on 0..255 (~3e-5)."""


def _linear_taps(in_size, out_size, dtype):
    """Sample positions and weights of a pixel-centre-aligned linear resample of one axis.

    Output sample i reads input coordinate c = (i + 0.5) * in / out - 0.5 (in ``dtype``). Returns (low,
    w0, w1): int32 indices of the two taps into the axis extended by one zero sample on each side, and
    their weights 1 - frac(c) and 1 - (1 - frac(c)) (scipy's order-1 spline weights, bit for bit in
    float64).
    """
    coords = (tf.range(out_size, dtype=dtype) + 0.5) * (
        tf.cast(in_size, dtype) / tf.cast(out_size, dtype)
    ) - 0.5
    low = tf.floor(coords)
    w0 = 1.0 - (coords - low)
    return tf.cast(low, tf.int32) + 1, w0, 1.0 - w0


def resize_images_graph(images, out_height, out_width, dtype=None):
    """``resize_image``'s interpolation for uint8 images [B, H, W, C] in TensorFlow.

    The arithmetic of ``resize(..., preserve_range=True).astype(np.uint8)`` in ``resize_image``: zeros
    outside the image, the four taps summed in scipy's order, each image clipped to its own value range,
    then truncated (floor: the values are >= 0). ``dtype`` (default float64) is the arithmetic's: float64
    gives ``resize_image``'s pixels exactly; float32 (for runtimes without float64) floors with a 1e-3
    slack, so that a flat region's value computed a rounding error below its integer keeps it, and a
    pixel whose exact value lies within 1e-3 below the next integer comes out one level higher.
    Returns float32 [B, out_height, out_width, C] holding integers 0..255.
    """
    dtype = dtype or tf.float64
    values = tf.cast(images, dtype)
    shape = tf.shape(images)
    y_low, wy0, wy1 = _linear_taps(shape[1], out_height, dtype)
    x_low, wx0, wx1 = _linear_taps(shape[2], out_width, dtype)
    padded = tf.pad(values, [[0, 0], [1, 1], [1, 1], [0, 0]])
    top = tf.gather(padded, y_low, axis=1)
    bottom = tf.gather(padded, y_low + 1, axis=1)
    wy0 = wy0[None, :, None, None]
    wy1 = wy1[None, :, None, None]
    wx0 = wx0[None, None, :, None]
    wx1 = wx1[None, None, :, None]
    resized = (
        tf.gather(top, x_low, axis=2) * wy0 * wx0
        + tf.gather(top, x_low + 1, axis=2) * wy0 * wx1
        + tf.gather(bottom, x_low, axis=2) * wy1 * wx0
        + tf.gather(bottom, x_low + 1, axis=2) * wy1 * wx1
    )
    low = tf.reduce_min(values, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(values, axis=[1, 2, 3], keepdims=True)
    resized = tf.clip_by_value(resized, low, high)
    slack = 0.0 if dtype == tf.float64 else FLOAT32_FLOOR_SLACK
    return tf.cast(tf.floor(resized + slack), tf.float32)


def resize_and_pad_graph(images, config, dtype=None):
    """``resize_image`` with the config's mode for a batch of same-size uint8 images, in TensorFlow.

    images: uint8 [B, H, W, C]; mode "square", "pad64" or "none"; dtype: the arithmetic's (float64 by
    default, as numpy's; float32 for runtimes without float64). Returns (pixels float32 [B, h, w, C]
    zero-padded, window int32 [4] (y1, x1, y2, x2) pixels of the resized image in the padded one, y2/x2
    exclusive, scale scalar of ``dtype``).
    """
    dtype = dtype or tf.float64
    ops = _tf_ops(dtype)
    mode = config.IMAGE_RESIZE_MODE
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    real_h, real_w = tf.cast(height, dtype), tf.cast(width, dtype)
    scale = tf.constant(1.0, dtype)
    if mode == "none":
        pixels = tf.cast(images, tf.float32)
        new_h, new_w = height, width
    else:
        scale = tf.cast(
            resize_scale(
                real_h, real_w, config.IMAGE_MIN_DIM, config.IMAGE_MAX_DIM, config.IMAGE_MIN_SCALE, mode, ops
            ),
            dtype,
        )
        new_h, new_w = (tf.cast(s, tf.int32) for s in scaled_size(real_h, real_w, scale, ops))
        pixels = tf.cond(
            tf.equal(scale, 1.0),
            lambda: tf.cast(images, tf.float32),
            lambda: resize_images_graph(images, new_h, new_w, dtype),
        )
    if mode == "square":
        full_h = full_w = tf.constant(int(config.IMAGE_MAX_DIM), tf.int32)
    elif mode == "pad64":
        full_h = (new_h + 63) // 64 * 64
        full_w = (new_w + 63) // 64 * 64
    else:
        full_h, full_w = new_h, new_w
    top = (full_h - new_h) // 2
    left = (full_w - new_w) // 2
    pixels = tf.pad(pixels, [[0, 0], [top, full_h - new_h - top], [left, full_w - new_w - left], [0, 0]])
    window = tf.stack([top, left, top + new_h, left + new_w])
    return pixels, window, scale
