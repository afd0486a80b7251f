"""Timing problems for training-mode batch normalization: what ``autotune.choose`` runs to pick a form.

A problem is a BatchNormalization with batch statistics on random data of the layer's input shape,
forward and backward (the gradients of the input, gamma and beta). Batch norm is bound by memory
traffic, so the problem keeps the real tensor sizes up to 2**22 values (16 MB of float32), where they
no longer fit any cache.
"""

import tensorflow as tf

from mrcnn.kernels import fused_bn

_TIMING_VALUES = 1 << 22
_UNKNOWN_SIDE = 64  # an unknown height or width (the image side is not fixed)
_UNKNOWN_COUNT = 16  # an unknown batch or RoI count


def timing_shape(input_shape) -> list[int]:
    """The [N, H, W, C] input of the timing problem for a batch norm of ``input_shape`` ([N, H, W, C] or
    the heads' [B, R, h, w, C]; None = unknown): H and W capped at 128, N images for as many values as
    the layer's, up to 2**22."""
    *leading, height, width, channels = [None if d is None else int(d) for d in input_shape]
    positions = (height or _UNKNOWN_SIDE) * (width or _UNKNOWN_SIDE)
    for dimension in leading:
        positions *= dimension or _UNKNOWN_COUNT
    height = min(height or _UNKNOWN_SIDE, 128)
    width = min(width or _UNKNOWN_SIDE, 128)
    images = -(-positions // (height * width))  # as many values as the layer's, up to 2**22
    fitting = max(1, _TIMING_VALUES // (height * width * channels))
    return [max(1, min(images, fitting)), height, width, channels]


def batch_norm_runners(input_shape, epsilon: float = 1e-3) -> dict:
    """{"fused", "xla", "default"}: zero-argument functions that run a training-mode batch norm forward
    and backward on random data of ``timing_shape(input_shape)`` by TensorFlow's fused kernel, by
    ``fused_bn._normalize`` and by Keras' separate ops (moments, then normalization), for ``autotune``."""
    shape = timing_shape(input_shape)
    channels = shape[-1]
    inputs = tf.random.normal(shape, mean=1.0, stddev=3.0)
    upstream = tf.random.normal(shape)
    gamma = tf.random.normal([channels])
    beta = tf.random.normal([channels])

    def fused(x):
        return tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=epsilon, is_training=True)[0]

    def xla(x):
        return fused_bn._normalize(x, gamma, beta, tf.constant(epsilon))[0]

    def keras_ops(x):
        mean, variance = tf.nn.moments(x, [0, 1, 2])
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)

    def runner(normalize):
        @tf.function(autograph=False)
        def run():
            with tf.GradientTape() as tape:
                tape.watch([inputs, gamma, beta])
                outputs = normalize(inputs)
            grads = tape.gradient(outputs, [inputs, gamma, beta], output_gradients=upstream)
            return sum(tf.reduce_sum(g) for g in grads)

        return run

    return {"fused": runner(fused), "xla": runner(xla), "default": runner(keras_ops)}
