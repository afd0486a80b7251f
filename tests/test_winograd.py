"""Winograd F(2x2, 3x3) convolutions: the direct convolution's outputs and gradients; where they run."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import kernels
from mrcnn.conv import Conv2D
from mrcnn.heads import RoiConv2D
from mrcnn.kernels import winograd
from mrcnn.kernels.winograd import winograd_conv3x3


def loss_and_gradients(convolve, inputs, kernel, batch_static=True):
    """(outputs, d loss / d inputs, d loss / d kernel) in a tf.function, loss = sum(y * sin(y))."""
    spec = [
        tf.TensorSpec([inputs.shape[0] if batch_static else None, None, None, inputs.shape[3]]),
        tf.TensorSpec(kernel.shape),
    ]

    @tf.function(input_signature=spec)
    def step(x, k):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = convolve(x, k)
            assert y.shape.as_list() == spec[0].shape.as_list()[:3] + [k.shape[3]]  # static shape kept
            loss = tf.reduce_sum(y * tf.sin(y))
        return [y] + tape.gradient(loss, [x, k])

    return [t.numpy() for t in step(inputs, kernel)]


def direct(x, k):
    return tf.nn.conv2d(x, k, strides=1, padding="SAME")


@pytest.mark.parametrize("shape", [(2, 14, 14, 8), (3, 5, 7, 4), (1, 1, 1, 3), (11, 6, 9, 5)])
@pytest.mark.parametrize("batch_static", [True, False])
def test_matches_direct_convolution(shape, batch_static):
    """Even, odd and 1x1 feature maps; a dynamic batch of 11 is padded to 12 inside and cropped back."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=shape).astype(np.float32)
    kernel = rng.normal(size=(3, 3, shape[3], 6)).astype(np.float32)
    ours = loss_and_gradients(winograd_conv3x3, inputs, kernel, batch_static)
    reference = loss_and_gradients(direct, inputs, kernel, batch_static)
    for name, a, b in zip(["outputs", "inputs", "kernel"], ours, reference):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max(), err_msg=name)


def test_batch_bucket():
    sizes = [1, 5, 8, 9, 12, 13, 61, 100]
    assert [int(winograd._batch_bucket(tf.constant(n))) for n in sizes] == [1, 5, 8, 12, 12, 16, 64, 100]


def twin_layers(**kwargs):
    """mrcnn's Conv2D and a keras Conv2D with the same random weights, built for 5 input channels."""
    ours = Conv2D(4, kwargs.pop("kernel_size", 3), **kwargs)
    plain = keras.layers.Conv2D(4, ours.kernel_size, **kwargs)
    rng = np.random.default_rng(2)
    for layer in (ours, plain):
        layer.build((None, None, None, 5))
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in plain.get_weights()]
    ours.set_weights(weights)
    plain.set_weights(weights)
    return ours, plain


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(padding="same", activation="relu"),
        dict(padding="same", strides=2),
        dict(padding="valid"),
        dict(padding="same", kernel_size=5),
    ],
)
def test_layer_matches_conv2d(kwargs):
    """3x3 'same' stride-1 runs by Winograd; other settings fall back to Conv2D: same outputs either way."""
    ours, plain = twin_layers(**kwargs)
    inputs = np.random.default_rng(3).normal(size=(2, 10, 9, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(inputs), plain(inputs), rtol=1e-4, atol=1e-4)
    assert kernels.uses_winograd(ours) == (kwargs == dict(padding="same", activation="relu"))


def graph_op_types(layer, inputs):
    """Op types in the graph of ``layer`` applied to ``inputs`` (nested functions included)."""
    concrete = tf.function(layer).get_concrete_function(tf.TensorSpec([None] + list(inputs.shape[1:])))
    graph_def = concrete.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_disabled_falls_back_to_direct_convolution():
    """``disabled()`` (used by export_saved_model) traces a plain Conv2D; outside it Winograd is traced."""
    ours, _ = twin_layers(padding="same")
    inputs = np.zeros((1, 8, 8, 5), np.float32)
    assert "Conv2D" not in graph_op_types(ours, inputs)
    with kernels.disabled():
        assert not kernels.uses_winograd(ours)
        assert "Conv2D" in graph_op_types(ours, inputs)
    assert kernels.uses_winograd(ours)


def test_half_precision_layers_keep_onednn_convolution():
    layer = Conv2D(4, 3, padding="same", dtype="mixed_bfloat16")
    layer.build((None, None, None, 5))
    assert not kernels.uses_winograd(layer)
    assert layer(np.ones((1, 4, 4, 5), np.float32)).dtype == "bfloat16"


def test_config_round_trip():
    ours, _ = twin_layers(padding="same", activation="relu", name="fpn_p2")
    restored = keras.layers.deserialize(keras.layers.serialize(ours))
    assert type(restored) is Conv2D and restored.get_config() == ours.get_config()


def test_roi_conv_uses_winograd_per_roi():
    """The mask head's RoiConv2D folds [B, R, h, w, C] and convolves each RoI as Conv2D would."""
    layer = RoiConv2D(4, (3, 3), padding="same")
    layer.build((None, None, 6, 6, 5))
    inputs = np.random.default_rng(4).normal(size=(2, 3, 6, 6, 5)).astype(np.float32)
    expected = direct(inputs.reshape(6, 6, 6, 5), layer.kernel) + layer.bias
    np.testing.assert_allclose(layer(inputs), np.reshape(expected, (2, 3, 6, 6, 4)), rtol=1e-4, atol=1e-4)
    assert kernels.uses_winograd(layer)


@pytest.mark.parametrize("variable", ["MRCNN_CPU_KERNELS", "MRCNN_WINOGRAD"])
def test_environment_variable_turns_it_off(variable):
    """MRCNN_CPU_KERNELS=0 turns every kernel off for the process; MRCNN_WINOGRAD=0, its old name, too."""
    script = (
        "from mrcnn import kernels; from mrcnn.conv import Conv2D; "
        "layer = Conv2D(4, 3, padding='same'); layer.build((None, 8, 8, 5)); "
        "print('SUPPORTED', kernels.uses_winograd(layer), kernels.enabled())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MRCNN_CPU_KERNELS", "MRCNN_WINOGRAD")}
    env.update({variable: "0", "TF_CPP_MIN_LOG_LEVEL": "3"})
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SUPPORTED False False" in proc.stdout
