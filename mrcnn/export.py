"""SavedModel export with Mask R-CNN's pre- and post-processing inside the serving signature.

``export_saved_model(model, export_dir)`` writes a SavedModel that TF Serving (or
``tf.saved_model.load`` in a process without mrcnn) runs on raw images. Its ``serving_default``
signature takes ``images``: uint8 [batch, height, width, IMAGE_CHANNEL_COUNT] (any height and width;
the images of one call share a size) and does in TensorFlow what ``MaskRCNN.detect`` does in numpy:
the resize of ``IMAGE_RESIZE_MODE`` ("square", "pad64" or "none"; same bilinear arithmetic as
``utils.resize_image``), the MEAN_PIXEL subtraction, the padding, the image metas, the anchors of the
molded shape, and ``unmold_detections``. Outputs (N = DETECTION_MAX_INSTANCES, rows past
``num_detections`` are zero):

- ``boxes`` float32 [batch, N, 4]: (y1, x1, y2, x2) integer pixel boxes of the input image, y2/x2
  exclusive (the values of ``detect()``'s ``rois``);
- ``class_ids`` int32 [batch, N]; ``scores`` float32 [batch, N]; ``num_detections`` int32 [batch];
- ``masks``: with ``masks="full"`` uint8 [batch, N, height, width] (0 or 1, ``detect()``'s masks
  transposed to instance-first); with ``masks="boxes"`` float32 [batch, N, MASK_H, MASK_W], the mask
  head's probabilities of the detected class in box coordinates (resize one to its box and threshold
  at 0.5 to get ``detect()``'s mask). ``masks="both"`` writes the full form as ``serving_default`` and
  the box form as a second signature ``serving_boxes_masks``.
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from mrcnn import cpu_kernels
from mrcnn.anchors import anchors_graph
from mrcnn.backbone import compute_backbone_shapes

MASK_FORMS = ("full", "boxes", "both")
SUPPORTED_RESIZE_MODES = ("square", "pad64", "none")


############################################################
#  Pre-processing (mold_inputs in TensorFlow)
############################################################


def _resize_scale(height, width, config):
    """``utils.resize_image``'s scale for an image of (height, width): float64 scalar tensor."""
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    mode = config.IMAGE_RESIZE_MODE
    scale = tf.constant(1.0, tf.float64)
    if mode == "none":
        return scale
    if config.IMAGE_MIN_DIM:
        scale = tf.maximum(scale, float(config.IMAGE_MIN_DIM) / tf.minimum(height, width))
    if config.IMAGE_MIN_SCALE:
        scale = tf.maximum(scale, float(config.IMAGE_MIN_SCALE))
    if mode == "square" and config.IMAGE_MAX_DIM:
        image_max = tf.maximum(height, width)
        scale = tf.where(
            tf.round(image_max * scale) > float(config.IMAGE_MAX_DIM),
            float(config.IMAGE_MAX_DIM) / image_max,
            scale,
        )
    return scale


def _linear_taps(in_size, out_size):
    """Sample positions and weights of a pixel-centre-aligned linear resample of one axis.

    Output sample i reads input coordinate c = (i + 0.5) * in / out - 0.5 (float64). Returns (low, w0,
    w1): int32 indices of the two taps into the axis extended by one zero sample on each side, and their
    weights 1 - frac(c) and 1 - (1 - frac(c)) (scipy's order-1 spline weights, bit for bit).
    """
    coords = (tf.range(out_size, dtype=tf.float64) + 0.5) * (
        tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    ) - 0.5
    low = tf.floor(coords)
    w0 = 1.0 - (coords - low)
    return tf.cast(low, tf.int32) + 1, w0, 1.0 - w0


def _resize_like_skimage(images, out_height, out_width):
    """Bilinear resize of uint8 images [B, H, W, C] like ``utils.resize(..., preserve_range=True)``
    followed by the rounding back to uint8 of ``utils.resize_image``.

    The arithmetic is that of ``scipy.ndimage.zoom(order=1, grid_mode=True, mode="constant")`` (the
    kernel of ``skimage.transform.resize``): float64, zeros outside the image, the four taps summed in
    scipy's order; then each image is clipped to its own value range and rounded half to even. Returns
    float32 [B, out_height, out_width, C] holding integers 0..255.
    """
    values = tf.cast(images, tf.float64)
    shape = tf.shape(images)
    y_low, wy0, wy1 = _linear_taps(shape[1], out_height)
    x_low, wx0, wx1 = _linear_taps(shape[2], out_width)
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
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.float32)


