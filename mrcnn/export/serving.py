"""The serving graph: Mask R-CNN's pre-processing, network and post-processing as one TensorFlow function.

Every export format is traced from ``ServingModule``. Its functions take ``images``: uint8 [batch, height,
width, IMAGE_CHANNEL_COUNT] (any height and width; the images of one call share a size) and do in
TensorFlow what ``MaskRCNN.detect`` does in numpy: the resize of ``IMAGE_RESIZE_MODE`` ("square", "pad64"
or "none"), the MEAN_PIXEL subtraction, the padding, the image metas, the anchors of the molded shape,
and ``unmold_detections``: the TensorFlow forms in ``mrcnn.transform``, held equal to ``detect()``'s numpy
forms by ``tests/test_transform.py`` (bit for bit in float64; in float32, for runtimes without float64,
to float32 rounding). Outputs (N = DETECTION_MAX_INSTANCES, rows past ``num_detections`` are zero):

- ``boxes`` float32 [batch, N, 4]: (y1, x1, y2, x2) integer pixel boxes of the input image, y2/x2
  exclusive (the values of ``detect()``'s ``rois``);
- ``class_ids`` int32 [batch, N]; ``scores`` float32 [batch, N]; ``num_detections`` int32 [batch];
- ``masks``: with ``masks="full"`` uint8 [batch, N, height, width] (0 or 1, ``detect()``'s masks
  transposed to instance-first); with ``masks="boxes"`` float32 [batch, N, MASK_H, MASK_W], the mask
  head's probabilities of the detected class in box coordinates (resize one to its box and threshold
  at 0.5 to get ``detect()``'s mask).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mrcnn.anchors import anchors_graph
from mrcnn.backbone import compute_backbone_shapes
from mrcnn.transform import mold_images_graph, paste_masks_graph, unmold_boxes_graph

MASK_FORMS = ("full", "boxes", "both")
SUPPORTED_RESIZE_MODES = ("square", "pad64", "none")


############################################################
#  Pre- and post-processing: mrcnn.transform's TensorFlow forms, plus the anchors of a molded size
############################################################


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


def _compact(keep, tensors):
    """Move the rows where ``keep`` [B, N] is true to the front (order kept) and zero the rest."""
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=1, stable=True)
    kept = tf.gather(keep, order, batch_dims=1)
    out = []
    for tensor in tensors:
        moved = tf.gather(tensor, order, batch_dims=1)
        mask = kept
        for _ in range(moved.shape.rank - 2):  # static ranks: OpenVINO cannot reshape by a computed rank
            mask = tf.expand_dims(mask, -1)
        out.append(tf.where(mask, moved, tf.zeros_like(moved)))
    return out


############################################################
#  The exported module
############################################################


class ServingModule(tf.Module):
    """tf.Module with the serving functions of an inference ``MaskRCNN``.

    ``detect_full(images)`` and ``detect_boxes(images)`` take uint8 [B, H, W, C] and return the output
    dicts described in this module's docstring (full-size uint8 or box float32 masks). ``dtype`` is the
    pre- and post-processing arithmetic: float64 (``detect()``'s, bit for bit) or float32 (for TFLite,
    which has no float64 kernels). The Keras model is held by the functions only; ``track_variables``
    makes the module own the tf.Variables they read, so a SavedModel stores each weight once.

    The functions are traced when first called or asked for a concrete function: inside
    ``mrcnn.kernels.disabled()`` for a SavedModel, inside ``mrcnn.kernels.portable()`` for the other formats.
    """

    def __init__(self, model, dtype=tf.float64):
        super().__init__(name="mask_rcnn_serving")
        keras_model, config = model.keras_model, model.config
        fixed_anchors = None
        if config.IMAGE_RESIZE_MODE == "square":
            fixed_anchors = np.asarray(model.get_anchors(config.IMAGE_SHAPE), dtype=np.float32)
        channels = int(config.IMAGE_CHANNEL_COUNT)
        spec = [tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")]
        self.detect_full = tf.function(
            lambda images: _serve(images, keras_model, config, fixed_anchors, True, dtype),
            input_signature=spec,
            autograph=False,
        )
        self.detect_boxes = tf.function(
            lambda images: _serve(images, keras_model, config, fixed_anchors, False, dtype),
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


def _serve(images, keras_model, config, fixed_anchors, full_masks, dtype):
    """The serving computation: uint8 images [B, H, W, C] -> the output dict (see the module docstring)."""
    molded, metas, window = mold_images_graph(images, config, dtype)
    batch = tf.shape(molded)[0]
    molded_shape = tf.shape(molded)[1:3]
    if fixed_anchors is not None:
        anchors = tf.constant(fixed_anchors)
    else:
        anchors = anchors_graph(molded_shape[0], molded_shape[1], config, dtype)
    anchors = tf.broadcast_to(anchors[None], tf.concat([[batch], tf.shape(anchors)], 0))
    outputs = keras_model([molded, metas, anchors], training=False)
    detections = tf.cast(outputs[0], tf.float32)
    mrcnn_mask = tf.cast(outputs[3], tf.float32)

    image_shape = tf.shape(images)[1:3]
    class_ids = tf.cast(detections[..., 4], tf.int32)
    scores = detections[..., 5]
    boxes = unmold_boxes_graph(detections[..., :4], window, molded_shape, image_shape, dtype)
    # Matterport's unmold: rows up to the first padding row (class 0), then boxes with area > 0.
    valid = tf.equal(tf.math.cumsum(tf.cast(class_ids <= 0, tf.int32), axis=1), 0)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    keep = tf.logical_and(valid, area > 0)
    # Per-box masks of each detection's class: [B, N, h, w], by one flat gather over (image, row, class)
    # (OpenVINO cannot convert a gather with batch_dims=2).
    mask_shape = tf.shape(mrcnn_mask)
    rows, num_classes = mask_shape[0] * mask_shape[1], mask_shape[4]
    by_class = tf.reshape(tf.transpose(mrcnn_mask, [0, 1, 4, 2, 3]), [-1, *mrcnn_mask.shape[2:4]])
    flat_index = tf.range(rows) * num_classes + tf.reshape(tf.maximum(class_ids, 0), [-1])
    box_masks = tf.reshape(
        tf.gather(by_class, flat_index), [mask_shape[0], mask_shape[1], *mrcnn_mask.shape[2:4]]
    )
    boxes, class_ids, scores, box_masks = _compact(keep, [boxes, class_ids, scores, box_masks])
    result = {
        "boxes": boxes,
        "class_ids": class_ids,
        "scores": scores,
        "num_detections": tf.reduce_sum(tf.cast(keep, tf.int32), axis=1),
    }
    if full_masks:
        result["masks"] = paste_masks_graph(box_masks, boxes, image_shape[0], image_shape[1], dtype=dtype)
    else:
        result["masks"] = box_masks
    return result


def check_exportable(model, masks: str, mask_forms=MASK_FORMS) -> None:
    """Raise ValueError naming the fix when ``model`` (a MaskRCNN) cannot be served with ``masks``."""
    if getattr(model, "mode", None) != "inference" or not hasattr(model, "keras_model"):
        raise ValueError(
            "Only a MaskRCNN built in inference mode can be exported: "
            "MaskRCNN(mode='inference', config=..., model_dir=...) and load_weights(...) "
            f"(got mode={getattr(model, 'mode', None)!r})."
        )
    if masks not in mask_forms:
        raise ValueError(
            f"masks must be one of {mask_forms} for this format (full-size masks, 28x28 box masks"
            f"{', or both as two signatures' if 'both' in mask_forms else ''}); got {masks!r}."
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
