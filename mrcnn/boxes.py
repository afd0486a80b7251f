"""Box geometry: IoU, box deltas, normalization; each op's numpy form beside its TensorFlow (graph) form.

Conventions: boxes are (y1, x1, y2, x2). Pixel boxes have exclusive (y2, x2); normalized boxes are in
[0, 1] as produced by ``norm_boxes`` (pixel (y2, x2) minus one, divided by (h - 1, w - 1)). Inside the
graph boxes are normalized. Masks are [H, W, N] with one channel per instance.

Where an op has both forms, one arithmetic core (``_iou_terms``, ``_decode_deltas``, ``_encode_deltas``)
is written once and called with numpy or TensorFlow functions, so the two forms cannot drift apart. The
``*_graph`` functions take and return tf.Tensors (call them from a Layer's ``call``, never on
KerasTensors). TensorFlow is imported inside them only, so ``import mrcnn.boxes`` (and ``mrcnn.utils``,
which re-exports the numpy forms) stays free of TensorFlow.
"""

import numpy as np

__all__ = [
    "extract_bboxes",
    "compute_iou",
    "compute_overlaps",
    "overlaps_graph",
    "compute_overlaps_masks",
    "non_max_suppression",
    "apply_box_deltas",
    "apply_box_deltas_graph",
    "clip_boxes_graph",
    "box_refinement",
    "box_refinement_graph",
    "norm_boxes",
    "norm_boxes_graph",
    "denorm_boxes",
    "denorm_boxes_graph",
]


def extract_bboxes(mask: np.ndarray) -> np.ndarray:
    """Tight boxes around instance masks.

    mask: [H, W, N] array (bool or numeric; nonzero = inside).
    Returns int32 [N, 4] pixel boxes (y1, x1, y2, x2) with exclusive y2/x2; all zeros for empty masks.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"extract_bboxes expects a mask of shape [H, W, N], got shape {mask.shape}")
    rows = mask.any(axis=1)  # [H, N]
    cols = mask.any(axis=0)  # [W, N]
    nonempty = rows.any(axis=0)
    y1 = rows.argmax(axis=0)
    y2 = rows.shape[0] - rows[::-1].argmax(axis=0)
    x1 = cols.argmax(axis=0)
    x2 = cols.shape[0] - cols[::-1].argmax(axis=0)
    boxes = np.stack([y1, x1, y2, x2], axis=1) * nonempty[:, None]
    return boxes.astype(np.int32)


############################################################
#  IoU
############################################################


def _area(boxes):
    """Areas [...] of boxes [..., 4] (numpy or TF)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection(boxes1, boxes2, maximum, minimum):
    """Intersection areas of boxes1 [..., 4] and boxes2 [..., 4] (broadcast), with numpy or TF functions."""
    height = maximum(minimum(boxes1[..., 2], boxes2[..., 2]) - maximum(boxes1[..., 0], boxes2[..., 0]), 0)
    width = maximum(minimum(boxes1[..., 3], boxes2[..., 3]) - maximum(boxes1[..., 1], boxes2[..., 1]), 0)
    return height * width


def _iou_terms(boxes1, boxes2, maximum, minimum):
    """(intersection, union) [N1, N2] of boxes1 [N1, 4] and boxes2 [N2, 4], with numpy or TF functions."""
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    intersection = _intersection(b1, b2, maximum, minimum)
    return intersection, _area(b1) + _area(b2) - intersection


def _safe_divide(intersection, union):
    """intersection / union with 0 where union is 0 (degenerate boxes or empty masks)."""
    out = np.zeros(np.broadcast(intersection, union).shape, dtype=np.result_type(intersection, union, 1.0))
    np.divide(intersection, union, out=out, where=union > 0)
    return out


