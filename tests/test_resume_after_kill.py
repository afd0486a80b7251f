"""A training process killed with SIGKILL mid-epoch resumes from its last complete checkpoint.

The child process signals (with a marker file) that it is inside epoch 3, batch 2 — two checkpoints are
complete — and is killed there. find_last() must give checkpoint 2 (never a partial file), loading it
must continue at epoch 2 with exactly that file's weights, and training on writes checkpoint 3 only.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import keras
import numpy as np
from test_training import TinyTrainConfig, shapes

import mrcnn.model as modellib
from mrcnn.weights import load_weights_hdf5, save_weights_hdf5

ROOT = Path(__file__).resolve().parents[1]

TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {tests!r})
    import keras
    from test_training import TinyTrainConfig, shapes
    import mrcnn.model as modellib

    class MarkMidEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 2 and batch == 1:
                open({marker!r}, "w").close()
                time.sleep(600)  # killed here, in the middle of epoch 3

    config = TinyTrainConfig()
    model = modellib.MaskRCNN("training", config, {logs!r})
    model.train(shapes(8, 0), shapes(4, 1), learning_rate=0.01, epochs=1000, layers="all", workers=1,
                verbose=0, custom_callbacks=[MarkMidEpoch()])
""")


def checkpoints(logs):
    found = []
    for run in sorted(os.listdir(logs)):
        found += sorted(str(Path(logs) / run / f) for f in os.listdir(Path(logs) / run) if f.endswith(".h5"))
    return found


def datasets(path):
    """Every dataset of an HDF5 weights file: {path inside the file: array}."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return arrays


def test_sigkill_mid_epoch_then_resume(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    marker = tmp_path / "inside_epoch_3"
    script = TRAIN_SCRIPT.format(
        root=str(ROOT), tests=str(ROOT / "tests"), logs=str(logs), marker=str(marker)
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "epoch 3 not reached within 300 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    files = checkpoints(logs)
    assert [Path(f).name for f in files] == ["mask_rcnn_tinyshapes_0001.h5", "mask_rcnn_tinyshapes_0002.h5"]
    # A checkpoint being written when a process dies is a temporary file that find_last ignores.
    (Path(files[-1]).parent / "mask_rcnn_tinyshapes_0003.h5.tmp-12345").write_bytes(b"partial")
    model = modellib.MaskRCNN("training", TinyTrainConfig(), str(logs))
    last = model.find_last()
    assert last == files[-1]
    for path in files:  # every checkpoint on disk is complete
        assert h5py.is_hdf5(path) and load_weights_hdf5(model.keras_model, path)["missing"] == []
    model.load_weights(last, by_name=True)
    assert model.epoch == 2 and Path(model.log_dir) == Path(last).parent

    # The resumed weights are exactly the last complete checkpoint's: every array of the file.
    resaved = tmp_path / "resumed.h5"
    save_weights_hdf5(model.keras_model, resaved)
    stored, resumed = datasets(last), datasets(resaved)
    assert set(stored) == set(resumed) and len(stored) > 50
    for name, array in stored.items():
        np.testing.assert_array_equal(resumed[name], array, err_msg=name)

    epochs_run = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_run.append(epoch)

    keras.utils.set_random_seed(1)
    model.train(
        shapes(8, 0),
        shapes(4, 1),
        learning_rate=0.01,
        epochs=3,
        layers="all",
        workers=1,
        verbose=0,
        custom_callbacks=[Record()],
    )
    assert epochs_run == [2] and model.epoch == 3
    assert model.find_last() == str(Path(last).parent / "mask_rcnn_tinyshapes_0003.h5")
    assert [Path(f).name for f in checkpoints(logs)] == [
        "mask_rcnn_tinyshapes_0001.h5",
        "mask_rcnn_tinyshapes_0002.h5",
        "mask_rcnn_tinyshapes_0003.h5",
    ]
