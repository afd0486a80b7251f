"""The one place that decides which kernel computes each fast-pathed part of the model.

Each function here takes what the model's layer computes (a convolution, a batch norm, an NMS) and the
layer's own default implementation, and returns the result of the kernel chosen for this trace:

- 3x3 float32 convolutions (backbone, FPN outputs, mask head, RPN forward): ``winograd`` (F(2x2, 3x3))
  or, where no gradient is recorded, ``winograd4`` (F(4x4, 3x3)), when the switch is on, no GPU is
  visible, ``winograd.fits`` the layer and that form timed fastest for the layer's shape on this CPU
  (``autotune``; TensorFlow's convolution otherwise);
- the RPN shared convolution's backward pass (``sparse_output_gradient``): ``sparse_conv``, unless
  MRCNN_CPU_KERNELS=0, when ``sparse_conv.fits``;
- training-mode BatchNorm: ``fused_bn``, unless MRCNN_CPU_KERNELS=0, when ``fused_bn.fits``: TensorFlow's
  fused kernel or (float32, no GPU visible) the XLA form, whichever timed fastest against Keras' ops for
  the layer's shape on this CPU (Keras' ops when neither wins);
- the box head's whole-RoI convolutions: ``roi_matmul``, unless MRCNN_CPU_KERNELS=0, when it fits;
- the proposal NMS: ``nms.blocked_nms``, when the switch is on and no GPU is visible;
- SGD with momentum and clipnorm: ``optimizer.ClippedMomentumSGD``, unless MRCNN_CPU_KERNELS=0;
- RoIAlign's bilinear crops, the detection layer's per-class NMS and the proposal layer's top-k:
  ``portable_ops``' forms while a graph is traced inside ``switch.portable()`` (for ONNX, TFLite and
  OpenVINO), else TensorFlow's ops.

``switch.disabled()`` turns off the choices made while a graph is traced for other runtimes (Winograd
and the blocked NMS, both XLA programs); the others are plain TensorFlow ops that any runtime runs.
Everywhere else the layer's default (Keras' or TensorFlow's kernel) runs. Every kernel computes what the
default computes (exactly, or to float32 rounding for Winograd), so the choice changes speed only.
"""

from collections.abc import Callable

import keras
import tensorflow as tf
from tensorflow.python.eager import record  # whether a gradient tape records (no public equivalent)

from mrcnn.boxes import nms_corners_and_area_graph, nms_iou_graph
from mrcnn.kernels import (
    autotune,
    batch_norm_timing,
    conv_timing,
    fused_bn,
    nms,
    portable_ops,
    roi_matmul,
    sparse_conv,
    switch,
    winograd,
    winograd4,
)
from mrcnn.kernels.optimizer import ClippedMomentumSGD


def conv3x3_method(layer, input_shape=None) -> str:
    """How ``layer`` (a Keras Conv2D) convolves in the graph being traced: "default" (TensorFlow),
    "winograd" (F(2x2, 3x3)) or "winograd4" (F(4x4, 3x3), forward only). A Winograd form only where it
    fits and, for inputs of ``input_shape`` [N, H, W, C], measured fastest on this CPU (forward, or forward
    and backward when a gradient tape is recording and the layer trains)."""
    if not (switch.enabled("winograd") and winograd.fits(layer)):
        return "default"
    if input_shape is None:
        return "winograd"
    with_gradient = record.could_possibly_record() and layer.trainable
    problem = (
        f"conv3x3 {conv_timing.timing_shape(input_shape, with_gradient)}->{layer.filters} "
        f"{'forward+backward' if with_gradient else 'forward'}"
    )
    return autotune.choose(
        problem, lambda: conv_timing.conv3x3_runners(input_shape, layer.filters, with_gradient)
    )


def uses_winograd(layer, input_shape=None) -> bool:
    """Whether ``layer`` (a Keras Conv2D) convolves by a Winograd form (``conv3x3_method``)."""
    return conv3x3_method(layer, input_shape) != "default"


def uses_sparse_gradient(layer) -> bool:
    """Whether ``layer`` (a Conv2D declared with ``sparse_output_gradient``) gets the sparse backward pass."""
    return (
        getattr(layer, "sparse_output_gradient", False)
        and switch.enabled_by_environment("sparse_conv")
        and sparse_conv.fits(layer)
    )


def convolution(layer, inputs, kernel, default: Callable):
    """``layer.convolution_op(inputs, kernel)`` by the kernel ``conv3x3_method`` picks."""
    method = conv3x3_method(layer, inputs.shape)
    if method == "winograd":
        return winograd.winograd_conv3x3(inputs, kernel)
    if method == "winograd4":
        return winograd4.winograd_conv3x3_f4(inputs, kernel)
    return default(inputs, kernel)


def conv2d(layer, inputs, default: Callable):
    """``layer(inputs)`` for a Conv2D: with the sparse backward pass where it applies (its forward pass
    by ``layer.convolution_op``), else ``default``."""
    if uses_sparse_gradient(layer):
        return sparse_conv.conv2d_sparse_gradient(layer, inputs, layer.convolution_op)
    return default(inputs)


def per_roi_conv2d(layer, inputs, default: Callable):
    """A per-RoI convolution of [B, R, h, w, C] inputs: one matmul when its window covers each RoI."""
    if switch.enabled_by_environment("roi_matmul") and roi_matmul.fits(layer, inputs.shape):
        return roi_matmul.roi_conv_as_matmul(layer, inputs)
    return default(inputs)