def mold_images_graph(images, config):
    """``MaskRCNN.mold_inputs`` for a batch of same-size images, in TensorFlow.

    images: uint8 [B, H, W, C]. Returns (molded float32 [B, h, w, C] with MEAN_PIXEL subtracted and
    zero-padded before the subtraction, metas float32 [B, IMAGE_META_SIZE] (``compose_image_meta``
    layout, image id 0, no active classes), window int32 [4] pixel window (y1, x1, y2, x2) of the
    resized image in the molded one, y2/x2 exclusive).
    """
    mode = config.IMAGE_RESIZE_MODE
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    scale = _resize_scale(height, width, config)
    if mode == "none":
        pixels = tf.cast(images, tf.float32)
        new_h, new_w = height, width
    else:
        new_h = tf.cast(tf.round(tf.cast(height, tf.float64) * scale), tf.int32)
        new_w = tf.cast(tf.round(tf.cast(width, tf.float64) * scale), tf.int32)
        pixels = tf.cond(
            tf.equal(scale, 1.0),
            lambda: tf.cast(images, tf.float32),
            lambda: _resize_like_skimage(images, new_h, new_w),
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
    mean = tf.constant(np.asarray(config.MEAN_PIXEL, dtype=np.float32).reshape(-1))
    molded = pixels - mean
    window = tf.stack([top, left, top + new_h, left + new_w])
    meta = tf.concat(
        [
            tf.zeros([1], tf.float32),
            tf.cast(tf.stack([height, width, channels, full_h, full_w, channels]), tf.float32),
            tf.cast(window, tf.float32),
            tf.cast(scale, tf.float32)[None],
            tf.zeros([int(config.NUM_CLASSES)], tf.float32),
        ],
        axis=0,
    )
    metas = tf.tile(meta[None], [batch, 1])
    return molded, metas, window


def _check_backbone_shapes(config):
    """The graph computes pyramid sizes as ceil(side / stride); make sure the config agrees."""
    for side_h, side_w in ((64, 64), (128, 192), (320, 256), (1024, 576)):
        expected = np.array([[-(-side_h // s), -(-side_w // s)] for s in config.BACKBONE_STRIDES])
        got = np.asarray(compute_backbone_shapes(config, (side_h, side_w, 3)))
        if got.shape != expected.shape or not np.array_equal(got, expected):
            raise ValueError(
                f"IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r} gives molded images of varying size, so the "
                "exported graph computes anchors for each size as ceil(side / stride) per BACKBONE_STRIDES; "
                f"this config's COMPUTE_BACKBONE_SHAPE gives {got.tolist()} for {side_h}x{side_w} instead "
                f"of {expected.tolist()}. Use IMAGE_RESIZE_MODE='square' (fixed anchors) or a backbone "
                "whose feature maps are ceil(side / stride)."
            )


############################################################
#  Post-processing (unmold_detections in TensorFlow)
############################################################


def unmold_boxes_graph(boxes, window, molded_shape, image_shape):
    """Normalized boxes of the molded image [B, N, 4] -> float32 integer-valued pixel boxes of the
    input image, with the float32/float64 steps of ``MaskRCNN.unmold_detections`` (so the rounding
    agrees with ``detect()``). window: int32 [4] pixels of the molded image; shapes: (height, width)."""
    window_norm = tf.cast(
        (tf.cast(window, tf.float64) - tf.constant([0.0, 0.0, 1.0, 1.0], tf.float64))
        / tf.cast(tf.stack([molded_shape[0] - 1, molded_shape[1] - 1] * 2), tf.float64),
        tf.float32,
    )
    wy1, wx1, wy2, wx2 = tf.unstack(window_norm)
    shift = tf.stack([wy1, wx1, wy1, wx1])
    scale = tf.stack([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = (tf.cast(boxes, tf.float32) - shift) / scale
    pixel_scale = tf.cast(tf.stack([image_shape[0] - 1, image_shape[1] - 1] * 2), tf.float64)
    pixels = tf.cast(boxes, tf.float64) * pixel_scale + tf.constant([0.0, 0.0, 1.0, 1.0], tf.float64)
    return tf.cast(tf.round(pixels), tf.float32)


def _paste_weights(starts, stops, size, length):
    """Bilinear weights [B, N, length, size + 2] taking a zero-padded mask axis of ``size`` samples to
    pixels 0..length-1 of the image, for boxes spanning [starts, stops) ([B, N] float32 integers);
    zero outside the box (``model._interpolation_matrix`` for every pixel of the image at once)."""
    pixels = tf.range(length, dtype=tf.float64)[None, None, :]
    starts = tf.cast(starts, tf.float64)[..., None]
    stops = tf.cast(stops, tf.float64)[..., None]
    box_len = tf.maximum(stops - starts, 1.0)
    coords = (pixels - starts + 0.5) * (size / box_len) - 0.5 + 1.0
    coords = tf.clip_by_value(coords, 0.0, size + 1.0)
    low = tf.minimum(tf.floor(coords), float(size))
    frac = coords - low
    low = tf.cast(low, tf.int32)
    weights = (
        tf.one_hot(low, size + 2, dtype=tf.float32) * tf.cast(1.0 - frac, tf.float32)[..., None]
        + tf.one_hot(low + 1, size + 2, dtype=tf.float32) * tf.cast(frac, tf.float32)[..., None]
    )
    inside = tf.logical_and(pixels >= starts, pixels < stops)
    return weights * tf.cast(inside, tf.float32)[..., None]


def paste_masks_graph(masks, boxes, height, width, threshold=0.5):
    """``model.paste_masks`` for a batch: masks float [B, N, h, w] in [0, 1], boxes [B, N, 4] integer
    pixel boxes (exclusive y2/x2; empty boxes give empty masks) -> uint8 [B, N, height, width] (0/1)."""
    masks = tf.cast(masks, tf.float32)
    mask_h, mask_w = int(masks.shape[2]), int(masks.shape[3])
    padded = tf.pad(masks, [[0, 0], [0, 0], [1, 1], [1, 1]])
    rows = _paste_weights(boxes[..., 0], boxes[..., 2], mask_h, height)  # [B, N, H, h + 2]
    cols = _paste_weights(boxes[..., 1], boxes[..., 3], mask_w, width)  # [B, N, W, w + 2]
    full = tf.matmul(tf.matmul(rows, padded), cols, transpose_b=True)
    return tf.cast(full >= threshold, tf.uint8)


def _compact(keep, tensors):
    """Move the rows where ``keep`` [B, N] is true to the front (order kept) and zero the rest."""
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=1, stable=True)
    kept = tf.gather(keep, order, batch_dims=1)
    out = []
    for tensor in tensors:
        moved = tf.gather(tensor, order, batch_dims=1)
        mask = tf.reshape(kept, tf.concat([tf.shape(kept), tf.ones([tf.rank(moved) - 2], tf.int32)], 0))
        out.append(tf.where(mask, moved, tf.zeros_like(moved)))
    return out


############################################################
#  The exported module
############################################################


class ServingModule(tf.Module):
    """tf.Module with the serving functions of an inference ``MaskRCNN``.

    ``detect_full(images)`` and ``detect_boxes(images)`` take uint8 [B, H, W, C] and return the output
    dicts described in this module's docstring (full-size uint8 or box float32 masks). The Keras model
    is held by the functions only; ``track_variables`` makes the module own the tf.Variables they read,
    so the SavedModel stores each weight once.
    """

    def __init__(self, model):
        super().__init__(name="mask_rcnn_serving")
        keras_model, config = model.keras_model, model.config
        fixed_anchors = None
        if config.IMAGE_RESIZE_MODE == "square":
            fixed_anchors = np.asarray(model.get_anchors(config.IMAGE_SHAPE), dtype=np.float32)
        channels = int(config.IMAGE_CHANNEL_COUNT)
        spec = [tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")]
        self.detect_full = tf.function(
            lambda images: _serve(images, keras_model, config, fixed_anchors, full_masks=True),
            input_signature=spec,
            autograph=False,
        )
        self.detect_boxes = tf.function(
            lambda images: _serve(images, keras_model, config, fixed_anchors, full_masks=False),
            input_signature=spec,
            autograph=False,
        )

    def track_variables(self, functions):
        """Own the tf.Variables read by the traced ``functions`` (concrete functions). Tracking these
        (not the Keras wrappers) is what lets TF1-style loaders (TF Serving, ``saved_model_cli run``)
        restore them; without it they report the variables as uninitialized."""
        used, seen = [], set()
        for function in functions:
            for variable in function.variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    used.append(variable)
        self.serving_variables = used


def _serve(images, keras_model, config, fixed_anchors, full_masks):
    """The serving computation: uint8 images [B, H, W, C] -> the output dict (see the module docstring)."""
    molded, metas, window = mold_images_graph(images, config)
    batch = tf.shape(molded)[0]
    molded_shape = tf.shape(molded)[1:3]
    if fixed_anchors is not None:
        anchors = tf.constant(fixed_anchors)
    else:
        anchors = anchors_graph(molded_shape[0], molded_shape[1], config)
    anchors = tf.broadcast_to(anchors[None], tf.concat([[batch], tf.shape(anchors)], 0))
    outputs = keras_model([molded, metas, anchors], training=False)
    detections = tf.cast(outputs[0], tf.float32)
    mrcnn_mask = tf.cast(outputs[3], tf.float32)

    image_shape = tf.shape(images)[1:3]
    class_ids = tf.cast(detections[..., 4], tf.int32)
    scores = detections[..., 5]
    boxes = unmold_boxes_graph(detections[..., :4], window, molded_shape, image_shape)
    # Matterport's unmold: rows up to the first padding row (class 0), then boxes with area > 0.
    valid = tf.cast(tf.math.cumprod(tf.cast(class_ids > 0, tf.int32), axis=1), tf.bool)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = tf.logical_and(valid, area > 0)
    # Per-box masks of each detection's class: [B, N, h, w].
    box_masks = tf.gather(
        tf.transpose(mrcnn_mask, [0, 1, 4, 2, 3]), tf.maximum(class_ids, 0), axis=2, batch_dims=2
    )
    boxes, class_ids, scores, box_masks = _compact(keep, [boxes, class_ids, scores, box_masks])
    result = {
        "boxes": boxes,
        "class_ids": class_ids,
        "scores": scores,
        "num_detections": tf.reduce_sum(tf.cast(keep, tf.int32), axis=1),
    }
    if full_masks:
        result["masks"] = paste_masks_graph(box_masks, boxes, image_shape[0], image_shape[1])
    else:
        result["masks"] = box_masks
    return result


def _check_exportable(model, masks):
    if getattr(model, "mode", None) != "inference" or not hasattr(model, "keras_model"):
        raise ValueError(
            "export_saved_model needs a MaskRCNN built in inference mode: "
            "MaskRCNN(mode='inference', config=..., model_dir=...) and load_weights(...) "
            f"(got mode={getattr(model, 'mode', None)!r})."
        )
    if masks not in MASK_FORMS:
        raise ValueError(
            f"masks must be one of {MASK_FORMS} (full-size masks, 28x28 box masks, or "
            f"both as two signatures); got {masks!r}."
        )
    mode = model.config.IMAGE_RESIZE_MODE
    if mode not in SUPPORTED_RESIZE_MODES:
        raise ValueError(
            f"IMAGE_RESIZE_MODE={mode!r} cannot be exported: the serving graph supports "
            f"{SUPPORTED_RESIZE_MODES} ('crop' is a random training crop). Set the inference "
            "config's IMAGE_RESIZE_MODE to 'square' or 'pad64'."
        )
    if mode != "square":
        _check_backbone_shapes(model.config)


def export_saved_model(model, export_dir, masks="full", overwrite=False, verbose=1):
    """Write ``model`` (an inference-mode ``MaskRCNN``) as a SavedModel for TF Serving.

    export_dir: the SavedModel directory (for TF Serving, a numbered version folder such as
    ``models/mask_rcnn/1``). It is written to a temporary folder beside it and renamed into place.
    masks: "full" (``serving_default`` returns uint8 [B, N, H, W] masks), "boxes" (float32
    [B, N, MASK_H, MASK_W] box masks) or "both" (full in ``serving_default``, box masks in
    ``serving_boxes_masks``). overwrite: replace an existing ``export_dir`` (else FileExistsError).
    Returns the absolute path of ``export_dir``. See the module docstring for the signature.
    """
    _check_exportable(model, masks)
    export_dir = os.path.abspath(os.fspath(export_dir))
    if os.path.lexists(export_dir) and not overwrite:
        raise FileExistsError(
            f"{export_dir} already exists; choose a new directory (for TF Serving a new "
            "version number) or pass overwrite=True to replace it."
        )
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    # TensorFlow's plain convolutions and NMS in the exported graph: mrcnn's Winograd transforms and blocked
    # NMS are XLA-compiled functions, which a TF Serving build need not support.
    with cpu_kernels.disabled():
        module = ServingModule(model)
        if masks == "boxes":
            signatures = {"serving_default": module.detect_boxes.get_concrete_function()}
        else:
            signatures = {"serving_default": module.detect_full.get_concrete_function()}
            if masks == "both":
                signatures["serving_boxes_masks"] = module.detect_boxes.get_concrete_function()
        module.track_variables(signatures.values())
        staging = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp-", dir=parent)
        try:
            tf.saved_model.save(module, staging, signatures=signatures)
            if os.path.lexists(export_dir):
                old = staging + "-old"
                os.rename(export_dir, old)
                os.rename(staging, export_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(staging, export_dir)
        finally:
            if os.path.exists(staging):
                shutil.rmtree(staging, ignore_errors=True)
    if verbose:
        print(
            f"Saved the serving model to {export_dir}: signatures {', '.join(signatures)}; input 'images' "
            f"uint8 [batch, height, width, {int(model.config.IMAGE_CHANNEL_COUNT)}]; masks={masks!r}."
        )
    return export_dir
