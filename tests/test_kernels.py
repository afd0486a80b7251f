"""mrcnn.kernels: one switch, one chooser, and the model's layers naming what they compute."""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mrcnn import kernels
from mrcnn.backbone import BatchNorm
from mrcnn.conv import Conv2D
from mrcnn.kernels.optimizer import ClippedMomentumSGD

PACKAGE = Path(__file__).resolve().parents[1] / "mrcnn"
STAGES = [
    "backbone.py",
    "rpn.py",
    "heads.py",
    "proposals.py",
    "roi_align.py",
    "detection.py",
    "graph.py",
    "model.py",
]


@pytest.mark.parametrize("stage", STAGES)
def test_stages_name_what_they_compute(stage):
    """No stage imports a kernel module or names a kernel: the choice is made in mrcnn.kernels.select."""
    source = (PACKAGE / stage).read_text()
    kernel_modules = (
        r"kernels\.(winograd|nms|sparse_conv|fused_bn|roi_matmul|optimizer|switch|portable_ops)\b"
        r"|import (winograd|nms|portable_ops)\b"
    )
    assert not re.search(kernel_modules, source), stage
    assert not re.search(r"Winograd\w*\(|SparseGradient|_fused|blocked_nms", source), stage


def test_disabled_turns_the_xla_kernels_off():
    layer = Conv2D(8, 3, padding="same", activation="relu", sparse_output_gradient=True)
    layer.build((None, None, None, 4))
    assert kernels.enabled() and kernels.uses_winograd(layer) and kernels.uses_sparse_gradient(layer)
    with kernels.disabled():
        assert not kernels.enabled() and not kernels.uses_winograd(layer)
        assert kernels.uses_sparse_gradient(layer)  # plain TensorFlow ops: any runtime runs them
    assert kernels.enabled()


def test_portable_is_disabled_and_more():
    layer = Conv2D(8, 3, padding="same")
    layer.build((None, None, None, 4))
    with kernels.portable():
        assert kernels.is_portable() and not kernels.enabled() and not kernels.uses_winograd(layer)
    assert not kernels.is_portable() and kernels.enabled()


@pytest.mark.parametrize("crop_size", [(7, 7), (14, 3), (1, 1)])
def test_portable_crops_equal_crop_and_resize(crop_size):
    """Bilinear crops by gathers give tf.image.crop_and_resize's values bit for bit, also for boxes that
    reach outside the image (zeros there) and inverted boxes."""
    rng = np.random.default_rng(0)
    image = tf.constant(rng.normal(size=(2, 13, 17, 5)).astype(np.float32))
    boxes = tf.constant(rng.uniform(-0.2, 1.2, (60, 4)).astype(np.float32))
    box_indices = tf.constant(rng.integers(0, 2, 60).astype(np.int32))
    expected = tf.image.crop_and_resize(image, boxes, box_indices, crop_size).numpy()
    with kernels.portable():
        got = kernels.crop_and_resize(image, boxes, box_indices, crop_size).numpy()
    np.testing.assert_array_equal(got, expected)


def test_portable_per_class_nms_keeps_the_same_boxes():
    """One NonMaxSuppressionV4 per class selects, among the best max_output_size, what the IoU-matrix NMS
    selects (random overlapping boxes of 3 classes, distinct scores)."""
    rng = np.random.default_rng(1)
    corners = rng.uniform(0, 0.8, (200, 2))
    boxes = tf.constant(np.concatenate([corners, corners + rng.uniform(0.05, 0.3, (200, 2))], 1), tf.float32)
    class_ids = tf.constant(rng.integers(1, 4, 200), tf.int32)
    scores = tf.constant(rng.permutation(200) / 200 + 0.001, tf.float32)
    everything = kernels.per_class_nms(boxes, class_ids, scores, 4, 200, 0.3).numpy()
    with kernels.portable():
        best = kernels.per_class_nms(boxes, class_ids, scores, 4, 20, 0.3).numpy()
    assert 20 < len(everything) < 200 and len(best) == 20
    top = everything[np.argsort(-scores.numpy()[everything], kind="stable")[:20]]
    np.testing.assert_array_equal(best, np.sort(top))


@pytest.mark.parametrize("k", [1, 37, 500])
def test_portable_top_k_picks_the_same_indices(k):
    """The threshold-then-top-k form gives tf.math.top_k's indices in its order, with tied, zero and
    saturated scores (ties: lower index first)."""
    rng = np.random.default_rng(k)
    scores = rng.random((3, 2000)).astype(np.float32) ** 4
    scores[0, ::7] = 0.25  # many ties
    scores[1, :300] = 1.0  # saturated
    scores[2] = 0.0  # all equal
    expected = tf.math.top_k(scores, k=k).indices.numpy()
    with kernels.portable():
        got = kernels.top_k_indices(tf.constant(scores), k).numpy()
        traced = tf.function(lambda s, n: kernels.top_k_indices(s, n))(tf.constant(scores), tf.constant(k))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(traced.numpy(), expected)


def test_fused_batch_norm_equals_keras():
    """Training-mode BatchNorm through the fused kernel: Keras' outputs and moving averages."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, size=(4, 5, 5, 6)).astype(np.float32))
    ours, plain = BatchNorm(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    for layer in (ours, plain):
        layer.build(x.shape)
    np.testing.assert_allclose(ours(x, training=True), plain(x, training=True), rtol=1e-4, atol=1e-4)
    for a, b in zip(ours.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_momentum_sgd_is_the_fused_optimizer():
    optimizer = kernels.momentum_sgd(0.01, 0.9, 5.0)
    assert type(optimizer) is ClippedMomentumSGD and optimizer.clipnorm == 5.0


def test_process_switch_gives_keras_kernels():
    """MRCNN_CPU_KERNELS=0: plain Keras SGD, no Winograd, and the switch reads off for the process."""
    script = (
        "from mrcnn import kernels; from mrcnn.conv import Conv2D; import keras; "
        "layer = Conv2D(4, 3, padding='same'); layer.build((None, 8, 8, 5)); "
        "print(type(kernels.momentum_sgd(0.01, 0.9, 5.0)) is keras.optimizers.SGD, "
        "kernels.uses_winograd(layer), kernels.enabled())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MRCNN_CPU_KERNELS", "MRCNN_WINOGRAD")}
    env.update(MRCNN_CPU_KERNELS="0", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-3:] == ["True", "False", "False"]


@pytest.mark.parametrize("old_name, sparse", [("WinogradConv2D", False), ("SparseGradientConv2D", True)])
def test_old_layer_class_names_still_load(old_name, sparse):
    """.keras files written before the kernels moved name the FPN/RPN convolutions by their old classes."""
    layer = Conv2D(8, 3, padding="same", activation="relu", name="fpn_p2")
    serialized = keras.layers.serialize(layer)
    serialized.update(class_name=old_name, registered_name=f"mrcnn>{old_name}")
    restored = keras.layers.deserialize(serialized)
    assert isinstance(restored, Conv2D) and restored.sparse_output_gradient is sparse
    assert (restored.name, restored.filters, restored.kernel_size) == ("fpn_p2", 8, (3, 3))
