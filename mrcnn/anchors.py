"""Anchors: the pyramid anchor boxes in numpy, their in-graph (TF) twin, and the one cache of them.

Anchors are (y1, x1, y2, x2) boxes: pixel coordinates of the molded image from ``generate_anchors`` /
``generate_pyramid_anchors``, normalized (``mrcnn.boxes.norm_boxes``) for the graph. Per level, anchors
are ordered by feature-map position row-major, then ratio innermost, the order of the RPN head's outputs
(``mrcnn.rpn``); levels are concatenated P2 first.

``_anchor_boxes`` is the arithmetic both forms share, called with numpy or with TensorFlow, so
``anchors_graph`` (used by the SavedModel export for images of any size) equals the numpy anchors
exactly. ``pyramid_anchors`` / ``config_anchors`` cache the numpy anchors once per process for the
model, the data pipeline and the export. TensorFlow is imported inside ``anchors_graph`` only, so this
module (re-exported by ``mrcnn.utils``) stays free of TensorFlow.
"""

import functools

import numpy as np

from mrcnn.boxes import norm_boxes

__all__ = [
    "generate_anchors",
    "generate_pyramid_anchors",
    "anchors_graph",
    "pyramid_anchors",
    "config_anchors",
]


def _anchor_boxes(shifts_y, shifts_x, heights, widths, xp):
    """Boxes [len(shifts_y) * len(shifts_x) * K, 4] centred at every (shift_y, shift_x), positions in
    row-major order, the K (height, width) pairs innermost. ``xp`` is numpy or tensorflow."""
    center_y, center_x = xp.meshgrid(shifts_y, shifts_x, indexing="ij")
    center_y = xp.reshape(center_y, [-1, 1])
    center_x = xp.reshape(center_x, [-1, 1])
    boxes = xp.stack(
        [
            center_y - 0.5 * heights,
            center_x - 0.5 * widths,
            center_y + 0.5 * heights,
            center_x + 0.5 * widths,
        ],
        axis=-1,
    )
    return xp.reshape(boxes, [-1, 4])


def _sides(scales, ratios):
    """(heights, widths) float64 [len(ratios) * len(scales)]: scale / sqrt(ratio), scale * sqrt(ratio)."""
    scales, ratios = np.meshgrid(np.asarray(scales, dtype=np.float64), np.asarray(ratios, dtype=np.float64))
    scales = scales.ravel()
    ratios = ratios.ravel()
    return scales / np.sqrt(ratios), scales * np.sqrt(ratios)


def generate_anchors(scales, ratios, shape, feature_stride: int, anchor_stride: int) -> np.ndarray:
    """Anchors for one feature map.

    scales: anchor side(s) in pixels; ratios: width/height ratios; shape: (rows, cols) of the feature map;
    feature_stride: image pixels per feature cell; anchor_stride: place anchors every n cells.
    Heights are scale/sqrt(ratio), widths scale*sqrt(ratio); centres are at (row, col) * feature_stride
    (top-left of each cell). Returns float64 [rows'*cols'*len(ratios)*len(scales), 4] pixel boxes
    (y1, x1, y2, x2), positions in row-major order, ratios (then scales) innermost.
    """
    heights, widths = _sides(scales, ratios)
    shifts_y = np.arange(0, shape[0], anchor_stride) * feature_stride
    shifts_x = np.arange(0, shape[1], anchor_stride) * feature_stride
    return _anchor_boxes(shifts_y, shifts_x, heights, widths, np)


def generate_pyramid_anchors(
    scales, ratios, feature_shapes, feature_strides, anchor_stride: int
) -> np.ndarray:
    """Anchors for all pyramid levels, one scale per level, concatenated level by level.

    scales: [L] anchor sides; feature_shapes: [L, 2]; feature_strides: [L]. Returns float64 [A, 4] pixel
    boxes (y1, x1, y2, x2).
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(
            f"need one scale, feature shape and stride per level; got {len(scales)} scales, "
            f"{len(feature_shapes)} shapes, {len(feature_strides)} strides"
        )
    anchors = [
        generate_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
        for i in range(len(scales))
    ]
    return np.concatenate(anchors, axis=0)


def anchors_graph(molded_height, molded_width, config, dtype=None):
    """TF twin of ``config_anchors(config, ...)[1]`` for a molded image size given as scalar tensors.

    Feature maps are ceil(side / stride) per BACKBONE_STRIDES (ResNet backbones). Computed in ``dtype``:
    float64 by default, as the numpy form, so the result equals it exactly (float32 for runtimes without
    float64). Returns float32 [A, 4] normalized (y1, x1, y2, x2) boxes.
    """
    import tensorflow as tf

    dtype = dtype or tf.float64
    height = tf.cast(molded_height, dtype)
    width = tf.cast(molded_width, dtype)
    stride = int(config.RPN_ANCHOR_STRIDE)
    levels = []
    for scale, feature_stride in zip(config.RPN_ANCHOR_SCALES, config.BACKBONE_STRIDES):
        heights, widths = _sides(scale, config.RPN_ANCHOR_RATIOS)
        rows = tf.cast(tf.math.ceil(height / feature_stride), tf.int32)
        cols = tf.cast(tf.math.ceil(width / feature_stride), tf.int32)
        shifts_y = tf.cast(tf.range(0, rows, stride) * feature_stride, dtype)
        shifts_x = tf.cast(tf.range(0, cols, stride) * feature_stride, dtype)
        sides = (tf.constant(heights, dtype), tf.constant(widths, dtype))
        levels.append(_anchor_boxes(shifts_y, shifts_x, *sides, tf))
    anchors = tf.concat(levels, axis=0)
    norm_scale = tf.stack([height - 1.0, width - 1.0, height - 1.0, width - 1.0])
    norm_shift = tf.constant([0.0, 0.0, 1.0, 1.0], dtype)
    return tf.cast((anchors - norm_shift) / norm_scale, tf.float32)


@functools.lru_cache(maxsize=16)
def _cached_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride, image_size):
    pixels = generate_pyramid_anchors(
        scales, ratios, np.array(feature_shapes), feature_strides, anchor_stride
    )
    normalized = norm_boxes(pixels, image_size)
    pixels.setflags(write=False)
    normalized.setflags(write=False)
    return pixels, normalized


def pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride: int, image_shape):
    """The anchors of ``generate_pyramid_anchors`` for a molded image of ``image_shape`` (H, W[, C]),
    cached (the process's one anchor cache, 16 settings at most).

    Returns (pixels float64 [A, 4], normalized float32 [A, 4]) read-only arrays of (y1, x1, y2, x2) boxes.
    """
    return _cached_anchors(
        tuple(float(s) for s in scales),
        tuple(float(r) for r in ratios),
        tuple(tuple(int(v) for v in shape) for shape in feature_shapes),
        tuple(int(s) for s in feature_strides),
        int(anchor_stride),
        tuple(int(v) for v in image_shape[:2]),
    )


def config_anchors(config, image_shape):
    """``pyramid_anchors`` with a Config's anchor settings and its backbone's feature-map sizes for a
    molded image of ``image_shape`` (H, W[, C]): (pixels float64 [A, 4], normalized float32 [A, 4])."""
    from mrcnn.backbone import compute_backbone_shapes  # Keras: imported when first needed

    return pyramid_anchors(
        config.RPN_ANCHOR_SCALES,
        config.RPN_ANCHOR_RATIOS,
        compute_backbone_shapes(config, image_shape),
        config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE,
        image_shape,
    )
