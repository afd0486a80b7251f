"""Un-molding: the graph's detections -> boxes and masks of the original image, in numpy and TensorFlow.

``unmold_detections`` (numpy, used by ``MaskRCNN.detect``) and the exported models' ``unmold_boxes_graph``
and ``paste_masks_graph`` give the same boxes and masks (``tests/test_transform.py``). Also here: the
mask resizing of the training data (mini masks) and Matterport's one-mask ``unmold_mask``.

Boxes are (y1, x1, y2, x2). The graph's are normalized to the molded image; the returned ones are integer
pixels of the original image with exclusive y2/x2.
"""

from __future__ import annotations

import logging

import numpy as np

from mrcnn.boxes import NON_FINITE_CAUSE, denorm_boxes, norm_boxes
from mrcnn.transform._lazy import tf
from mrcnn.transform.resizing import resize

logger = logging.getLogger(__name__)

############################################################
#  Boxes
############################################################


def unmold_boxes(boxes, window, molded_shape, image_shape) -> np.ndarray:
    """Normalized boxes [N, 4] of the molded image -> int32 pixel boxes [N, 4] of the original image.

    window: (y1, x1, y2, x2) pixels of the resized image inside the molded one; molded_shape and
    image_shape: (height, width, ...) of the molded and the original image.
    """
    wy1, wx1, wy2, wx2 = norm_boxes(np.asarray(window), molded_shape[:2])
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    return denorm_boxes((boxes - shift) / scale, image_shape[:2])


