"""Tests for mrcnn.backbone (BatchNorm, ResNet, FPN) and mrcnn.rpn on small inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_configs import Tiny64Config

from mrcnn.backbone import (
    BatchNorm,
    build_backbone,
    compute_backbone_shapes,
    conv_block,
    fpn_graph,
    identity_block,
    resnet_graph,
)
from mrcnn.config import Config
from mrcnn.rpn import build_rpn_model, rpn_graph

EPS = 1e-3  # BatchNormalization's default epsilon


def set_bn_stats(bn, gamma, beta, mean, var):
    for variable, value in zip(bn.weights, (gamma, beta, mean, var)):
        variable.assign(np.asarray(value, np.float32))


def bn_model(training):
    x = keras.Input(shape=(2,))
    bn = BatchNorm(name="bn")
    model = keras.Model(x, bn(x, training=training))
    set_bn_stats(bn, [2.0, 1.0], [0.5, -1.0], [1.0, 2.0], [4.0, 9.0])
    return model, bn


X = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, -3.0]], np.float32)
MOVING = 2.0 * (X - [1.0, 2.0]) / np.sqrt(np.array([4.0, 9.0]) + EPS) * [1.0, 0.5] + [0.5, -1.0]
BATCH = (X - X.mean(0)) / np.sqrt(X.var(0) + EPS) * [2.0, 1.0] + [0.5, -1.0]


def test_batchnorm_training_false_in_graph_stays_frozen_when_model_trains():
    model, bn = bn_model(training=False)
    np.testing.assert_allclose(np.asarray(model(X, training=True)), MOVING, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(X, training=False)), MOVING, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), [1.0, 2.0])  # not updated
    # The pin is part of the graph: it survives get_config / from_config.
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert isinstance(clone.get_layer("bn"), BatchNorm)
    np.testing.assert_allclose(np.asarray(clone(X, training=True)), MOVING, rtol=1e-5, atol=1e-6)


def test_batchnorm_training_true_in_graph_always_uses_batch_statistics():
    model, bn = bn_model(training=True)
    np.testing.assert_allclose(np.asarray(model(X, training=False)), BATCH, rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.asarray(bn.moving_mean), [1.0, 2.0])  # updated towards the batch mean


def test_batchnorm_training_none_follows_the_model():
    model, _ = bn_model(training=None)
    np.testing.assert_allclose(np.asarray(model(X, training=False)), MOVING, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model(X, training=True)), BATCH, rtol=1e-4, atol=1e-5)


def test_batchnorm_eager_call_forwards_training():
    bn = BatchNorm()
    bn.build((None, 2))
    set_bn_stats(bn, [2.0, 1.0], [0.5, -1.0], [1.0, 2.0], [4.0, 9.0])
    np.testing.assert_allclose(np.asarray(bn(X, training=False)), MOVING, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn(X, training=True)), BATCH, rtol=1e-4, atol=1e-5)
    assert bn.get_config()["name"] == bn.name


def test_identity_block_names_and_residual():
    x = keras.Input(shape=(4, 4, 8))
    model = keras.Model(x, identity_block(x, 3, [2, 3, 8], stage=3, block="b", train_bn=False))
    names = {layer.name for layer in model.layers}
    expected = {f"res3b_branch{b}" for b in ("2a", "2b", "2c")} | {
        f"bn3b_branch{b}" for b in ("2a", "2b", "2c")
    }
    assert expected | {"res3b_out", "res3b_add"} <= names and "res3b_branch1" not in names
    assert model.get_layer("res3b_branch2b").kernel.shape == (3, 3, 2, 3)
    assert model.output.shape == (None, 4, 4, 8)
    # With the last convolution zeroed (and fresh BN: mean 0, var 1, beta 0) the block is relu(x).
    for variable in model.get_layer("res3b_branch2c").weights:
        variable.assign(np.zeros(variable.shape, np.float32))
    data = np.random.default_rng(0).standard_normal((2, 4, 4, 8)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(data, training=True)), np.maximum(data, 0), atol=1e-6)


def test_conv_block_strides_first_1x1_and_shortcut():
    x = keras.Input(shape=(8, 8, 4))
    model = keras.Model(x, conv_block(x, 3, [2, 2, 6], stage=4, block="a"))
    assert model.output.shape == (None, 4, 4, 6)
    assert model.get_layer("res4a_branch2a").strides == (2, 2)
    assert model.get_layer("res4a_branch2b").strides == (1, 1)
    assert model.get_layer("res4a_branch2c").strides == (1, 1)
    assert model.get_layer("res4a_branch1").strides == (2, 2)
    assert isinstance(model.get_layer("bn4a_branch1"), BatchNorm)
    y = keras.Input(shape=(7, 7, 4))
    unit_stride = conv_block(y, 3, [2, 2, 6], stage=2, block="a", strides=(1, 1), use_bias=False)
    assert unit_stride.shape == (None, 7, 7, 6)


def test_resnet50_stage_shapes_and_layer_counts():
    image = keras.Input(shape=(64, 64, 3))
    stages = resnet_graph(image, "resnet50", stage5=True, train_bn=False)
    assert [tuple(c.shape) for c in stages] == [
        (None, 16, 16, 64),
        (None, 16, 16, 256),
        (None, 8, 8, 512),
        (None, 4, 4, 1024),
        (None, 2, 2, 2048),
    ]
    model = keras.Model(image, stages)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 1 + 3 * (3 + 4 + 6 + 3) + 4  # stem, 16 bottlenecks, 4 projection shortcuts
    names = {layer.name for layer in model.layers}
    assert {"conv1", "bn_conv1", "res4f_out", "res5c_out"} <= names and "res4g_branch2a" not in names
    assert model.get_layer("conv1").kernel.shape == (7, 7, 3, 64) and model.get_layer("conv1").use_bias


def test_resnet_without_stage5_and_unknown_architecture():
    image = keras.Input(shape=(64, 64, 3))
    stages = resnet_graph(image, "resnet50", stage5=False)
    assert stages[4] is None and stages[3].shape == (None, 4, 4, 1024)
    with pytest.raises(ValueError, match="resnet152.*resnet101"):
        resnet_graph(image, "resnet152")


class SmallConfig(Tiny64Config):
    NAME = "small"
    BACKBONE = "resnet50"


def test_compute_backbone_shapes_hand_computed():
    config = Config()
    np.testing.assert_array_equal(
        compute_backbone_shapes(config, (1024, 1024, 3)),
        [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]],
    )
    np.testing.assert_array_equal(
        compute_backbone_shapes(config, (100, 60)), [[25, 15], [13, 8], [7, 4], [4, 2], [2, 1]]
    )
    config.BACKBONE = "vgg16"
    with pytest.raises(ValueError, match="vgg16"):
        compute_backbone_shapes(config, (64, 64, 3))


def test_backbone_pyramid_matches_computed_shapes_and_frozen_bn():
    config = SmallConfig()
    image = keras.Input(shape=(None, None, 3))
    model = keras.Model(image, build_backbone(image, config))
    names = {layer.name for layer in model.layers}
    assert {f"fpn_p{i}" for i in range(2, 7)} <= names
    assert {"fpn_c5p5", "fpn_c4p4", "fpn_c3p3", "fpn_c2p2", "fpn_p5upsampled", "fpn_p2add"} <= names
    data = np.random.default_rng(1).uniform(-1, 1, (1, 128, 64, 3)).astype(np.float32)
    inference = model(data, training=False)
    expected = compute_backbone_shapes(config, data.shape[1:])
    assert [tuple(p.shape[1:3]) for p in inference] == [tuple(s) for s in expected]
    assert all(p.shape[-1] == config.TOP_DOWN_PYRAMID_SIZE for p in inference)
    # TRAIN_BN = False: BatchNorm uses moving statistics even when the model is trained.
    training = model(data, training=True)
    for a, b in zip(inference, training):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_fpn_top_down_hand_computed():
    rng = np.random.default_rng(2)
    sizes = {2: 16, 3: 8, 4: 4, 5: 2}
    inputs = {k: keras.Input(shape=(s, s, 1)) for k, s in sizes.items()}
    model = keras.Model(list(inputs.values()), fpn_graph(*inputs.values(), pyramid_size=1))
    for k in range(2, 6):  # laterals pass C through, 3x3 outputs are identities
        model.get_layer(f"fpn_c{k}p{k}").set_weights(
            [np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)]
        )
        center = np.zeros((3, 3, 1, 1), np.float32)
        center[1, 1] = 1.0
        model.get_layer(f"fpn_p{k}").set_weights([center, np.zeros(1, np.float32)])
    c = {k: rng.standard_normal((1, s, s, 1)).astype(np.float32) for k, s in sizes.items()}
    p2, p3, p4, p5, p6 = (np.asarray(t) for t in model([c[2], c[3], c[4], c[5]]))

    def up(a):
        return a.repeat(2, axis=1).repeat(2, axis=2)

    np.testing.assert_allclose(p5, c[5], atol=1e-6)
    np.testing.assert_allclose(p4, up(c[5]) + c[4], atol=1e-5)
    np.testing.assert_allclose(p3, up(p4) + c[3], atol=1e-5)
    np.testing.assert_allclose(p2, up(p3) + c[2], atol=1e-5)
    np.testing.assert_array_equal(p6, p5[:, ::2, ::2])


def tiny_backbone(calls):
    def backbone(input_image, stage5=False, train_bn=True):
        calls.append((stage5, train_bn))
        x = input_image
        stages = []
        for i, channels in enumerate((4, 8, 8, 16, 16)):
            x = keras.layers.Conv2D(channels, 3, strides=4 if i == 0 else 2, padding="same")(x)
            stages.append(x)
        return [stages[0], stages[0], stages[1], stages[2], stages[3]]

    return backbone


def test_callable_backbone_is_called_like_resnet_graph():
    calls = []

    class CustomConfig(SmallConfig):
        BACKBONE = tiny_backbone(calls)  # a plain function as class attribute: called unbound
        TOP_DOWN_PYRAMID_SIZE = 8
        TRAIN_BN = True

        @staticmethod
        def COMPUTE_BACKBONE_SHAPE(image_shape):
            return np.array([[image_shape[0] // s, image_shape[1] // s] for s in (4, 8, 16, 32, 64)])

    config = CustomConfig()
    image = keras.Input(shape=(64, 64, 3))
    pyramid = build_backbone(image, config)
    assert calls == [(True, None)]  # TRAIN_BN=True -> training=None: follows the model (see bn_training)
    assert [tuple(p.shape) for p in pyramid] == [(None, s, s, 8) for s in (16, 8, 4, 2, 1)]
    np.testing.assert_array_equal(compute_backbone_shapes(config, (64, 64, 3))[0], [16, 16])

    config.COMPUTE_BACKBONE_SHAPE = None
    with pytest.raises(ValueError, match="COMPUTE_BACKBONE_SHAPE"):
        compute_backbone_shapes(config, (64, 64, 3))
    config.BACKBONE = lambda input_image, stage5, train_bn: [input_image]
    with pytest.raises(ValueError, match=r"\[C1, C2, C3, C4, C5\]"):
        build_backbone(keras.Input(shape=(64, 64, 3)), config)


def test_rpn_outputs_follow_anchor_order():
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=3, depth=8)
    assert rpn.name == "rpn_model" and rpn.input.name == "input_rpn_feature_map"
    assert tuple(rpn.input.shape) == (None, None, None, 8)
    shapes = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in rpn.layers if layer.weights}
    assert shapes == {
        "rpn_conv_shared": [(3, 3, 8, 512), (512,)],
        "rpn_class_raw": [(1, 1, 512, 6), (6,)],
        "rpn_bbox_pred": [(1, 1, 512, 12), (12,)],
    }
    probe = keras.Model(
        rpn.input, [rpn.get_layer("rpn_class_raw").output, rpn.get_layer("rpn_bbox_pred").output]
    )
    fmap = np.random.default_rng(3).standard_normal((2, 4, 5, 8)).astype(np.float32)
    logits, probs, bbox = (np.asarray(t) for t in rpn(fmap))
    raw_class, raw_bbox = (np.asarray(t) for t in probe(fmap))
    assert logits.shape == (2, 4 * 5 * 3, 2) and probs.shape == (2, 60, 2) and bbox.shape == (2, 60, 4)
    # Anchor index = (y * width + x) * A + a.
    y, x, a = 2, 3, 1
    np.testing.assert_allclose(
        logits[1, (y * 5 + x) * 3 + a], raw_class[1, y, x, 2 * a : 2 * a + 2], rtol=1e-6
    )
    np.testing.assert_allclose(bbox[0, (y * 5 + x) * 3 + a], raw_bbox[0, y, x, 4 * a : 4 * a + 4], rtol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), rtol=1e-4)
    assert any(layer.name == "rpn_class_xxx" for layer in rpn.layers)


def test_rpn_anchor_stride_and_sharing_across_levels():
    p_big, p_small = keras.Input(shape=(8, 8, 4)), keras.Input(shape=(4, 4, 4))
    logits, _, bbox = rpn_graph(p_big, anchors_per_location=2, anchor_stride=2)
    assert logits.shape == (None, 4 * 4 * 2, 2) and bbox.shape == (None, 32, 4)
    rpn = build_rpn_model(anchor_stride=1, anchors_per_location=2, depth=4)
    model = keras.Model([p_big, p_small], [rpn(p_big)[0], rpn(p_small)[0]])
    assert [o.shape for o in model.outputs] == [(None, 128, 2), (None, 32, 2)]
    assert len(model.weights) == 6  # one set of RPN weights serves every level


@pytest.mark.parametrize("shape", [(4, 8, 8, 16), (2, 3, 5, 5, 16)])
def test_batchnorm_fused_training_path_matches_keras(shape):
    # Batch statistics run through TensorFlow's fused kernel; outputs, gradients and the moving averages
    # must equal Keras' own BatchNormalization (biased variance, same momentum), also for [B, R, h, w, C].

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype(np.float32))
    ours, reference = BatchNorm(momentum=0.9), keras.layers.BatchNormalization(momentum=0.9)
    weights = [
        rng.normal(size=16).astype(np.float32),
        rng.normal(size=16).astype(np.float32),
        rng.normal(size=16).astype(np.float32),
        rng.uniform(0.5, 2.0, 16).astype(np.float32),
    ]
    for layer in (ours, reference):
        layer.build(shape)
        layer.set_weights(weights)
    grads = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y**3)
        gradients = tape.gradient(loss, [x] + layer.trainable_weights)
        grads.append([np.asarray(g) for g in gradients] + [y.numpy()])
    for got, want in zip(*grads):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
    for got, want in zip(ours.get_weights()[2:], reference.get_weights()[2:]):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(ours.get_weights()[2], weights[2])  # the moving mean did move
