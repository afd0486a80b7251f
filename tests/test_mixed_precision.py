"""Config.MIXED_PRECISION: half-precision convolutions with float32 variables, boxes, NMS and losses."""

import math

import keras
import numpy as np
import pytest
from tiny_configs import TinyShapesConfig, config_with

import mrcnn.model as modellib
from mrcnn.training import LOSS_NAMES
from samples.shapes.shapes import ShapesDataset


def tiny_config(policy, **overrides):
    attributes = dict(
        NAME="mixed",
        MIXED_PRECISION=policy,
        IMAGES_PER_GPU=2,
        STEPS_PER_EPOCH=1,
        VALIDATION_STEPS=1,
        TRAIN_ROIS_PER_IMAGE=8,
        POST_NMS_ROIS_TRAINING=32,
        POST_NMS_ROIS_INFERENCE=16,
        RPN_TRAIN_ANCHORS_PER_IMAGE=32,
        DETECTION_MIN_CONFIDENCE=0.0,
    )
    attributes.update(overrides)
    return config_with(TinyShapesConfig, "MixedConfig", **attributes)


def shapes(count, seed):
    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=seed)
    dataset.prepare()
    return dataset


def float32_layers(model):
    """Names of the layers that must compute in float32 under a mixed policy."""
    return [
        "anchors",
        "norm_gt_boxes",
        "ROI",
        "proposal_targets",
        "positive_rois",
        "rpn_class_logits",
        "rpn_class",
        "rpn_bbox",
        "mrcnn_class_logits",
        "mrcnn_class",
        "mrcnn_bbox_fc",
        "mrcnn_bbox",
        "mrcnn_mask",
    ] + list(LOSS_NAMES)


@pytest.fixture(scope="module")
def trained_bf16(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("training", tiny_config("mixed_bfloat16"), str(logs))
    history = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            history.append(dict(logs))

    model.train(
        shapes(4, 0),
        shapes(2, 1),
        learning_rate=0.01,
        epochs=1,
        layers="all",
        custom_callbacks=[Record()],
        workers=1,
        verbose=0,
    )
    return model, history


def test_bfloat16_graph_keeps_float32_variables_and_box_layers(trained_bf16):
    model, _ = trained_bf16
    # The policy applied to this model's build only.
    assert keras.config.dtype_policy().name == "float32"
    kmodel = model.keras_model
    convs = [
        layer
        for layer in kmodel.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.name not in float32_layers(kmodel)
    ]
    assert len(convs) > 10
    for layer in convs:
        assert layer.compute_dtype == "bfloat16", layer.name
        assert layer.kernel.dtype == "float32", layer.name
    for name in float32_layers(kmodel):
        assert kmodel.get_layer(name).compute_dtype == "float32", name
    assert kmodel.get_layer("roi_align_classifier").compute_dtype == "bfloat16"
    rpn = kmodel.get_layer("rpn_model")
    assert rpn.get_layer("rpn_conv_shared").compute_dtype == "bfloat16"
    assert rpn.get_layer("rpn_bbox_pred").compute_dtype == "float32"
    # Another model built afterwards without MIXED_PRECISION is plain float32.
    plain = modellib.MaskRCNN("inference", tiny_config(None), model.model_dir)
    assert {layer.compute_dtype for layer in plain.keras_model.layers if layer.weights} == {"float32"}
    # The checkpoint holds float32 variables: it loads, strictly, into the float32 model.
    report = plain.load_weights(model.find_last(), by_name=False)
    assert report["missing"] == [] and report["unused"] == []
    np.testing.assert_array_equal(
        plain.keras_model.get_layer("mrcnn_class_logits").get_weights()[0],
        kmodel.get_layer("mrcnn_class_logits").get_weights()[0],
    )


def test_bfloat16_step_has_finite_losses(trained_bf16):
    model, history = trained_bf16
    assert len(history) == 1
    for name in ("loss",) + LOSS_NAMES:
        assert math.isfinite(history[0][name]), name
        assert math.isfinite(history[0]["val_" + name]), name
    assert history[0]["rpn_class_loss"] > 0


def test_bfloat16_detect_returns_float32_outputs(trained_bf16, tmp_path):
    model, _ = trained_bf16
    inference = modellib.MaskRCNN("inference", tiny_config("mixed_bfloat16"), str(tmp_path))
    inference.load_weights(model.find_last(), by_name=True)
    image = shapes(1, 7).load_image(0)
    molded, metas, _ = inference.mold_inputs([image])
    anchors = inference.get_anchors(molded[0].shape)[np.newaxis]
    outputs = inference.detector.run(molded, metas, anchors)
    names = ["detections", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "rpn_rois", "rpn_class", "rpn_bbox"]
    for name, value in zip(names, outputs):
        assert value.dtype == np.float32, name
        assert np.all(np.isfinite(value)), name
    # DETECTION_MIN_CONFIDENCE is 0: some detections survive even after one training step.
    result = inference.detect([image])[0]
    assert len(result["class_ids"]) > 0
    assert result["rois"].dtype == np.int32 and result["scores"].dtype == np.float32
    assert result["masks"].dtype == bool and result["masks"].shape[:2] == image.shape[:2]
    assert np.all((result["rois"][:, :2] >= 0) & (result["rois"][:, 2:] <= 64))


def test_float16_uses_loss_scaling(tmp_path):
    model = modellib.MaskRCNN("training", tiny_config("mixed_float16"), str(tmp_path))
    model.compile(learning_rate=0.01, momentum=0.9)
    optimizer = model.keras_model.optimizer
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert optimizer.inner_optimizer.clipnorm == model.config.GRADIENT_CLIP_NORM
    assert model.keras_model.get_layer("fpn_p2").compute_dtype == "float16"
    assert model.keras_model.get_layer("mrcnn_class_logits").compute_dtype == "float32"
