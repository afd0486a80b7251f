"""Training-mode batch normalization (batch statistics) by faster kernels than Keras' separate ops.

Keras computes a training-mode BatchNormalization from separate moments, normalization and moving-average
ops, and differentiates them op by op. Two forms give the same outputs and moving averages (Keras' biased
batch variance):

- ``fused_batch_norm_training``: TensorFlow's fused kernel, forward and backward (oneDNN on CPU; fast
  with AVX-512, about 3x slower than Keras' ops under oneDNN's AVX2 kernels);
- ``xla_batch_norm_training``: the statistics by TensorFlow's reductions, the normalization and the input
  gradient by one XLA-compiled elementwise pass each, with the closed-form gradient (float32 only).

``mrcnn.kernels.select.batch_norm`` times both against Keras' ops per shape and runs the fastest.
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


def xla_fits(layer, inputs) -> bool:
    """Whether ``xla_batch_norm_training`` applies: as ``fits``, float32 inputs only."""
    return fits(layer, inputs) and inputs.dtype == tf.float32


def _flat(inputs):
    return inputs if inputs.shape.rank == 4 else tf.reshape(inputs, [-1] + shape_list(inputs)[2:])


def _update_moving_statistics(layer, x, mean, biased_variance):
    for moving, batch in ((layer.moving_mean, mean), (layer.moving_variance, biased_variance)):
        moving.assign(moving * layer.momentum + tf.cast(batch, moving.dtype) * (1.0 - layer.momentum))


def fused_batch_norm_training(layer, inputs):
    """``layer(inputs, training=True)`` by the fused kernel; updates the moving mean and variance.

    [B, R, h, w, C] inputs (the heads) are normalized as [B * R, h, w, C].
    """
    x = _flat(inputs)
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
    _update_moving_statistics(layer, x, mean, variance)
    if inputs.shape.rank == 5:
        outputs = tf.reshape(outputs, shape_list(inputs))
    return tf.cast(outputs, layer.compute_dtype)


@tf.function(jit_compile=True, autograph=False)
def _scale_and_shift(x, scale, shift):
    """x * scale + shift per channel, one XLA pass: x [N, H, W, C], scale and shift [C]."""
    return x * scale + shift


@tf.function(jit_compile=True, autograph=False)
def _centered_product(upstream, x, mean):
    """upstream * (x - mean), one XLA pass (its channel sums are a reduction away)."""
    return upstream * (x - mean)


@tf.function(jit_compile=True, autograph=False)
def _input_gradient(upstream, upstream_scale, x, x_scale, shift):
    """upstream * upstream_scale + x * x_scale + shift, one XLA pass ([C] factors)."""
    return upstream * upstream_scale + x * x_scale + shift


@tf.custom_gradient
def _normalize(x, gamma, beta, epsilon):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over the batch statistics of x [N, H, W, C] float32.

    Returns (outputs, mean [C], biased variance [C]); the statistics carry no gradient. The gradient is
    the closed form: with a = gamma / sqrt(var + eps), n positions per channel, s1 = sum(dy) and
    s2 = sum(dy * (x - mean)) per channel, dx = a * dy - a * s2 / (var + eps) / n * (x - mean) - a * s1 / n,
    dgamma = s2 / sqrt(var + eps), dbeta = s1.
    """
    axes = [0, 1, 2]
    scope = tf.get_current_name_scope()  # the layer's: the gradient's ops are named after it
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    mean = tf.reduce_mean(x, axes)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axes)
    inverse_std = tf.math.rsqrt(variance + epsilon)
    scale = gamma * inverse_std
    outputs = _scale_and_shift(x, scale, beta - mean * scale)

    def gradient(upstream, _mean_upstream, _variance_upstream):
        with tf.name_scope(f"gradient_tape/{scope}/" if scope else "gradient_tape/"):
            sum_upstream = tf.reduce_sum(upstream, axes)
            sum_centered = tf.reduce_sum(_centered_product(upstream, x, mean), axes)
            x_scale = -scale * inverse_std * inverse_std * sum_centered / count
            shift = -scale * sum_upstream / count - x_scale * mean
            grad_x = _input_gradient(upstream, scale, x, x_scale, shift)
            return grad_x, sum_centered * inverse_std, sum_upstream, None

    return (outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)), gradient


def xla_batch_norm_training(layer, inputs):
    """``layer(inputs, training=True)`` for float32 inputs by ``_normalize``; updates the moving mean and
    variance. [B, R, h, w, C] inputs (the heads) are normalized as [B * R, h, w, C]."""
    x = _flat(inputs)
    outputs, mean, variance = _normalize(
        x, tf.cast(layer.gamma, tf.float32), tf.cast(layer.beta, tf.float32), tf.constant(layer.epsilon)
    )
    _update_moving_statistics(layer, x, mean, variance)
    if inputs.shape.rank == 5:
        outputs = tf.reshape(outputs, shape_list(inputs))
    return outputs
