"""Box classifier and mask heads of Mask R-CNN (Keras 3 functional builders).

Matterport applies the head layers to every RoI with ``TimeDistributed``; Keras 3's TimeDistributed
loops over the RoI axis in Python, so here the per-RoI convolutions are ``RoiConv2D`` /
``RoiConv2DTranspose``: plain Conv2D / Conv2DTranspose that fold [B, R, h, w, C] into [B * R, h, w, C],
convolve once and unfold. BatchNorm, Dense and activations act on the last axis and take the 5-D (or
3-D) tensors directly. Every layer keeps Matterport's name, output shape and weight shapes, so
``mask_rcnn_coco.h5`` loads by name and ``model.get_layer("mrcnn_mask").output`` is [B, R, 28, 28, N]
(in the training graph [1, P, 28, 28, N]: only the batch's P positive RoIs, see ``fpn_mask_head``).

Under a mixed precision policy (``Config.MIXED_PRECISION``) the convolutions compute in half precision
but the output layers (class logits and softmax, box deltas, mask sigmoid) compute in float32, so the
scores, deltas and masks fed to the detection layer and the losses are float32.
"""

import keras
import tensorflow as tf

from mrcnn import kernels
from mrcnn.backbone import BatchNorm
from mrcnn.conv import Conv2D
from mrcnn.graph_ops import shape_list
from mrcnn.roi_align import PyramidROIAlign


def _fold(inputs):
    """[B, R, *rest] -> ([B * R, *rest], dims): ``dims`` are B and R (static ints where known)."""
    dims = shape_list(inputs)
    return tf.reshape(inputs, [-1] + dims[2:]), dims[:2]


def _unfold(outputs, batch_and_rois):
    """[B * R, *rest] -> [B, R, *rest]."""
    return tf.reshape(outputs, batch_and_rois + shape_list(outputs)[1:])


def _per_roi_shape(layer_class, layer, input_shape):
    """Output shape of a conv layer applied to each RoI of a [B, R, h, w, C] input."""
    input_shape = tuple(input_shape)
    inner = layer_class.compute_output_shape(layer, (None,) + input_shape[2:])
    return input_shape[:2] + tuple(inner[1:])


class _PerRoi:
    """Mixin that applies a 2-D convolution layer to each RoI of a [B, R, h, w, C] input.

    ``_base`` is the wrapped Keras layer class; a 4-D input is handled exactly as by that class.
    """

    _base = None

    def build(self, input_shape):
        super().build(tuple(input_shape)[-4:])

    def call(self, inputs):
        if inputs.shape.rank != 5:
            return super().call(inputs)
        folded, batch_and_rois = _fold(inputs)
        return _unfold(super().call(folded), batch_and_rois)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 5:
            return super().compute_output_shape(input_shape)
        return _per_roi_shape(self._base, self, input_shape)


@keras.saving.register_keras_serializable(package="mrcnn")
class RoiConv2D(_PerRoi, Conv2D):
    """Conv2D applied to each RoI: input [B, R, h, w, C] -> [B, R, h', w', filters] (channels-last).

    Same arguments and weights (kernel [kh, kw, C, filters], bias) as ``keras.layers.Conv2D``; a 4-D
    input is convolved as by Conv2D. Replaces Matterport's ``TimeDistributed(Conv2D(...))``. Its kernel
    is chosen by ``mrcnn.kernels`` (e.g. one matmul when the window covers the whole RoI).
    """

    _base = keras.layers.Conv2D

    def call(self, inputs):
        return kernels.per_roi_conv2d(self, inputs, default=super().call)


@keras.saving.register_keras_serializable(package="mrcnn")
class RoiConv2DTranspose(_PerRoi, keras.layers.Conv2DTranspose):
    """Conv2DTranspose applied to each RoI: input [B, R, h, w, C] -> [B, R, h', w', filters].

    Same arguments and weights (kernel [kh, kw, filters, C], bias) as ``keras.layers.Conv2DTranspose``;
    a 4-D input is handled as by Conv2DTranspose. Replaces ``TimeDistributed(Conv2DTranspose(...))``.
    """

    _base = keras.layers.Conv2DTranspose


def _check_head_inputs(rois, feature_maps, pool_size, num_classes):
    if len(rois.shape) != 3 or rois.shape[-1] != 4:
        raise ValueError(f"rois must be [batch, num_rois, 4] normalized boxes; got {tuple(rois.shape)}.")
    if len(feature_maps) != 4:
        raise ValueError(f"feature_maps must be the 4 maps [P2, P3, P4, P5]; got {len(feature_maps)}.")
    if int(pool_size) < 1 or int(num_classes) < 1:
        raise ValueError(f"pool_size ({pool_size}) and num_classes ({num_classes}) must be >= 1.")


