"""Faults during training: failing images in input workers, a full disk while checkpointing, leftovers.

(A training process killed with SIGKILL is tests/test_resume_after_kill.py.)
"""

import contextlib
import errno
import logging
import os
import re
import signal

import h5py
import keras
import numpy as np
import pytest
from tiny_configs import TinyShapesTrainConfig

import mrcnn.model as modellib
from mrcnn import data
from mrcnn.datasets.shapes import ShapesDataset
from mrcnn.weights import load_weights_hdf5, save_weights_hdf5


class FaultConfig(TinyShapesTrainConfig):
    NAME = "faults"  # checkpoint files are mask_rcnn_faults_*.h5


class BrokenShapes(ShapesDataset):
    """Shapes whose image ids in ``broken`` raise OSError from load_mask (a corrupt annotation)."""

    broken = ()

    def load_mask(self, image_id):
        if image_id in self.broken:
            raise OSError(f"corrupt annotation file for image {image_id}")
        return super().load_mask(image_id)


def shapes(count, seed, broken=()):
    dataset = type("Broken", (BrokenShapes,), {"broken": tuple(broken)})()
    dataset.load_shapes(count, 64, 64, seed=seed)
    dataset.prepare()
    return dataset


@contextlib.contextmanager
def deadline(seconds):
    """Fail with TimeoutError instead of hanging when the block runs longer than ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the input pipeline hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def training_model(tmp_path_factory):
    keras.utils.set_random_seed(0)
    return modellib.MaskRCNN("training", FaultConfig(), str(tmp_path_factory.mktemp("logs")))


############################################################
#  Input pipeline workers
############################################################


def test_sequence_worker_failures_surface_through_keras_without_hanging(caplog):
    """Failing images in PyDataset worker threads are logged by id; all failing ends the epoch loop."""
    config = FaultConfig()
    specs = {
        "input_image": ((64, 64, 3), "float32"),
        "input_image_meta": ((16,), "float32"),
        "input_rpn_match": ((None, 1), "int32"),
        "input_rpn_bbox": ((None, 4), "float32"),
        "input_gt_class_ids": ((None,), "int32"),
        "input_gt_boxes": ((None, 4), "int32"),
        "input_gt_masks": ((56, 56, None), "bool"),
    }
    inputs = [keras.Input(shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in specs.items()]
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs[0]))
    expected = np.concatenate(
        [
            batch[0][0].mean(axis=(1, 2))
            for batch in data.MaskRCNNSequence(
                shapes(8, 0, broken=(2, 5)), config, shuffle=False, seed=0, steps=4
            )
        ]
    )
    caplog.clear()
    with deadline(60), caplog.at_level(logging.WARNING, logger="mrcnn.data"):
        keras_batches = data.MaskRCNNSequence(
            shapes(8, 0, broken=(2, 5)), config, shuffle=False, seed=0, steps=4, workers=2
        )
        predicted = model.predict(keras_batches, verbose=0)
    assert predicted.shape == (8, 3)
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-4)
    # The worker threads load images 2 and 5 in either order: the first failure is logged with its
    # traceback, the epoch ends with one line counting both.
    first = [r for r in caplog.records if r.getMessage().startswith("Error loading image")]
    assert len(first) == 1 and first[0].exc_info is not None
    assert re.match(
        r"Error loading image ([25]): OSError: corrupt annotation file for image \1; skip",
        first[0].getMessage(),
    )
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipped")]
    # 2 failures, or 3 when Keras reads a batch twice (e.g. while it infers the batch signature).
    assert len(summary) == 1 and re.match(
        r"Skipped [23] images this epoch because loading raised", summary[0]
    )
    assert "first error: image " in summary[0] and "OSError: corrupt annotation file" in summary[0]

    all_broken = data.MaskRCNNSequence(shapes(8, 0, broken=range(8)), config, seed=0, steps=4, workers=2)
    with (
        deadline(60),
        pytest.raises(
            RuntimeError,
            # Two worker threads: one batch's fifth failure in a row, or the epoch's ninth, stops it first.
            match=r"5 consecutive images failed to load \(image ids \[\d, \d, \d, \d, \d\]\); last error: "
            r"OSError: corrupt annotation file for image \d|Most images of this epoch failed to load: "
            r"9 failed while the epoch needs 8\. First error: image \d: OSError: corrupt annotation file",
        ),
    ):
        model.predict(all_broken, verbose=0)


def test_train_stops_with_a_clear_error_when_images_keep_failing(training_model):
    with (
        deadline(120),
        pytest.raises(
            RuntimeError,
            match=r"Most images of this epoch failed to load: 5 failed while the epoch needs 4\. "
            r"First error: image \d: OSError: corrupt annotation file for image \d\. "
            r"Fix the dataset's load_image / load_mask",
        ),
    ):
        training_model.train(
            shapes(8, 0, broken=range(8)),
            shapes(4, 1),
            learning_rate=0.01,
            epochs=1,
            layers="heads",
            workers=2,
            verbose=0,
        )


############################################################
#  Full disk while checkpointing
############################################################


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["h5py_write", "fsync", "os_replace"])
def test_full_disk_keeps_previous_weights_file_and_leaves_no_temp_file(tmp_path, monkeypatch, where):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    path = tmp_path / "mask_rcnn_faults_0001.h5"
    save_weights_hdf5(model, path)
    previous = path.read_bytes()
    model.get_layer("dense").set_weights([np.ones((3, 2)), np.ones(2)])
    target = {
        "h5py_write": (h5py.Group, "create_dataset"),
        "fsync": (os, "fsync"),
        "os_replace": (os, "replace"),
    }[where]
    monkeypatch.setattr(*target, _disk_full)
    message = (
        r"Could not write weights to .*mask_rcnn_faults_0001\.h5: No space left on device .* the "
        r"previous file at that path \(if any\) is unchanged"
    )
    with pytest.raises(OSError, match=message) as info:
        save_weights_hdf5(model, path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["mask_rcnn_faults_0001.h5"]
    load_weights_hdf5(model, path)
    np.testing.assert_array_equal(model.get_layer("dense").weights[1].numpy(), [0, 0])


def test_train_with_a_failing_image_then_full_disk_at_checkpoint(training_model, monkeypatch, caplog):
    """One epoch with a corrupt training image (logged by id, skipped) whose checkpoint hits ENOSPC:
    fit stops with an error naming the checkpoint, epoch 1's checkpoint stays the one find_last() gives."""
    model = training_model
    model.set_log_dir()
    os.makedirs(model.log_dir, exist_ok=True)
    first = os.path.join(model.log_dir, "mask_rcnn_faults_0001.h5")
    model.save_weights(first)
    model.load_weights(first, by_name=True)  # resume: epoch 1, same log directory
    assert model.epoch == 1
    previous = open(first, "rb").read()

    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("_0002.h5"):
            _disk_full()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    message = r"Could not write weights to .*mask_rcnn_faults_0002\.h5: No space"
    with (
        deadline(300),
        caplog.at_level(logging.WARNING, logger="mrcnn.data"),
        pytest.raises(OSError, match=message) as info,
    ):
        # 2 steps x 2 images visit every position of the 4-image epoch order, so image 3 is loaded.
        model.train(
            shapes(4, 0, broken=(3,)),
            shapes(4, 1),
            learning_rate=0.01,
            epochs=2,
            layers="heads",
            workers=2,
            verbose=0,
        )
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert "Error loading image 3: OSError: corrupt annotation file for image 3; skipping it." in caplog.text
    assert "first error: image 3: OSError: corrupt annotation file for image 3" in caplog.text
    assert open(first, "rb").read() == previous
    assert sorted(
        f for f in os.listdir(model.log_dir) if not os.path.isdir(os.path.join(model.log_dir, f))
    ) == ["mask_rcnn_faults_0001.h5"]
    assert model.find_last() == first


def test_find_last_ignores_partial_checkpoints(tmp_path):
    """A .tmp-<pid> file left by a killed writer is never a candidate, even when it is newer."""
    run = tmp_path / "faults20260101T0000"
    run.mkdir()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    save_weights_hdf5(model, run / "mask_rcnn_faults_0001.h5")
    (run / "mask_rcnn_faults_0002.h5.tmp-4242").write_bytes(b"\x89HDF\r\n\x1a\n partial")
    maskrcnn = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    maskrcnn.config, maskrcnn.model_dir = FaultConfig(), str(tmp_path)
    assert maskrcnn.find_last() == str(run / "mask_rcnn_faults_0001.h5")
