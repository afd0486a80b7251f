"""Batch normalization with batch statistics by TensorFlow's fused kernel (oneDNN on CPU).

Keras computes a training-mode BatchNormalization from separate moments, normalization and moving-average
ops. ``fused_batch_norm_training`` gives the same outputs and moving averages (Keras' biased batch
variance) with TensorFlow's fused kernel, forward and backward (measurements in benchmarks/README.md).
"""

import tensorflow as tf

from mrcnn.graph_ops import shape_list


def fits(layer, inputs) -> bool:
    """Whether ``fused_batch_norm_training`` computes exactly what Keras' batch-statistics path does for
    ``layer`` (a Keras BatchNormalization) on ``inputs``: channels-last 4-D or 5-D inputs of known depth,
    scale and center, not synchronized, no renorm, float32 or bfloat16."""
    rank = inputs.shape.rank
    return (
        rank in (4, 5)
        and layer.axis % rank == rank - 1
        and inputs.shape[-1] is not None
        and layer.scale
        and layer.center
        and not layer.synchronized
        and not layer.renorm
        and inputs.dtype in (tf.float32, tf.bfloat16)
    )


def fused_batch_norm_training(layer, inputs):
    """``layer(inputs, training=True)`` by the fused kernel; updates the moving mean and variance.

    [B, R, h, w, C] inputs (the heads) are normalized as [B * R, h, w, C].
    """
    x = inputs if inputs.shape.rank == 4 else tf.reshape(inputs, [-1] + shape_list(inputs)[2:])
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x,
        tf.cast(layer.gamma, tf.float32),
        tf.cast(layer.beta, tf.float32),
        epsilon=layer.epsilon,
        data_format="NHWC",
        is_training=True,
    )
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    variance = variance * (count - 1.0) / tf.maximum(count, 1.0)  # the kernel's is Bessel-corrected
    for moving, batch in ((layer.moving_mean, mean), (layer.moving_variance, variance)):
        moving.assign(moving * layer.momentum + tf.cast(batch, moving.dtype) * (1.0 - layer.momentum))
    if inputs.shape.rank == 5:
        outputs = tf.reshape(outputs, shape_list(inputs))
    return tf.cast(outputs, layer.compute_dtype)
