"""PyramidROIAlign: pool a fixed-size feature crop for every box from the FPN level that fits its size.

Boxes are (y1, x1, y2, x2) in normalized coordinates (see ``mrcnn.boxes.norm_boxes_graph``).
"""

import keras
import tensorflow as tf

from mrcnn import kernels
from mrcnn.graph_ops import log2_graph
from mrcnn.transform import parse_image_meta_graph

PYRAMID_LEVELS = (2, 3, 4, 5)
"""FPN levels P2..P5 the boxes are pooled from, in the order of the feature-map inputs."""


def roi_pyramid_levels(boxes, image_shape):
    """FPN level (int32 in 2..5) of each box, as in the FPN paper with a 224 px canonical size.

    boxes: [..., 4] normalized; image_shape: [>= 2] (height, width, ...) of the molded image in pixels.
    level = clip(4 + round(log2(sqrt(h * w) / (224 / sqrt(image_area)))), 2, 5) where h, w are the
    normalized box sides. Empty (zero-area, e.g. padding) and inverted boxes go to level 2; boxes with
    NaN coordinates go to level 4, so every box has exactly one level.
    """
    boxes = tf.cast(boxes, tf.float32)
    image_area = tf.cast(image_shape[0], tf.float32) * tf.cast(image_shape[1], tf.float32)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    area = tf.maximum(height * width, 0.0)
    level = log2_graph(tf.sqrt(area) / (224.0 / tf.sqrt(image_area)))
    level = tf.where(tf.math.is_nan(level), tf.zeros_like(level), level)
    level = tf.clip_by_value(4.0 + tf.round(level), float(PYRAMID_LEVELS[0]), float(PYRAMID_LEVELS[-1]))
    return tf.cast(level, tf.int32)


@keras.saving.register_keras_serializable(package="mrcnn")
class PyramidROIAlign(keras.layers.Layer):
    """RoIAlign over a feature pyramid (Matterport's variant: one bilinear sample per output bin).

    Inputs: [boxes [B, N, 4] normalized, image_meta [B, IMAGE_META_SIZE], P2, P3, P4, P5 feature maps
    [B, h_l, w_l, C]]. Output: [B, N, pool_height, pool_width, C] in the layer's compute dtype (float32,
    or bfloat16/float16 under a mixed precision policy), row i pooled for box i.

    Each box goes to one level (``roi_pyramid_levels``; the image area comes from the image_shape of
    the first meta row) and is cropped bilinearly (``mrcnn.kernels.crop_and_resize``: TensorFlow's
    ``crop_and_resize``, or the same crops by gathers in graphs traced for ONNX/TFLite/OpenVINO) from
    that level's map. There is one crop per level over all images' boxes (box_indices = image
    index), and one gather puts the results back in input order. Gradients flow to the feature maps,
    not to the boxes (as in Matterport).

    Mixed precision: the layer does not autocast its inputs, so the boxes keep float32 precision while
    the feature maps stay in their (possibly half) dtype (bfloat16 maps are sampled as float32, which
    ``tf.image.crop_and_resize`` needs); the bilinear sampling itself computes in float32.
    """

    def __init__(self, pool_shape, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(v) for v in pool_shape)
        if len(self.pool_shape) != 2 or min(self.pool_shape) < 1:
            raise ValueError(f"pool_shape must be (height, width) with positive sides; got {pool_shape}.")
        self.supports_jit = False

    def build(self, input_shape):
        expected = 2 + len(PYRAMID_LEVELS)
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != expected:
            raise ValueError(
                f"PyramidROIAlign takes {expected} inputs: [boxes [B, N, 4], "
                "image_meta [B, META], P2, P3, P4, P5]."
            )
        boxes_shape, meta_shape = input_shape[0], input_shape[1]
        if len(boxes_shape) != 3 or boxes_shape[-1] not in (None, 4) or len(meta_shape) != 2:
            raise ValueError(
                f"PyramidROIAlign got boxes {tuple(boxes_shape)} and image_meta "
                f"{tuple(meta_shape)}; expected [B, N, 4] and [B, IMAGE_META_SIZE]."
            )
        for shape in input_shape[2:]:
            if len(shape) != 4:
                raise ValueError(
                    f"PyramidROIAlign feature maps must be [B, height, width, C]; got {tuple(shape)}."
                )
        super().build(input_shape)

    def call(self, inputs):
        boxes = tf.cast(inputs[0], tf.float32)
        image_meta = inputs[1]
        feature_maps = inputs[2:]

        image_shape = parse_image_meta_graph(image_meta)["image_shape"][0]
        # A diverged network can propose NaN/inf boxes; crop_and_resize rejects them, so they become empty
        # boxes here and the non-finite loss (StopOnNonFiniteLoss) reports the divergence instead.
        boxes = tf.where(tf.math.is_finite(boxes), boxes, tf.zeros_like(boxes))
        levels = roi_pyramid_levels(boxes, image_shape)
        num_boxes = tf.shape(boxes, out_type=tf.int64)[1]

        pooled = []
        positions = []
        for level, feature_map in zip(PYRAMID_LEVELS, feature_maps):
            index = tf.where(tf.equal(levels, level))  # [K, 2]: (image, box)
            level_boxes = tf.stop_gradient(tf.gather_nd(boxes, index))
            box_indices = tf.stop_gradient(tf.cast(index[:, 0], tf.int32))
            if feature_map.dtype == tf.bfloat16:  # crop_and_resize has no bfloat16 kernel
                feature_map = tf.cast(feature_map, tf.float32)
            pooled.append(kernels.crop_and_resize(feature_map, level_boxes, box_indices, self.pool_shape))
            positions.append(index[:, 0] * num_boxes + index[:, 1])
        pooled = tf.concat(pooled, axis=0)
        # Every box is in exactly one level, so ``positions`` is a permutation of range(B * N); scattering
        # range() through it inverts it (with ops every export runtime has, unlike InvertPermutation).
        positions = tf.cast(tf.concat(positions, axis=0), tf.int32)
        total = tf.reduce_prod(tf.shape(boxes)[:2])
        inverse = tf.scatter_nd(tf.expand_dims(positions, -1), tf.range(total), tf.expand_dims(total, 0))
        pooled = tf.gather(pooled, inverse)

        channels = feature_maps[0].shape[-1]
        if channels is None:
            channels = tf.shape(feature_maps[0])[-1]
        batch_and_boxes = tf.unstack(tf.shape(boxes)[:2])
        pooled = tf.reshape(pooled, batch_and_boxes + list(self.pool_shape) + [channels])
        return tf.cast(pooled, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        boxes_shape, feature_shape = input_shape[0], input_shape[2]
        return (boxes_shape[0], boxes_shape[1]) + self.pool_shape + (feature_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update({"pool_shape": list(self.pool_shape)})
        return config
