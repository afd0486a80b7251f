"""TensorFlow box and meta helpers used inside the graph's custom layers, and their float32 base layer.

The helpers operate on tf.Tensors (never on KerasTensors): call them from a Layer's ``call``.
Boxes are (y1, x1, y2, x2). Inside the graph boxes are normalized (see ``norm_boxes_graph``).
"""

import keras
import tensorflow as tf


class Float32Layer(keras.layers.Layer):
    """Base of the graph layers that must compute in float32 whatever the dtype policy.

    Anchors, proposals (top-k, delta decoding, NMS), detection targets, detections and the losses need
    float32: a bfloat16 box has 8 bits of mantissa, about 4 px at 1024 px. Under a mixed precision
    policy (``Config.MIXED_PRECISION``) these layers still get the "float32" policy, so their floating
    inputs are cast to float32 and their outputs are float32. An explicit ``dtype=`` still wins.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)


def apply_box_deltas_graph(boxes, deltas):
    """Apply (dy, dx, log(dh), log(dw)) deltas to boxes.

    boxes: [..., 4] (y1, x1, y2, x2); deltas: [..., 4]. Returns refined boxes [..., 4], same dtype.
    """
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * tf.exp(deltas[..., 2])
    width = width * tf.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=-1, name="apply_box_deltas_out")


def clip_boxes_graph(boxes, window):
    """Clip boxes [..., N, 4] to ``window`` (y1, x1, y2, x2): one window [4] or one per image [B, 4]."""
    window = tf.cast(window, boxes.dtype)
    if window.shape.rank is not None and window.shape.rank > 1:
        window = window[..., tf.newaxis, :]
    low = tf.concat([window[..., :2], window[..., :2]], axis=-1)
    high = tf.concat([window[..., 2:], window[..., 2:]], axis=-1)
    return tf.minimum(tf.maximum(boxes, low), high, name="clipped_boxes")


def log2_graph(x):
    """Base-2 logarithm."""
    return tf.math.log(x) / tf.math.log(tf.constant(2.0, dtype=x.dtype))


def overlaps_graph(boxes1, boxes2):
    """IoU matrix [N1, N2] between boxes1 [N1, 4] and boxes2 [N2, 4] (any coordinates)."""
    b1 = boxes1[:, tf.newaxis, :]
    b2 = boxes2[tf.newaxis, :, :]
    y1 = tf.maximum(b1[..., 0], b2[..., 0])
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    intersection = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - intersection
    return tf.math.divide_no_nan(intersection, union)


def box_refinement_graph(box, gt_box):
    """Deltas (dy, dx, log(dh), log(dw)) that turn ``box`` [N, 4] into ``gt_box`` [N, 4]."""
    box = tf.cast(box, tf.float32)
    gt_box = tf.cast(gt_box, tf.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width
    return tf.stack(
        [
            (gt_center_y - center_y) / height,
            (gt_center_x - center_x) / width,
            tf.math.log(gt_height / height),
            tf.math.log(gt_width / width),
        ],
        axis=1,
    )


def trim_zeros_graph(boxes, name="trim_zeros"):
    """Drop all-zero rows of boxes [N, 4]. Returns (trimmed boxes [M, 4], bool mask [N] of kept rows)."""
    non_zeros = tf.cast(tf.reduce_sum(tf.abs(boxes), axis=1), tf.bool)
    return tf.boolean_mask(boxes, non_zeros, name=name), non_zeros


def batch_pack_graph(x, counts, num_rows):
    """Concatenate the first ``counts[i]`` rows of ``x[i]`` for i < num_rows. x: [B, N, ...]."""
    return tf.concat([x[i, : counts[i]] for i in range(num_rows)], axis=0)


def norm_boxes_graph(boxes, shape):
    """Pixel boxes (exclusive y2, x2) -> normalized boxes. shape: [2] (height, width)."""
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - 1.0
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.divide(tf.cast(boxes, tf.float32) - shift, scale)


def denorm_boxes_graph(boxes, shape):
    """Normalized boxes -> int32 pixel boxes (exclusive y2, x2). shape: [2] (height, width)."""
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - 1.0
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.cast(tf.round(tf.multiply(boxes, scale) + shift), tf.int32)


def shape_list(tensor):
    """The shape of ``tensor`` as a list: the static size where known, a scalar int32 tensor elsewhere."""
    dynamic = tf.shape(tensor)
    return [size if size is not None else dynamic[i] for i, size in enumerate(tensor.shape)]
