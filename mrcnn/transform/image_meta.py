"""Image metas: the one table of the per-image attributes the graph, the losses and the export read.

An image meta is a 1-D float vector that travels with each molded image through the graph. Its layout is
written once, in ``IMAGE_META_FIELDS``; every reader (numpy ``parse_image_meta``, TensorFlow
``parse_image_meta_graph``, ``meta_field``) and every writer (``compose_image_meta`` and its TensorFlow
twin ``compose_image_meta_graph``) takes the offsets from it. The layout is Matterport's:

    [image_id, original H, W, C, molded H, W, C, window y1, x1, y2, x2, scale, active_class_ids...]

``window`` is the (y1, x1, y2, x2) pixel box of the resized image inside the molded (padded) image,
y2/x2 exclusive; ``active_class_ids[i]`` is 1 when class i belongs to the image's source dataset.
"""

from __future__ import annotations

import numpy as np

from mrcnn.transform._lazy import tf

# (name, width) in order; the last field takes the rest of the vector (one value per class).
IMAGE_META_FIELDS = (
    ("image_id", 1),
    ("original_image_shape", 3),
    ("image_shape", 3),
    ("window", 4),
    ("scale", 1),
    ("active_class_ids", None),
)


def _offsets() -> dict[str, slice | int]:
    offsets, start = {}, 0
    for name, width in IMAGE_META_FIELDS:
        if width is None:
            offsets[name] = slice(start, None)
        elif width == 1:
            offsets[name] = start
        else:
            offsets[name] = slice(start, start + width)
        start += width or 0
    return offsets


# Column index (scalar fields) or column slice of each field.
META_COLUMNS = _offsets()
# Length of the fixed part, before active_class_ids.
FIXED_META_SIZE = sum(width or 0 for _, width in IMAGE_META_FIELDS)


def image_meta_size(num_classes: int) -> int:
    """Length of one image meta: the fixed fields plus one active-class flag per class."""
    return FIXED_META_SIZE + int(num_classes)


def meta_field(metas, name: str):
    """Column(s) ``name`` of metas [B, META] (numpy array or tensor), without casting.

    Scalar fields give [B]; the others [B, width] (``active_class_ids``: [B, NUM_CLASSES]).
    """
    return metas[:, META_COLUMNS[name]]


def compose_image_meta(
    image_id, original_image_shape, image_shape, window, scale, active_class_ids
) -> np.ndarray:
    """Pack one image's attributes into a float64 meta vector [FIXED_META_SIZE + NUM_CLASSES].

    original_image_shape / image_shape: (H, W, C) before and after molding; window: (y1, x1, y2, x2)
    pixels of the molded image; scale: the resize factor; active_class_ids: [NUM_CLASSES] 0/1 flags.
    """
    values = {
        "image_id": [image_id],
        "original_image_shape": list(original_image_shape),
        "image_shape": list(image_shape),
        "window": list(window),
        "scale": [scale],
        "active_class_ids": list(active_class_ids),
    }
    for name, width in IMAGE_META_FIELDS:
        if width is not None and len(values[name]) != width:
            raise ValueError(
                "compose_image_meta needs 3-element image shapes (H, W, C) and a 4-element window (y1, x1, "
                f"y2, x2); got {name} = {values[name]}"
            )
    return np.array([v for name, _ in IMAGE_META_FIELDS for v in values[name]], dtype=np.float64)


def compose_image_meta_graph(image_id, original_image_shape, image_shape, window, scale, active_class_ids):
    """TensorFlow twin of ``compose_image_meta`` for one image: float32 [FIXED_META_SIZE + NUM_CLASSES].

    Every argument is a tensor (or array) with the field's width as its only dimension (scalars for
    image_id and scale); they are cast to float32 and concatenated in ``IMAGE_META_FIELDS`` order.
    """
    values = {
        "image_id": image_id,
        "original_image_shape": original_image_shape,
        "image_shape": image_shape,
        "window": window,
        "scale": scale,
        "active_class_ids": active_class_ids,
    }
    parts = [tf.reshape(tf.cast(values[name], tf.float32), [-1]) for name, _ in IMAGE_META_FIELDS]
    return tf.concat(parts, axis=0)


# numpy dtype of each field as returned by parse_image_meta.
_PARSED_DTYPES = {"scale": np.float32}


def parse_image_meta(meta) -> dict[str, np.ndarray]:
    """Split metas [batch, FIXED_META_SIZE + NUM_CLASSES] into a dict of numpy arrays.

    Keys: image_id int32 [B], original_image_shape int32 [B, 3], image_shape int32 [B, 3],
    window int32 [B, 4], scale float32 [B], active_class_ids int32 [B, NUM_CLASSES].
    """
    meta = np.asarray(meta)
    if meta.ndim != 2 or meta.shape[1] < FIXED_META_SIZE:
        raise ValueError(
            f"parse_image_meta expects metas of shape [batch, {FIXED_META_SIZE} + NUM_CLASSES], got "
            f"{meta.shape}; for a single meta use meta[np.newaxis]"
        )
    return {
        name: meta_field(meta, name).astype(_PARSED_DTYPES.get(name, np.int32))
        for name, _ in IMAGE_META_FIELDS
    }


def parse_image_meta_graph(meta) -> dict:
    """TensorFlow twin of ``parse_image_meta``: metas [B, META] -> dict of tensors (no casts)."""
    return {name: meta_field(meta, name) for name, _ in IMAGE_META_FIELDS}