def unmold_boxes_graph(boxes, window, molded_shape, image_shape, dtype=None):
    """TensorFlow twin of ``unmold_boxes`` for a batch: boxes [B, N, 4] -> float32 integer-valued pixel
    boxes, with the same float32/float64 steps so the rounding agrees (``dtype`` float32 instead of the
    default float64 for runtimes without it). window: int32 [4]; molded_shape, image_shape: (height,
    width) tensors."""
    dtype = dtype or tf.float64
    window_norm = tf.cast(
        (tf.cast(window, dtype) - tf.constant([0.0, 0.0, 1.0, 1.0], dtype))
        / tf.cast(tf.stack([molded_shape[0] - 1, molded_shape[1] - 1] * 2), dtype),
        tf.float32,
    )
    wy1, wx1, wy2, wx2 = tf.unstack(window_norm)
    shift = tf.stack([wy1, wx1, wy1, wx1])
    scale = tf.stack([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = (tf.cast(boxes, tf.float32) - shift) / scale
    pixel_scale = tf.cast(tf.stack([image_shape[0] - 1, image_shape[1] - 1] * 2), dtype)
    pixels = tf.cast(boxes, dtype) * pixel_scale + tf.constant([0.0, 0.0, 1.0, 1.0], dtype)
    return tf.cast(tf.round(pixels), tf.float32)


def unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape, window):
    """One image's graph outputs -> (boxes, class_ids, scores, masks) in original pixels.

    detections: [DMI, 6] normalized (y1, x1, y2, x2, class_id, score), zero padded.
    mrcnn_mask: [DMI, h, w, NUM_CLASSES]. Rows up to the first padding row (class 0) are kept, less those
    with a NaN or inf value (a diverged model's; never cast to integers, one logged warning names the
    likely cause), then the boxes with a positive area. Returns boxes int32 [N, 4] (exclusive y2/x2),
    class_ids int32 [N], scores float32 [N], masks bool [H, W, N] (bool also when N = 0, unlike
    Matterport's float64 empty array).
    """
    zero_ix = np.where(detections[:, 4] == 0)[0]
    count = zero_ix[0] if zero_ix.shape[0] > 0 else detections.shape[0]
    rows = np.arange(count)
    finite = np.isfinite(detections[:count]).all(axis=1)
    if not finite.all():
        logger.warning(
            "Dropped %d of %d detections whose boxes or scores are NaN or inf: %s",
            count - int(finite.sum()),
            count,
            NON_FINITE_CAUSE,
        )
        rows = rows[finite]
    class_ids = detections[rows, 4].astype(np.int32)
    scores = detections[rows, 5].astype(np.float32)
    masks = mrcnn_mask[rows, :, :, class_ids]
    boxes = unmold_boxes(detections[rows, :4], window, image_shape, original_image_shape)

    keep = np.where((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0)[0]
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    full_masks = paste_masks(masks, boxes, original_image_shape[:2])
    return boxes.astype(np.int32), class_ids, scores, full_masks


############################################################
#  Masks
############################################################


def _box_ints(box):
    y1, x1, y2, x2 = (int(v) for v in np.asarray(box)[:4])
    return y1, x1, y2, x2


def minimize_mask(bbox, mask, mini_shape) -> np.ndarray:
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


def expand_mask(bbox, mini_mask, image_shape) -> np.ndarray:
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


def unmold_mask(mask, bbox, image_shape) -> np.ndarray:
    """Turn one small float mask from the mask head into a full-size bool mask (Matterport's form).

    mask: float [h, w] (e.g. 28x28 sigmoid output); bbox: (y1, x1, y2, x2) pixel box, y2/x2 exclusive;
    image_shape: (H, W, ...). The mask is resized to the box (scikit-image), thresholded at >= 0.5 and
    pasted into a bool [H, W] image; parts of the box outside the image are dropped; an empty box gives an
    all-False mask. ``paste_masks`` does the same for many masks at once.
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


def _interpolation_matrix(start, stop, size, length):
    """Bilinear weights [stop - start, size + 2] (float64) that resample a zero-padded axis of ``size``
    samples over the pixel span [start, stop) of a box of ``length`` pixels.

    The arithmetic of scikit-image's constant-mode resize of the mask to the box (scipy's order-1 zoom
    with ``grid_mode``): pixel p reads coordinate c = (p + 0.5) * (size / length) - 0.5 with weights
    1 - frac(c) and 1 - (1 - frac(c)) on its two neighbours, the samples outside the mask being zero.
    """
    pixels = np.arange(start, stop, dtype=np.float64)
    coords = (pixels + 0.5) * (size / length) - 0.5 + 1.0  # +1: the zero padding sample
    coords = np.clip(coords, 0.0, size + 1.0)
    low = np.minimum(np.floor(coords), size)
    w0 = 1.0 - (coords - low)
    low = low.astype(np.int64)
    weights = np.zeros((len(pixels), size + 2), dtype=np.float64)
    rows = np.arange(len(pixels))
    weights[rows, low] = w0
    weights[rows, low + 1] += 1.0 - w0
    return weights


def paste_masks(masks, boxes, image_shape, threshold: float = 0.5) -> np.ndarray:
    """Paste small float masks into full-size images: ``unmold_mask`` for many masks at once.

    masks: [N, h, w] float in [0, 1]; boxes: [N, 4] int pixel boxes (exclusive y2/x2); image_shape: (H, W).
    Returns bool [H, W, N] (a transposed view of an [N, H, W] array), equal to ``unmold_mask`` of each
    mask: resampled bilinearly over its box in float64, rounded to float32 as scikit-image's resize of a
    float32 mask, clipped to the mask's own [min, max] (scikit-image's ``clip=True``: a mask whose values
    are all >= ``threshold`` fills its whole box, edges included) and thresholded at ``threshold``. Each
    instance costs two small matrix products over the part of its box inside the image.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    masks = np.asarray(masks, dtype=np.float32)
    count = len(masks)
    out = np.zeros((count, height, width), dtype=bool)
    if count == 0:
        return out.transpose(1, 2, 0)
    mh, mw = masks.shape[1:3]
    low_values, high_values = masks.min(axis=(1, 2)), masks.max(axis=(1, 2))
    padded = np.pad(masks.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    boxes = np.asarray(boxes).astype(np.int64)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        ys, ye = max(y1, 0), min(y2, height)
        xs, xe = max(x1, 0), min(x2, width)
        if ye <= ys or xe <= xs or high_values[i] < threshold:
            continue  # (clipped to at most its maximum, the mask stays below the threshold)
        if low_values[i] >= threshold:
            out[i, ys:ye, xs:xe] = True  # clipped to at least its minimum: the whole box
            continue
        # Here min < threshold <= max, where clipping cannot move a value across the threshold.
        rows = _interpolation_matrix(ys - y1, ye - y1, mh, y2 - y1)
        cols = _interpolation_matrix(xs - x1, xe - x1, mw, x2 - x1)
        out[i, ys:ye, xs:xe] = (rows @ padded[i] @ cols.T).astype(np.float32) >= threshold
    return out.transpose(1, 2, 0)


def _paste_weights(starts, stops, size, length, dtype):
    """``_interpolation_matrix`` for every pixel 0..length-1 of the image and every box at once:
    weights [B, N, length, size + 2] for boxes spanning [starts, stops) ([B, N] float32 integers), zero
    outside the box; positions computed in ``dtype``."""
    pixels = tf.range(length, dtype=dtype)[None, None, :]
    # expand_dims rather than [..., None]: TFLite's builtin StridedSlice has no new-axis form.
    starts = tf.expand_dims(tf.cast(starts, dtype), -1)
    stops = tf.expand_dims(tf.cast(stops, dtype), -1)
    box_len = tf.maximum(stops - starts, 1.0)
    coords = (pixels - starts + 0.5) * (size / box_len) - 0.5 + 1.0
    coords = tf.clip_by_value(coords, 0.0, size + 1.0)
    low = tf.minimum(tf.floor(coords), float(size))
    frac = coords - low
    low = tf.cast(low, tf.int32)
    weights = tf.one_hot(low, size + 2, dtype=tf.float32) * tf.expand_dims(
        tf.cast(1.0 - frac, tf.float32), -1
    ) + tf.one_hot(low + 1, size + 2, dtype=tf.float32) * tf.expand_dims(tf.cast(frac, tf.float32), -1)
    inside = tf.logical_and(pixels >= starts, pixels < stops)
    return weights * tf.expand_dims(tf.cast(inside, tf.float32), -1)


def paste_masks_graph(masks, boxes, height, width, threshold: float = 0.5, dtype=None):
    """TensorFlow twin of ``paste_masks`` for a batch: masks float [B, N, h, w] in [0, 1], boxes
    [B, N, 4] integer pixel boxes (exclusive y2/x2; empty or non-finite boxes give empty masks) -> uint8
    [B, N, height, width] (0/1). Inside its box each resampled mask is clipped to its own [min, max], as
    in ``paste_masks`` (full-box masks fill the box); the products run in float32, the sample positions
    in ``dtype`` (float64 by default, float32 for runtimes without float64)."""
    dtype = dtype or tf.float64
    masks = tf.cast(masks, tf.float32)
    mask_h, mask_w = int(masks.shape[2]), int(masks.shape[3])
    padded = tf.pad(masks, [[0, 0], [0, 0], [1, 1], [1, 1]])
    rows = _paste_weights(boxes[..., 0], boxes[..., 2], mask_h, height, dtype)  # [B, N, H, h + 2]
    cols = _paste_weights(boxes[..., 1], boxes[..., 3], mask_w, width, dtype)  # [B, N, W, w + 2]
    full = tf.matmul(tf.matmul(rows, padded), cols, transpose_b=True)
    # A pixel is inside its box when its row and its column carry weights (they sum to 1 there, 0 outside).
    # expand_dims rather than [..., None]: TFLite's builtin StridedSlice has no new-axis form.
    inside = tf.logical_and(
        tf.expand_dims(tf.reduce_sum(rows, axis=-1) > 0.5, -1),
        tf.expand_dims(tf.reduce_sum(cols, axis=-1) > 0.5, -2),
    )
    low = tf.reshape(tf.reduce_min(masks, axis=[2, 3]), tf.concat([tf.shape(masks)[:2], [1, 1]], 0))
    high = tf.reshape(tf.reduce_max(masks, axis=[2, 3]), tf.concat([tf.shape(masks)[:2], [1, 1]], 0))
    full = tf.where(inside, tf.clip_by_value(full, low, high), 0.0)
    return tf.cast(full >= threshold, tf.uint8)
