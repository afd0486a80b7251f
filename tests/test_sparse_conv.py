"""Conv2D(sparse_output_gradient=True): Conv2D's outputs, and its exact gradients from the positions that
get one (mrcnn.kernels.sparse_conv)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import kernels
from mrcnn.conv import Conv2D
from mrcnn.rpn import build_rpn_model


def twin_layers(activation, kernel_size=3, channels=6, filters=5, seed=0):
    """A sparse-gradient Conv2D and a keras Conv2D with the same random weights, both built."""
    sparse = Conv2D(filters, kernel_size, padding="same", activation=activation, sparse_output_gradient=True)
    dense = keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation)
    for layer in (sparse, dense):
        layer.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in dense.get_weights()]
    sparse.set_weights(weights)
    dense.set_weights(weights)
    return sparse, dense


def gradients(layer, inputs, loss_weights):
    """(outputs, d loss / d inputs, d loss / d kernel, d loss / d bias) for loss = sum(outputs * weights)."""
    x = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * loss_weights)
    grads = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return [y.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("active_fraction", [0.05, 0.3, 1.0])
def test_outputs_and_gradients_match_conv2d(activation, active_fraction):
    """Same outputs and gradients as Conv2D, through the sparse path (few positions) and the dense one."""
    sparse, dense = twin_layers(activation)
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(2, 9, 7, 6)).astype(np.float32)
    # The loss reads a random subset of positions (all channels there), like the RPN loss reading sampled
    # anchors; the image borders are included so that the padding's share of the gradient is checked.
    positions = rng.random((2, 9, 7, 1)) < active_fraction
    positions[0, 0, 0] = positions[1, -1, -1] = True
    loss_weights = (rng.normal(size=(2, 9, 7, 5)) * positions).astype(np.float32)
    ours, reference = gradients(sparse, inputs, loss_weights), gradients(dense, inputs, loss_weights)
    for name, a, b in zip(["outputs", "inputs", "kernel", "bias"], ours, reference):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
    assert np.abs(reference[1]).max() > 0 and np.abs(reference[2]).max() > 0


def test_gradient_is_zero_without_active_positions():
    sparse, _ = twin_layers("relu")
    grads = gradients(sparse, np.ones((1, 5, 5, 6), np.float32), np.zeros((1, 5, 5, 5), np.float32))
    assert all(not np.any(g) for g in grads[1:])


def test_gradients_match_inside_tf_function():
    """The training step runs in a tf.function: the custom gradient and its cond must trace there."""
    sparse, dense = twin_layers("relu", kernel_size=5)
    rng = np.random.default_rng(2)
    inputs = rng.normal(size=(3, 8, 8, 6)).astype(np.float32)
    loss_weights = (rng.normal(size=(3, 8, 8, 5)) * (rng.random((3, 8, 8, 1)) < 0.1)).astype(np.float32)

    @tf.function
    def grads(layer):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs) * loss_weights)
        return tape.gradient(loss, [layer.kernel, layer.bias])

    for a, b in zip(grads(sparse), grads(dense)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_config_round_trip_and_unsupported_arguments_fall_back():
    """The flag survives get_config; configurations the sparse backward pass cannot compute (it used to
    refuse them) keep Conv2D's own call, with the same outputs and gradients."""
    layer = Conv2D(
        8, 3, padding="same", activation="relu", sparse_output_gradient=True, name="rpn_conv_shared"
    )
    clone = Conv2D.from_config(layer.get_config())
    assert (clone.name, clone.filters, clone.kernel_size) == ("rpn_conv_shared", 8, (3, 3))
    assert clone.sparse_output_gradient and kernels.uses_sparse_gradient(clone)
    for kwargs in ({"strides": 2}, {"padding": "valid"}, {"activation": "sigmoid"}, {"use_bias": False}):
        other = Conv2D(8, 3, sparse_output_gradient=True, **{"padding": "same", **kwargs})
        assert not kernels.uses_sparse_gradient(other), kwargs


def test_rpn_uses_it_only_at_anchor_stride_one():
    """rpn_conv_shared keeps Matterport's name and weights; a strided RPN falls back to Conv2D's call."""
    rpn = build_rpn_model(1, 3, 16)
    shared = rpn.get_layer("rpn_conv_shared")
    assert kernels.uses_sparse_gradient(shared)
    assert [tuple(w.shape) for w in shared.weights] == [(3, 3, 16, 512), (512,)]
    strided = build_rpn_model(2, 3, 16).get_layer("rpn_conv_shared")
    assert not kernels.uses_sparse_gradient(strided)
