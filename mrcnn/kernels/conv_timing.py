"""Timing problems for the 3x3 convolution kernels: what ``autotune.choose`` runs to pick one.

A problem is the layer's convolution on random data: forward, or forward and both gradients when the
model trains. Large maps are cropped to at most 128x128 positions per image (64x64 with gradients) and
small ones batched to about 4,096 positions, so one problem costs milliseconds to a tenth of a second
while the matrix products keep the sizes (and the speed) of the real ones.
"""

import tensorflow as tf

from mrcnn.kernels import winograd, winograd4

_TIMING_POSITIONS = 4096
_TIMING_SIDE = {False: 128, True: 64}  # forward problems see large maps whole (F(4x4) gains there)


def timing_shape(input_shape, with_gradient: bool = False) -> list[int]:
    """The [N, H, W, C] input of the timing problem for a convolution of ``input_shape`` (None = unknown):
    H and W capped at 128 (64 for forward+backward problems), N images enough for about 4,096 positions
    (at most the known batch)."""
    side = _TIMING_SIDE[with_gradient]
    height = min(input_shape[1] or side, side)
    width = min(input_shape[2] or side, side)
    batch = max(1, -(-_TIMING_POSITIONS // (height * width)))
    if input_shape[0] is not None:
        batch = min(batch, int(input_shape[0]))
    return [batch, height, width, int(input_shape[3])]


def conv3x3_runners(input_shape, filters: int, with_gradient: bool) -> dict:
    """{"winograd", ["winograd4",] "default"}: zero-argument functions that run F(2x2, 3x3), F(4x4, 3x3)
    (forward problems only: it has no gradient of its own) and TensorFlow's convolution on random data of
    ``timing_shape(input_shape)`` -> ``filters`` channels, for ``autotune.choose``."""
    shape = timing_shape(input_shape, with_gradient)
    inputs = tf.random.normal(shape)
    kernel = tf.random.normal([3, 3, shape[3], filters], stddev=0.05)
    upstream = tf.random.normal(shape[:3] + [filters])

    def runner(conv):
        @tf.function(autograph=False)
        def run():
            if not with_gradient:
                return tf.reduce_sum(conv(inputs, kernel))
            with tf.GradientTape() as tape:
                tape.watch([inputs, kernel])
                outputs = conv(inputs, kernel)
            grad_inputs, grad_kernel = tape.gradient(outputs, [inputs, kernel], output_gradients=upstream)
            return tf.reduce_sum(grad_inputs) + tf.reduce_sum(grad_kernel)

        return run

    runners = {"winograd": runner(winograd.winograd_conv3x3)}
    if not with_gradient:
        runners["winograd4"] = runner(winograd4.winograd_conv3x3_f4)
    runners["default"] = runner(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
    return runners
