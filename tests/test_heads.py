"""Classifier and mask heads: shapes, Matterport layer names and weight shapes, per-RoI convolutions."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from shared_paths import LAYOUT_JSON

from mrcnn.heads import RoiConv2D, RoiConv2DTranspose, build_fpn_mask_graph, fpn_classifier_graph

LAYOUT = str(LAYOUT_JSON)


def head_inputs(num_rois, num_classes, depth, image_side=64):
    rois = keras.Input((num_rois, 4), name="rois")
    meta = keras.Input((12 + num_classes,), name="meta")
    maps = [
        keras.Input((image_side // s, image_side // s, depth), name=f"p{i}")
        for i, s in zip(range(2, 6), (4, 8, 16, 32))
    ]
    return rois, meta, maps


def build_heads(num_rois, num_classes, depth, fc, train_bn=False):
    rois, meta, maps = head_inputs(num_rois, num_classes, depth)
    logits, probs, bbox = fpn_classifier_graph(
        rois, maps, meta, 7, num_classes, train_bn=train_bn, fc_layers_size=fc
    )
    masks = build_fpn_mask_graph(rois, maps, meta, 14, num_classes, train_bn=train_bn)
    return keras.Model([rois, meta] + maps, [logits, probs, bbox, masks])


def random_head_inputs(rng, batch, num_rois, num_classes, depth):
    centers = rng.uniform(0.2, 0.8, (batch, num_rois, 2))
    sizes = rng.uniform(0.05, 0.5, (batch, num_rois, 2))
    rois = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=-1).astype(np.float32)
    meta = np.zeros((batch, 12 + num_classes), np.float32)
    meta[:, 4:7] = [64, 64, 3]
    maps = [rng.normal(size=(batch, 64 // s, 64 // s, depth)).astype(np.float32) for s in (4, 8, 16, 32)]
    return [rois, meta] + maps


def test_small_heads_shapes_and_values():
    model = build_heads(num_rois=5, num_classes=3, depth=8, fc=16)
    logits, probs, bbox, masks = model.outputs
    assert tuple(logits.shape) == (None, 5, 3) and tuple(probs.shape) == (None, 5, 3)
    assert tuple(bbox.shape) == (None, 5, 3, 4)
    assert tuple(masks.shape) == (None, 5, 28, 28, 3)
    assert model.get_layer("mrcnn_mask").output is masks  # Matterport's name gives the [B, R, ...] tensor

    inputs = random_head_inputs(np.random.default_rng(0), batch=2, num_rois=5, num_classes=3, depth=8)
    logits, probs, bbox, masks = [np.asarray(t) for t in model(inputs)]
    assert masks.shape == (2, 5, 28, 28, 3) and bbox.shape == (2, 5, 3, 4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), atol=1e-5)
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    # mrcnn_bbox is the bbox_fc output reshaped [B, R, 4N] -> [B, R, N, 4].
    fc_model = keras.Model(model.inputs, model.get_layer("mrcnn_bbox_fc").output)
    np.testing.assert_allclose(np.asarray(fc_model(inputs)).reshape(2, 5, 3, 4), bbox, atol=1e-6)


def test_frozen_batchnorm_ignores_training_flag():
    model = build_heads(num_rois=4, num_classes=2, depth=4, fc=8, train_bn=False)
    inputs = random_head_inputs(np.random.default_rng(1), batch=2, num_rois=4, num_classes=2, depth=4)
    for frozen, free in zip(model(inputs, training=False), model(inputs, training=True)):
        np.testing.assert_allclose(np.asarray(frozen), np.asarray(free), atol=1e-6)


@pytest.mark.skipif(not os.path.exists(LAYOUT), reason="needs the weight layout spec " + LAYOUT)
def test_layer_names_and_weight_shapes_match_matterport_coco():
    with open(LAYOUT) as f:
        layout = [layer for layer in json.load(f)["layers"] if layer["name"].startswith("mrcnn_")]
    assert len(layout) == 16
    model = build_heads(num_rois=3, num_classes=81, depth=256, fc=1024)
    owning = {layer.name for layer in model.layers if layer.weights}
    assert owning == {layer["name"] for layer in layout}
    for spec in layout:
        layer = model.get_layer(spec["name"])
        got = [(f"{layer.name}/{w.name}:0", list(w.shape)) for w in layer.weights]
        want = [(w["name"], w["shape"]) for w in spec["weights"]]
        assert got == want, spec["name"]
    assert model.get_layer("roi_align_classifier").pool_shape == (7, 7)
    assert model.get_layer("roi_align_mask").pool_shape == (14, 14)


def test_per_roi_convolutions_equal_plain_layers_on_each_roi():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 5, 5, 4)).astype(np.float32)
    for roi_layer, plain_class in [
        (RoiConv2D(6, (3, 3), padding="valid"), keras.layers.Conv2D),
        (RoiConv2DTranspose(6, (2, 2), strides=2), keras.layers.Conv2DTranspose),
    ]:
        out = np.asarray(roi_layer(x))
        plain = plain_class.from_config(roi_layer.get_config())
        plain.build((None, 5, 5, 4))
        plain.set_weights(roi_layer.get_weights())
        expected = np.stack([np.asarray(plain(x[b])) for b in range(2)])
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert roi_layer.compute_output_shape((None, 3, 5, 5, 4)) == (None, 3) + expected.shape[2:]


def test_roi_layers_get_config_round_trip():
    for layer in (
        RoiConv2D(8, (3, 3), padding="same", name="mrcnn_mask_conv1"),
        RoiConv2DTranspose(8, (2, 2), strides=2, activation="relu", name="mrcnn_mask_deconv"),
    ):
        clone = layer.__class__.from_config(layer.get_config())
        assert type(clone) is type(layer) and clone.name == layer.name
        assert clone.get_config() == layer.get_config()


def test_bad_head_inputs_raise():
    rois, meta, maps = head_inputs(3, 2, 4)
    with pytest.raises(ValueError, match="P2, P3, P4, P5"):
        fpn_classifier_graph(rois, maps[:3], meta, 7, 2)
    with pytest.raises(ValueError, match="rois"):
        build_fpn_mask_graph(meta, maps, meta, 14, 2)


def test_head_model_config_round_trip_keeps_outputs():
    model = build_heads(num_rois=4, num_classes=3, depth=8, fc=16)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    inputs = random_head_inputs(np.random.default_rng(3), batch=2, num_rois=4, num_classes=3, depth=8)
    for original, rebuilt in zip(model(inputs), clone(inputs)):
        np.testing.assert_array_equal(np.asarray(original), np.asarray(rebuilt))


@pytest.mark.parametrize("kernel, activation", [((7, 7), "relu"), ((1, 1), None)])
def test_roi_conv_covering_its_input_is_a_matmul_equal_to_the_convolution(kernel, activation):
    # A valid window that covers each RoI (the box head's 7x7 on 7x7, then 1x1 on 1x1) runs as a matmul.
    x = np.random.default_rng(3).normal(size=(2, 3, kernel[0], kernel[1], 16)).astype(np.float32)
    layer = RoiConv2D(8, kernel, padding="valid", activation=activation)
    out = np.asarray(layer(x))
    reference = keras.layers.Conv2D(8, kernel, padding="valid", activation=activation)
    reference.build((None,) + x.shape[2:])
    reference.set_weights(layer.get_weights())
    expected = np.asarray(reference(x.reshape((6,) + x.shape[2:]))).reshape(2, 3, 1, 1, 8)
    assert out.shape == (2, 3, 1, 1, 8)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    # Gradients flow to the input and to both weights.
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        loss = tf.reduce_sum(layer(xv) ** 2)
    grads = tape.gradient(loss, [xv] + layer.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(np.asarray(g))) for g in grads)
