"""Forms of three steps of the model that every export runtime runs well.

ONNX (through tf2onnx), TFLite's builtin op set and OpenVINO lack two ops the model uses:
``CropAndResize`` (TFLite) and ``NonMaxSuppressionWithOverlaps`` (all three); and OpenVINO's TopK takes
seconds for the proposal layer's top 6,000 of 261,888 anchor scores. Graphs traced inside
``mrcnn.kernels.switch.portable()`` use these replacements instead; ``mrcnn.kernels.select`` decides.
Each computes what it replaces: the crops bit for bit (the same float32 arithmetic in the same order),
the NMS the same selection (TensorFlow's IoU rule, suppression when IoU > threshold), the top k the same
indices in the same order.
"""

import tensorflow as tf


def _sample_positions(start, stop, size, extent):
    """Where ``tf.image.crop_and_resize`` samples one axis: start, stop [K] normalized box sides,
    ``size`` (int) samples, ``extent`` (float32 scalar) = image side - 1. Returns float32 [K, size]."""
    if size > 1:
        step = (stop - start) * extent / float(size - 1)
        return start[:, None] * extent + tf.range(size, dtype=tf.float32)[None, :] * step[:, None]
    return (0.5 * (start + stop) * extent)[:, None]


def crop_and_resize(image, boxes, box_indices, crop_size):
    """``tf.image.crop_and_resize(image, boxes, box_indices, crop_size)`` (bilinear, extrapolation value
    0) by gathers: image float32 [B, H, W, C]; boxes float32 [K, 4] (y1, x1, y2, x2) normalized;
    box_indices int32 [K]; crop_size (height, width) ints. Returns float32 [K, height, width, C].

    Samples outside the image are 0, as in the op. Four gathers of [K, height, width, C] corner values.
    """
    crop_h, crop_w = (int(side) for side in crop_size)
    shape = tf.shape(image)
    height, width, channels = shape[1], shape[2], shape[3]
    extent_y = tf.cast(height - 1, tf.float32)
    extent_x = tf.cast(width - 1, tf.float32)
    in_y = _sample_positions(boxes[:, 0], boxes[:, 2], crop_h, extent_y)  # [K, crop_h]
    in_x = _sample_positions(boxes[:, 1], boxes[:, 3], crop_w, extent_x)  # [K, crop_w]
    inside = tf.logical_and(
        tf.logical_and(in_y >= 0.0, in_y <= extent_y)[:, :, None],
        tf.logical_and(in_x >= 0.0, in_x <= extent_x)[:, None, :],
    )  # [K, crop_h, crop_w]

    top = tf.floor(in_y)
    left = tf.floor(in_x)
    y_lerp = (in_y - top)[:, :, None, None]
    x_lerp = (in_x - left)[:, None, :, None]

    def index(values, extent):
        return tf.cast(tf.clip_by_value(values, 0.0, extent), tf.int32)

    top_i, bottom_i = index(top, extent_y), index(tf.math.ceil(in_y), extent_y)
    left_i, right_i = index(left, extent_x), index(tf.math.ceil(in_x), extent_x)
    pixels = tf.reshape(image, [-1, channels])
    row_base = tf.cast(box_indices, tf.int32)[:, None] * height

    def corner(rows, cols):
        flat = ((row_base + rows)[:, :, None]) * width + cols[:, None, :]  # [K, crop_h, crop_w]
        return tf.gather(pixels, flat)

    top_left, top_right = corner(top_i, left_i), corner(top_i, right_i)
    bottom_left, bottom_right = corner(bottom_i, left_i), corner(bottom_i, right_i)
    upper = top_left + (top_right - top_left) * x_lerp
    lower = bottom_left + (bottom_right - bottom_left) * x_lerp
    crops = upper + (lower - upper) * y_lerp
    return tf.where(tf.expand_dims(inside, -1), crops, tf.zeros_like(crops))


def per_class_nms(boxes, class_ids, scores, num_classes: int, max_output_size: int, iou_threshold: float):
    """Greedy NMS within each class, then the ``max_output_size`` best of all classes.

    boxes float32 [K, 4]; class_ids int32 [K] in 1..num_classes-1; scores float32 [K], all > 0.
    Returns int32 [<= max_output_size]: indices into K, score-descending (ties: lower class first).
    One ``NonMaxSuppressionV4`` per foreground class over the boxes of that class (the others get score
    -1, below its score threshold 0). A class keeps at most ``max_output_size`` boxes, which cannot
    change the final top ``max_output_size``.
    """
    count = tf.shape(scores)[0]
    scores_or_unused = tf.concat([scores, [-1.0]], axis=0)  # index ``count``: an unused slot
    slots = tf.range(max_output_size)
    chosen = []
    for class_id in range(1, int(num_classes)):
        class_scores = tf.where(tf.equal(class_ids, class_id), scores, -tf.ones_like(scores))
        selected, kept = tf.raw_ops.NonMaxSuppressionV4(
            boxes=boxes,
            scores=class_scores,
            max_output_size=max_output_size,
            iou_threshold=iou_threshold,
            score_threshold=0.0,
            pad_to_max_output_size=True,
        )
        chosen.append(tf.where(slots < kept, selected, count))
    chosen = tf.concat(chosen, axis=0)
    best_scores, best = tf.math.top_k(tf.gather(scores_or_unused, chosen), k=max_output_size)
    return tf.boolean_mask(tf.gather(chosen, best), best_scores >= 0.0)


THRESHOLD_STEPS = 24
"""Bisection steps of ``top_k_indices``: the threshold interval ends at 2**-24 of the top score."""


def top_k_indices(scores, k):
    """``tf.math.top_k(scores, k).indices`` for non-negative scores [B, A] (k <= A): int32 [B, k], by
    descending score, ties by lower index.

    A bisection (``THRESHOLD_STEPS`` vectorized counts) finds per image a threshold with at least k scores
    at or above it, and ``top_k`` then sorts only those few candidates, in index order, so it picks the
    same indices in the same order as one ``top_k`` over all A.
    """
    low = tf.zeros_like(scores[:, 0])  # at least k scores >= low (all of them)
    high = tf.reduce_max(scores, axis=1) * 1.5 + 1e-30  # no score >= high
    for _ in range(THRESHOLD_STEPS):
        middle = 0.5 * (low + high)
        enough = tf.reduce_sum(tf.cast(scores >= tf.expand_dims(middle, -1), tf.int32), axis=1) >= k
        low = tf.where(enough, middle, low)
        high = tf.where(enough, high, middle)

    def one_image(image):
        image_scores, threshold = image
        candidates = tf.cast(tf.where(image_scores >= threshold)[:, 0], tf.int32)  # ascending index
        _, best = tf.math.top_k(tf.gather(image_scores, candidates), k=k)
        return tf.gather(candidates, best)

    size = k if isinstance(k, int) else None
    return tf.map_fn(one_image, (scores, low), fn_output_signature=tf.TensorSpec([size], tf.int32))
