"""Region Proposal Network head, shared over the pyramid levels P2..P6 as the ``rpn_model`` sub-model.

Anchor order: for a feature map ``[B, h, w, C]`` with ``A`` anchors per location and stride ``s``, the
head outputs ``N = ceil(h / s) * ceil(w / s) * A`` anchors, ordered by position row-major and by anchor
(ratio) innermost, which is the order of ``utils.generate_anchors``.

At anchor stride 1 the shared convolution is a ``SparseGradientConv2D``: the RPN losses read only the
sampled anchors, so its backward pass is computed from the positions that get a gradient (same weights,
outputs and gradients as Matterport's Conv2D).

Under a mixed precision policy the shared convolution computes in half precision and the class and box
outputs in float32.
"""

import keras

from mrcnn.sparse_conv import SparseGradientConv2D


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
    if anchor_stride == 1:
        shared_conv = SparseGradientConv2D(
            512, (3, 3), padding="same", activation="relu", name="rpn_conv_shared"
        )
    else:
        shared_conv = keras.layers.Conv2D(
            512, (3, 3), padding="same", activation="relu", strides=anchor_stride, name="rpn_conv_shared"
        )
    shared = shared_conv(feature_map)

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
