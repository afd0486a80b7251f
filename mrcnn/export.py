"""SavedModel export with Mask R-CNN's pre- and post-processing inside the serving signature.

``export_saved_model(model, export_dir)`` writes a SavedModel that TF Serving (or
``tf.saved_model.load`` in a process without mrcnn) runs on raw images. Its ``serving_default``
signature takes ``images``: uint8 [batch, height, width, IMAGE_CHANNEL_COUNT] (any height and width;
the images of one call share a size) and does in TensorFlow what ``MaskRCNN.detect`` does in numpy:
the resize of ``IMAGE_RESIZE_MODE`` ("square", "pad64" or "none"), the MEAN_PIXEL subtraction, the
padding, the image metas, the anchors of the molded shape, and ``unmold_detections``: the TensorFlow
forms in ``mrcnn.transform``, held equal to ``detect()``'s numpy forms by ``tests/test_transform.py``.
Outputs (N = DETECTION_MAX_INSTANCES, rows past
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

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from mrcnn import kernels
from mrcnn.anchors import anchors_graph
from mrcnn.backbone import compute_backbone_shapes
from mrcnn.transform import mold_images_graph, paste_masks_graph, unmold_boxes_graph

if TYPE_CHECKING:
    from mrcnn.model import MaskRCNN

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


def export_saved_model(
    model: MaskRCNN,
    export_dir: str | os.PathLike,
    masks: str = "full",
    overwrite: bool = False,
    verbose: int = 1,
) -> str:
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
    with kernels.disabled():
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
