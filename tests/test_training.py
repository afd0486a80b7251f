"""Training end to end on tiny synthetic shapes: losses, checkpoints, resume, layer presets, evaluation."""

import math
import os

import keras
import numpy as np
import pytest
from tiny_configs import TinyShapesTrainConfig

import mrcnn.model as modellib
from mrcnn.evaluate import evaluate_map
from mrcnn.training import LOSS_NAMES, StopOnNonFiniteLoss
from samples.shapes.shapes import ShapesDataset


class TinyTrainConfig(TinyShapesTrainConfig):
    """TinyShapesTrainConfig with wider heads: the training checks here were written for these widths."""

    NAME = "tinyshapes"
    TOP_DOWN_PYRAMID_SIZE = 64  # ShapesFastConfig's
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    FPN_MASK_CONV_LAYERS_SIZE = 64  # ShapesFastConfig's


def shapes(count, seed):
    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=seed)
    dataset.prepare()
    return dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("training", TinyTrainConfig(), str(logs))
    history, traces = [], []
    train_step = model.keras_model.train_step

    def counting_train_step(data):  # runs in Python only while tf.function traces the step
        traces.append(1)
        return train_step(data)

    model.keras_model.train_step = counting_train_step

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            history.append(dict(logs))

    model.train(
        shapes(8, 0),
        shapes(4, 1),
        learning_rate=0.01,
        epochs=2,
        layers="all",
        custom_callbacks=[Record()],
        workers=1,
        verbose=0,
    )
    return model, history, logs, len(traces)


def test_training_reports_all_losses_and_writes_checkpoints(trained):
    model, history, _, _ = trained
    assert len(history) == 2
    for logs in history:
        for name in ("loss",) + LOSS_NAMES:
            assert math.isfinite(logs[name]), name
            assert math.isfinite(logs["val_" + name]), name
    assert model.epoch == 2
    files = sorted(os.listdir(model.log_dir))
    assert "mask_rcnn_tinyshapes_0001.h5" in files and "mask_rcnn_tinyshapes_0002.h5" in files
    assert not [f for f in files if ".tmp" in f], "no temporary checkpoint may remain"
    assert any(f.startswith("events") or os.path.isdir(os.path.join(model.log_dir, f)) for f in files)


def test_train_step_is_traced_once(trained):
    # The optimizer is built at compile time: built inside the first step's trace, its variables would
    # make tf.function trace the whole training step a second time (seconds for a ResNet-50).
    model, _, _, traces = trained
    assert model.keras_model.optimizer.built
    assert traces == 1


def test_resume_continues_from_last_checkpoint(trained):
    model, _, logs, _ = trained
    resumed = modellib.MaskRCNN("training", TinyTrainConfig(), str(logs))
    last = resumed.find_last()
    assert last.endswith("mask_rcnn_tinyshapes_0002.h5")
    resumed.load_weights(last, by_name=True)
    assert resumed.epoch == 2 and resumed.log_dir == model.log_dir
    np.testing.assert_array_equal(
        resumed.keras_model.get_layer("mrcnn_class_logits").get_weights()[0],
        model.keras_model.get_layer("mrcnn_class_logits").get_weights()[0],
    )
    resumed.train(
        shapes(8, 0), shapes(4, 1), learning_rate=0.01, epochs=3, layers="heads", workers=1, verbose=0
    )
    assert resumed.epoch == 3
    assert resumed.find_last().endswith("mask_rcnn_tinyshapes_0003.h5")


def test_layer_presets_select_the_right_layers(tmp_path):
    model = modellib.MaskRCNN("training", TinyTrainConfig(), str(tmp_path))
    model.set_trainable(modellib.LAYER_PRESETS["heads"], verbose=0)
    trainable = {layer.name for layer in model.keras_model.layers if layer.weights and layer.trainable}
    assert "mrcnn_mask" in trainable and "fpn_p2" in trainable and "rpn_model" in trainable
    assert "small_c2a" not in trainable
    model.set_trainable(modellib.LAYER_PRESETS["all"], verbose=0)
    assert all(layer.trainable for layer in model.keras_model.layers if layer.weights)


def test_train_requires_training_mode(tmp_path):
    model = modellib.MaskRCNN("inference", TinyTrainConfig(), str(tmp_path))
    with pytest.raises(ValueError, match="training mode"):
        model.train(shapes(2, 0), shapes(2, 1), 0.01, 1, "all")


def test_non_finite_loss_stops_with_its_name():
    callback = StopOnNonFiniteLoss()
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    callback.on_train_batch_end(0, {"loss": 1.0, "rpn_class_loss": 0.5})
    with pytest.raises(FloatingPointError, match="mrcnn_mask_loss"):
        callback.on_train_batch_end(1, {"loss": 1.0, "mrcnn_mask_loss": float("nan")})


def test_evaluate_map_on_trained_weights(trained, tmp_path):
    model, _, _, _ = trained
    inference = modellib.MaskRCNN("inference", TinyTrainConfig(), str(tmp_path))
    inference.load_weights(model.find_last(), by_name=True)
    result = evaluate_map(inference, shapes(3, 5), verbose=0)
    assert result["images"] == 3
    assert 0.0 <= result["mAP@[.5:.95]"] <= result["mAP@0.5"] <= 1.0
    assert len(result["per_threshold"]) == 10