def batch_norm_method(layer, inputs, training) -> str:
    """How ``layer`` (a Keras BatchNormalization) normalizes ``inputs`` in the graph being traced: "default"
    (Keras' ops), "fused" (TensorFlow's fused kernel) or "xla" (``fused_bn.xla_batch_norm_training``).
    A fast form only for batch statistics of a trainable layer, where it fits; among them the one measured
    fastest on this CPU (the fused kernel, unmeasured, where the XLA form does not apply)."""
    if not (
        training
        and layer.trainable
        and switch.enabled_by_environment("fused_bn")
        and fused_bn.fits(layer, inputs)
    ):
        return "default"
    if not (switch.enabled("fused_bn") and fused_bn.xla_fits(layer, inputs)):
        return "fused"
    shape = batch_norm_timing.timing_shape(inputs.shape)
    return autotune.choose(
        f"batch_norm {shape} forward+backward",
        lambda: batch_norm_timing.batch_norm_runners(inputs.shape, layer.epsilon),
    )


def batch_norm(layer, inputs, training, default: Callable):
    """``layer(inputs, training)`` for a BatchNormalization by the form ``batch_norm_method`` picks (else
    ``default(inputs, training=training)``)."""
    method = batch_norm_method(layer, inputs, training)
    if method == "fused":
        return fused_bn.fused_batch_norm_training(layer, inputs)
    if method == "xla":
        return fused_bn.xla_batch_norm_training(layer, inputs)
    return default(inputs, training=training)


def nms_indices(boxes, max_output_size: int, iou_threshold: float):
    """Greedy NMS of ``boxes`` [N, 4] float32 given in descending score order.

    Returns int32 [max_output_size]: the kept boxes' indices in selection order, then -1 in the slots
    left when fewer are kept. The blocked XLA kernel on CPU, else TensorFlow's ``NonMaxSuppressionV4``
    (an op ONNX, TFLite and OpenVINO have); both select the same boxes.
    """
    if switch.enabled("nms"):
        return nms.blocked_nms(boxes, int(max_output_size), float(iou_threshold))
    count = tf.shape(boxes)[0]
    order = -tf.cast(tf.range(count), tf.float32)  # the given order, ties impossible
    keep, kept = tf.raw_ops.NonMaxSuppressionV4(
        boxes=boxes,
        scores=order,
        max_output_size=max_output_size,
        iou_threshold=iou_threshold,
        score_threshold=float("-inf"),
        pad_to_max_output_size=True,
    )
    return tf.where(tf.range(max_output_size) < kept, keep, -1)


def top_k_indices(scores, k):
    """Indices int32 [B, k] of the k highest of ``scores`` [B, A] (non-negative), by descending score,
    ties by lower index: ``tf.math.top_k``, or a threshold-then-top-k form while tracing inside
    ``switch.portable()`` (OpenVINO's TopK is slow for large inputs)."""
    if switch.is_portable():
        return portable_ops.top_k_indices(scores, k)
    return tf.math.top_k(scores, k=k, sorted=True)[1]


def crop_and_resize(image, boxes, box_indices, crop_size):
    """Bilinear crops [K, h, w, C] of ``image`` [B, H, W, C] (float32) at normalized ``boxes`` [K, 4]:
    ``tf.image.crop_and_resize``, or the same crops by gathers while tracing inside ``switch.portable()``."""
    if switch.is_portable():
        return portable_ops.crop_and_resize(image, boxes, box_indices, crop_size)
    return tf.image.crop_and_resize(image, boxes, box_indices, crop_size, method="bilinear")


def per_class_nms(boxes, class_ids, scores, num_classes: int, max_output_size: int, iou_threshold: float):
    """Greedy NMS within each class of ``boxes`` [K, 4] (class_ids int32 [K], scores [K] > 0).

    Returns int32 [M]: kept indices into K in ascending order, among them the ``max_output_size`` best
    by score. One NMS over an IoU matrix zeroed between different classes
    (``NonMaxSuppressionWithOverlaps``) selects exactly the union of the per-class results; inside
    ``switch.portable()`` one ``NonMaxSuppressionV4`` per class selects the ``max_output_size`` best of it.
    """
    if switch.is_portable():
        selected = portable_ops.per_class_nms(
            boxes, class_ids, scores, num_classes, max_output_size, iou_threshold
        )
        return tf.sort(selected)
    same_class = tf.equal(class_ids[:, None], class_ids[None, :])
    corners = nms_corners_and_area_graph(boxes)
    overlaps = tf.where(same_class, nms_iou_graph(corners, corners), 0.0)
    selected = tf.image.non_max_suppression_overlaps(
        overlaps, scores, max_output_size=tf.shape(scores)[0], overlap_threshold=iou_threshold
    )
    return tf.sort(selected)


def momentum_sgd(learning_rate: float, momentum: float, clipnorm: float | None) -> keras.optimizers.Optimizer:
    """Keras' SGD with momentum and per-tensor ``clipnorm``: the fused ``ClippedMomentumSGD`` (same update)
    unless the switch is off for the process."""
    optimizer_class = (
        ClippedMomentumSGD if switch.enabled_by_environment("optimizer") else keras.optimizers.SGD
    )
    return optimizer_class(learning_rate=learning_rate, momentum=momentum, clipnorm=clipnorm)
