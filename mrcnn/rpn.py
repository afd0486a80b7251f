"""Region Proposal Network head, shared over the pyramid levels P2..P6 as the ``rpn_model`` sub-model.

Anchor order: for a feature map ``[B, h, w, C]`` with ``A`` anchors per location and stride ``s``, the
head outputs ``N = ceil(h / s) * ceil(w / s) * A`` anchors, ordered by position row-major and by anchor
(ratio) innermost, which is the order of ``mrcnn.anchors.generate_anchors``. ``ConstantAnchors`` feeds
those anchors (normalized) to the training graph.

The shared convolution declares ``sparse_output_gradient``: the RPN losses read only the sampled anchors,
so ``mrcnn.kernels`` may compute its backward pass from the positions that get a gradient (same weights,
outputs and gradients as Matterport's Conv2D).

Under a mixed precision policy the shared convolution computes in half precision and the class and box
outputs in float32.
"""

import keras
import tensorflow as tf

from mrcnn.anchors import pyramid_anchors
from mrcnn.backbone import compute_backbone_shapes
from mrcnn.conv import Conv2D
from mrcnn.graph_ops import Float32Layer


def rpn_graph(feature_map, anchors_per_location, anchor_stride):
    """RPN layers applied to one feature map.

    Args:
        feature_map: ``[B, h, w, depth]`` float32 KerasTensor.
        anchors_per_location: A, the number of anchors (ratios) per position.
        anchor_stride: stride of the anchors in feature-map cells (usually 1).

    Returns:
        ``[rpn_class_logits, rpn_probs, rpn_bbox]``: ``[B, N, 2]`` background/foreground logits,
        ``[B, N, 2]`` their softmax, ``[B, N, 4]`` box deltas ``(dy, dx, log(dh), log(dw))`` still divided
        by RPN_BBOX_STD_DEV.
    """
    # The RPN losses read only the sampled anchors: few output positions get a gradient.
    shared = Conv2D(
        512,
        (3, 3),
        padding="same",
        activation="relu",
        strides=anchor_stride,
        sparse_output_gradient=True,
        name="rpn_conv_shared",
    )(feature_map)

    x = keras.layers.Conv2D(
        2 * anchors_per_location,
        (1, 1),
        padding="valid",
        activation="linear",
        name="rpn_class_raw",
        dtype="float32",
    )(shared)
    rpn_class_logits = keras.layers.Reshape((-1, 2), name="rpn_class_logits_flat", dtype="float32")(x)
    rpn_probs = keras.layers.Activation("softmax", name="rpn_class_xxx", dtype="float32")(rpn_class_logits)

    x = keras.layers.Conv2D(
        4 * anchors_per_location,
        (1, 1),
        padding="valid",
        activation="linear",
        name="rpn_bbox_pred",
        dtype="float32",
    )(shared)
    rpn_bbox = keras.layers.Reshape((-1, 4), name="rpn_bbox_flat", dtype="float32")(x)
    return [rpn_class_logits, rpn_probs, rpn_bbox]


def build_rpn_model(anchor_stride, anchors_per_location, depth):
    """The RPN as a Keras model named ``rpn_model``, to be called once per pyramid level.

    Input ``input_rpn_feature_map`` ``[B, None, None, depth]``; outputs as :func:`rpn_graph`. Its weights
    (``rpn_conv_shared``, ``rpn_class_raw``, ``rpn_bbox_pred``) are shared by every level and stored in the
    weights file as one layer ``rpn_model``.
    """
    input_feature_map = keras.Input(shape=[None, None, depth], name="input_rpn_feature_map")
    outputs = rpn_graph(input_feature_map, anchors_per_location, anchor_stride)
    return keras.Model(input_feature_map, outputs, name="rpn_model")


@keras.saving.register_keras_serializable(package="mrcnn")
class ConstantAnchors(Float32Layer):
    """Pyramid anchors of a fixed image shape, normalized, broadcast to the batch: [B, A, 4].

    Built from the anchor settings (not stored values), so ``get_config`` stays small. Input: the image
    batch (only its batch size is used). The anchors come from ``mrcnn.anchors.pyramid_anchors``.
    """

    def __init__(self, scales, ratios, backbone_shapes, strides, anchor_stride, image_shape, **kwargs):
        super().__init__(**kwargs)
        self.scales = list(scales)
        self.ratios = list(ratios)
        self.backbone_shapes = [list(map(int, s)) for s in backbone_shapes]
        self.strides = list(strides)
        self.anchor_stride = int(anchor_stride)
        self.image_shape = list(map(int, image_shape))
        _, self.anchors = pyramid_anchors(
            self.scales, self.ratios, self.backbone_shapes, self.strides, self.anchor_stride, self.image_shape
        )

    def call(self, image):
        anchors = tf.constant(self.anchors)
        return tf.broadcast_to(anchors[tf.newaxis], [tf.shape(image)[0], *self.anchors.shape])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.anchors.shape)

    def get_config(self):
        return {
            **super().get_config(),
            "scales": self.scales,
            "ratios": self.ratios,
            "backbone_shapes": self.backbone_shapes,
            "strides": self.strides,
            "anchor_stride": self.anchor_stride,
            "image_shape": self.image_shape,
        }


def anchor_layer(config):
    """The training graph's ``ConstantAnchors`` layer named "anchors", for ``config.IMAGE_SHAPE``."""
    return ConstantAnchors(
        config.RPN_ANCHOR_SCALES,
        config.RPN_ANCHOR_RATIOS,
        compute_backbone_shapes(config, config.IMAGE_SHAPE),
        config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE,
        config.IMAGE_SHAPE,
        name="anchors",
    )