def compute_iou(box: np.ndarray, boxes: np.ndarray, box_area: float, boxes_area: np.ndarray) -> np.ndarray:
    """IoU of one box against many.

    box: [4] (y1, x1, y2, x2); boxes: [N, 4] (same coordinates, pixel or normalized); box_area: scalar;
    boxes_area: [N] (areas passed in so that callers can compute them once). Returns float [N]; 0 where
    both boxes have zero area.
    """
    intersection = _intersection(np.asarray(box), np.asarray(boxes), np.maximum, np.minimum)
    return _safe_divide(intersection, box_area + np.asarray(boxes_area) - intersection)


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU matrix between two box sets (vectorized by broadcasting).

    boxes1: [N1, 4], boxes2: [N2, 4], (y1, x1, y2, x2) in the same coordinates. Returns float64 [N1, N2];
    0 where both boxes have zero area. ``overlaps_graph`` is the TF form.
    """
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    return _safe_divide(*_iou_terms(b1, b2, np.maximum, np.minimum))


def overlaps_graph(boxes1, boxes2):
    """TF form of ``compute_overlaps``: IoU matrix [N1, N2] of boxes1 [N1, 4] and boxes2 [N2, 4].

    Any coordinates (pixel or normalized, the same for both); 0 where the union is 0. Same dtype as boxes.
    """
    import tensorflow as tf

    return tf.math.divide_no_nan(*_iou_terms(boxes1, boxes2, tf.maximum, tf.minimum))


def nms_corners_and_area_graph(boxes):
    """[..., 4] boxes with corners in either order -> [..., 5] (y1, x1, y2, x2, area), y1 <= y2 and
    x1 <= x2: the form ``nms_iou_graph`` takes, so each box's area is computed once."""
    import tensorflow as tf

    y1, y2 = tf.minimum(boxes[..., 0], boxes[..., 2]), tf.maximum(boxes[..., 0], boxes[..., 2])
    x1, x2 = tf.minimum(boxes[..., 1], boxes[..., 3]), tf.maximum(boxes[..., 1], boxes[..., 3])
    return tf.stack([y1, x1, y2, x2, (y2 - y1) * (x2 - x1)], axis=-1)


def nms_iou_graph(a, b):
    """IoU [P, Q] of boxes a [P, 5] and b [Q, 5] from ``nms_corners_and_area_graph``, by the rule of
    ``tf.image.non_max_suppression``: 0 where either box has zero area. Used by the proposal NMS kernel
    and the detection layer's per-class NMS, so both suppress exactly as TensorFlow's NMS does."""
    import tensorflow as tf

    height = tf.minimum(a[:, None, 2], b[None, :, 2]) - tf.maximum(a[:, None, 0], b[None, :, 0])
    width = tf.minimum(a[:, None, 3], b[None, :, 3]) - tf.maximum(a[:, None, 1], b[None, :, 1])
    intersection = tf.maximum(height, 0.0) * tf.maximum(width, 0.0)
    positive = tf.minimum(a[:, None, 4], b[None, :, 4]) > 0
    union = a[:, None, 4] + b[None, :, 4] - intersection
    return tf.where(positive, intersection / tf.where(positive, union, 1.0), 0.0)