def fpn_classifier_graph(
    rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True, fc_layers_size=1024
):
    """Box classifier and regressor head.

    rois: [B, R, 4] normalized boxes; feature_maps: [P2, P3, P4, P5]; image_meta: [B, IMAGE_META_SIZE];
    pool_size: RoIAlign side (7); num_classes: N including background; train_bn: passed as ``training``
    to the BatchNorm layers (False = frozen); fc_layers_size: width of the two "fully connected" layers.

    Returns (mrcnn_class_logits [B, R, N], mrcnn_probs [B, R, N] softmax, mrcnn_bbox [B, R, N, 4]
    class-specific deltas (dy, dx, log(dh), log(dw)) divided by BBOX_STD_DEV).
    """
    _check_head_inputs(rois, feature_maps, pool_size, num_classes)
    x = PyramidROIAlign([pool_size, pool_size], name="roi_align_classifier")(
        [rois, image_meta] + list(feature_maps)
    )
    # Two "fully connected" layers written as convolutions: pool x pool valid, then 1 x 1.
    x = RoiConv2D(fc_layers_size, (pool_size, pool_size), padding="valid", name="mrcnn_class_conv1")(x)
    x = BatchNorm(name="mrcnn_class_bn1")(x, training=train_bn)
    x = keras.layers.Activation("relu", name="mrcnn_class_relu1")(x)
    x = RoiConv2D(fc_layers_size, (1, 1), name="mrcnn_class_conv2")(x)
    x = BatchNorm(name="mrcnn_class_bn2")(x, training=train_bn)
    x = keras.layers.Activation("relu", name="mrcnn_class_relu2")(x)
    shared = keras.layers.Reshape((-1, fc_layers_size), name="pool_squeeze")(x)  # [B, R, fc]

    # The output layers compute in float32 under a mixed precision policy (see the module docstring).
    mrcnn_class_logits = keras.layers.Dense(num_classes, name="mrcnn_class_logits", dtype="float32")(shared)
    mrcnn_probs = keras.layers.Activation("softmax", name="mrcnn_class", dtype="float32")(mrcnn_class_logits)

    x = keras.layers.Dense(num_classes * 4, name="mrcnn_bbox_fc", dtype="float32")(shared)
    num_rois = rois.shape[1] if rois.shape[1] is not None else -1
    mrcnn_bbox = keras.layers.Reshape((num_rois, num_classes, 4), name="mrcnn_bbox", dtype="float32")(x)
    return mrcnn_class_logits, mrcnn_probs, mrcnn_bbox


def build_fpn_mask_graph(
    rois, feature_maps, image_meta, pool_size, num_classes, train_bn=True, conv_layers_size=256
):
    """Mask head: RoIAlign (``roi_align_mask``) then ``fpn_mask_head``.

    rois: [B, R, 4] normalized boxes; feature_maps: [P2, P3, P4, P5]; image_meta: [B, IMAGE_META_SIZE];
    pool_size: RoIAlign side (14); num_classes: N including background; train_bn: passed as
    ``training`` to the BatchNorm layers; conv_layers_size: channels of the four 3x3 convs and the
    deconv (Matterport and its COCO weights: 256; smaller trains much faster from scratch).

    Returns mrcnn_mask [B, R, 2 * pool_size, 2 * pool_size, N]: per-class sigmoid mask probabilities
    for each RoI.
    """
    _check_head_inputs(rois, feature_maps, pool_size, num_classes)
    pooled = PyramidROIAlign([pool_size, pool_size], name="roi_align_mask")(
        [rois, image_meta] + list(feature_maps)
    )
    return fpn_mask_head(pooled, num_classes, train_bn=train_bn, conv_layers_size=conv_layers_size)


def fpn_mask_head(pooled, num_classes, train_bn=True, conv_layers_size=256):
    """The mask head's layers after RoIAlign: four 3x3 convs (BatchNorm, ReLU), a 2x deconv, 1x1 sigmoid.

    pooled: [B, R, s, s, C] RoI features (the training graph passes the positive RoIs of the whole batch
    packed as [1, P, s, s, C], see ``mrcnn.targets.PositiveRoiPack``). Returns [B, R, 2s, 2s, N].
    """
    x = pooled
    for i in range(1, 5):
        x = RoiConv2D(conv_layers_size, (3, 3), padding="same", name=f"mrcnn_mask_conv{i}")(x)
        x = BatchNorm(name=f"mrcnn_mask_bn{i}")(x, training=train_bn)
        x = keras.layers.Activation("relu", name=f"mrcnn_mask_relu{i}")(x)
    x = RoiConv2DTranspose(conv_layers_size, (2, 2), strides=2, activation="relu", name="mrcnn_mask_deconv")(
        x
    )
    return RoiConv2D(
        num_classes, (1, 1), strides=1, activation="sigmoid", name="mrcnn_mask", dtype="float32"
    )(x)