def compute_overlaps_masks(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """IoU matrix between two mask sets, computed as one matrix product.

    masks1: [H, W, N1], masks2: [H, W, N2]; values > 0.5 count as inside. Returns float32 [N1, N2]
    (all zeros if either set is empty; 0 where both masks are empty).
    """
    masks1 = np.asarray(masks1)
    masks2 = np.asarray(masks2)
    n1, n2 = masks1.shape[-1], masks2.shape[-1]
    if n1 == 0 or n2 == 0:
        return np.zeros((n1, n2), dtype=np.float32)
    if masks1.shape[:-1] != masks2.shape[:-1]:
        raise ValueError(f"mask sets must share [H, W]: got {masks1.shape} and {masks2.shape}")
    m1 = (masks1 > 0.5).reshape(-1, n1).astype(np.float32)
    m2 = (masks2 > 0.5).reshape(-1, n2).astype(np.float32)
    area1 = m1.sum(axis=0)
    area2 = m2.sum(axis=0)
    intersection = m1.T @ m2
    union = area1[:, None] + area2[None, :] - intersection
    return _safe_divide(intersection, union).astype(np.float32)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    boxes: [N, 4] (y1, x1, y2, x2), N > 0; scores: [N]; threshold: boxes overlapping a kept box with
    IoU > threshold are dropped. Returns int32 indices of kept boxes, highest score first.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.shape[0] == 0:
        raise ValueError("non_max_suppression needs at least one box; got an empty boxes array")
    if boxes.dtype.kind != "f":
        boxes = boxes.astype(np.float32)
    areas = _area(boxes)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        iou = compute_iou(boxes[best], boxes[rest], areas[best], areas[rest])
        order = rest[iou <= threshold]
    return np.array(keep, dtype=np.int32)


############################################################
#  Box deltas
############################################################


def _decode_deltas(boxes, deltas, exp):
    """(y1, x1, y2, x2) components of ``boxes`` [..., 4] moved by (dy, dx, log(dh), log(dw)) ``deltas``."""
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height + deltas[..., 0] * height
    center_x = boxes[..., 1] + 0.5 * width + deltas[..., 1] * width
    height = height * exp(deltas[..., 2])
    width = width * exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return [y1, x1, y1 + height, x1 + width]


def apply_box_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Apply (dy, dx, log(dh), log(dw)) deltas to boxes.

    boxes: [N, 4] (y1, x1, y2, x2), pixel or normalized; deltas: [N, 4]. Returns float32 [N, 4] in the
    coordinates of ``boxes``. ``apply_box_deltas_graph`` is the TF form.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    return np.stack(_decode_deltas(boxes, deltas, np.exp), axis=-1).astype(np.float32)


def apply_box_deltas_graph(boxes, deltas):
    """TF form of ``apply_box_deltas``: boxes [..., 4] (y1, x1, y2, x2); deltas [..., 4] (dy, dx,
    log(dh), log(dw)). Returns refined boxes [..., 4], same dtype and coordinates as ``boxes``."""
    import tensorflow as tf

    return tf.stack(_decode_deltas(boxes, deltas, tf.exp), axis=-1, name="apply_box_deltas_out")


def clip_boxes_graph(boxes, window):
    """Clip boxes [..., N, 4] to ``window`` (y1, x1, y2, x2): one window [4] or one per image [B, 4].

    Boxes and window in the same coordinates (normalized in the graph). Returns boxes' dtype.
    """
    import tensorflow as tf

    window = tf.cast(window, boxes.dtype)
    if window.shape.rank is not None and window.shape.rank > 1:
        window = window[..., tf.newaxis, :]
    low = tf.concat([window[..., :2], window[..., :2]], axis=-1)
    high = tf.concat([window[..., 2:], window[..., 2:]], axis=-1)
    return tf.minimum(tf.maximum(boxes, low), high, name="clipped_boxes")


def _encode_deltas(box, gt_box, log):
    """(dy, dx, log(dh), log(dw)) components that turn ``box`` [..., 4] into ``gt_box`` [..., 4]."""
    height = box[..., 2] - box[..., 0]
    width = box[..., 3] - box[..., 1]
    center_y = box[..., 0] + 0.5 * height
    center_x = box[..., 1] + 0.5 * width
    gt_height = gt_box[..., 2] - gt_box[..., 0]
    gt_width = gt_box[..., 3] - gt_box[..., 1]
    gt_center_y = gt_box[..., 0] + 0.5 * gt_height
    gt_center_x = gt_box[..., 1] + 0.5 * gt_width
    return [
        (gt_center_y - center_y) / height,
        (gt_center_x - center_x) / width,
        log(gt_height / height),
        log(gt_width / width),
    ]


def box_refinement(box: np.ndarray, gt_box: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Deltas (dy, dx, log(dh), log(dw)) that turn each ``box`` into its ``gt_box``.

    box, gt_box: [N, 4] (y1, x1, y2, x2), pixel or normalized (consistently). Returns [N, 4] computed in
    ``dtype`` (float32, as Matterport; the RPN targets use float64). ``box_refinement_graph`` is the TF form.
    """
    box = np.asarray(box, dtype=dtype)
    gt_box = np.asarray(gt_box, dtype=dtype)
    return np.stack(_encode_deltas(box, gt_box, np.log), axis=-1).astype(dtype, copy=False)


def box_refinement_graph(box, gt_box):
    """TF form of ``box_refinement``: float32 tensor [N, 4] of (dy, dx, log(dh), log(dw)) turning each
    ``box`` [N, 4] into its ``gt_box`` [N, 4] (y1, x1, y2, x2, same coordinates)."""
    import tensorflow as tf

    box = tf.cast(box, tf.float32)
    gt_box = tf.cast(gt_box, tf.float32)
    return tf.stack(_encode_deltas(box, gt_box, tf.math.log), axis=-1)


############################################################
#  Normalization
############################################################


# What non-finite boxes mean, for the messages that report them.
NON_FINITE_CAUSE = (
    "the model's outputs overflowed, which means its weights have diverged in training (lower "
    "LEARNING_RATE, keep GRADIENT_CLIP_NORM) or do not belong to this model (another weights file, "
    "BACKBONE or NUM_CLASSES)."
)


def _box_scale_shift(shape):
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1], dtype=np.float64)
    return scale, shift


def norm_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """Pixel boxes [..., 4] (y2/x2 exclusive) -> normalized float32 boxes: (boxes - [0,0,1,1]) / (h-1, w-1).

    shape: (height, width) of the image. ``norm_boxes_graph`` is the TF form.
    """
    scale, shift = _box_scale_shift(shape)
    return ((np.asarray(boxes, dtype=np.float64) - shift) / scale).astype(np.float32)


def _graph_scale_shift(shape):
    import tensorflow as tf

    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    return tf.concat([h, w, h, w], axis=-1) - 1.0, tf.constant([0.0, 0.0, 1.0, 1.0])


def norm_boxes_graph(boxes, shape):
    """TF form of ``norm_boxes`` (computed in float32): pixel boxes [..., 4] (exclusive y2, x2) ->
    normalized float32 boxes. shape: [2] (height, width) tensor."""
    import tensorflow as tf

    scale, shift = _graph_scale_shift(shape)
    return tf.divide(tf.cast(boxes, tf.float32) - shift, scale)


def denorm_boxes(boxes: np.ndarray, shape) -> np.ndarray:
    """Normalized boxes [..., 4] -> int32 pixel boxes: round(boxes * (h-1, w-1) + [0,0,1,1]).

    shape: (height, width) of the image. ``denorm_boxes_graph`` is the TF form.
    Non-finite coordinates (NaN or inf, from a model whose outputs overflowed) have no integer value:
    they raise ValueError rather than becoming arbitrary integers.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    finite = np.isfinite(boxes)
    if not finite.all():
        raise ValueError(
            f"denorm_boxes got {boxes.size - int(finite.sum())} non-finite (NaN or inf) coordinates in boxes "
            f"of shape {boxes.shape}: {NON_FINITE_CAUSE} Drop those boxes first, e.g. "
            "boxes[np.isfinite(boxes).all(axis=-1)]."
        )
    scale, shift = _box_scale_shift(shape)
    return np.round(boxes * scale + shift).astype(np.int32)


def denorm_boxes_graph(boxes, shape):
    """TF form of ``denorm_boxes`` (computed in float32): normalized boxes [..., 4] -> int32 pixel boxes
    (exclusive y2, x2). shape: [2] (height, width) tensor."""
    import tensorflow as tf

    scale, shift = _graph_scale_shift(shape)
    return tf.cast(tf.round(tf.multiply(boxes, scale) + shift), tf.int32)
