"""tf.distribute training: two logical CPU devices match one device; two TF_CONFIG workers train.

Both tests run their TensorFlow work in subprocesses (this file run as a script): logical devices and
MultiWorkerMirroredStrategy must be configured before TensorFlow initializes its devices.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(images_per_gpu, **overrides):
    """A 64-px shapes config with the small backbone and trained BatchNorm (batch statistics, synchronized
    across replicas), fed random RoIs (USE_RPN_ROIS False) with ROI_POSITIVE_RATIO 1 and as many target
    RoIs as input RoIs, so that the RoI sampler keeps every positive and its random choice cannot differ
    between the runs compared."""
    from tiny_configs import TinyShapesConfig, config_with

    attributes = dict(
        NAME="dist",
        IMAGES_PER_GPU=images_per_gpu,
        TRAIN_BN=True,
        USE_RPN_ROIS=False,
        POST_NMS_ROIS_TRAINING=12,
        TRAIN_ROIS_PER_IMAGE=12,
        ROI_POSITIVE_RATIO=1.0,
        RPN_TRAIN_ANCHORS_PER_IMAGE=32,
        STEPS_PER_EPOCH=2,
        VALIDATION_STEPS=1,
        GRADIENT_CLIP_NORM=0.05,
        WEIGHT_DECAY=0.001,
    )
    attributes.update(overrides)
    return config_with(TinyShapesConfig, "DistConfig", **attributes)


def shapes(count, seed):
    from samples.shapes.shapes import ShapesDataset

    dataset = ShapesDataset()
    dataset.load_shapes(count, 64, 64, seed=seed)
    dataset.prepare()
    return dataset


def one_step(model, batch):
    """Fit one step of SGD on ``batch``; returns (logs, weight change per variable)."""
    import keras

    model.compile(learning_rate=0.5, momentum=0.9)
    model.set_trainable(".*", verbose=0)
    before = [w.numpy() for w in model.keras_model.trainable_weights]

    class OneBatch(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return batch

    history = model.keras_model.fit(OneBatch(), epochs=1, verbose=0)
    after = [w.numpy() for w in model.keras_model.trainable_weights]
    logs = {name: values[-1] for name, values in history.history.items()}
    return logs, [b - a for a, b in zip(before, after)]


def run_two_devices(out):
    """One single-device step and one MirroredStrategy step over 2 logical CPUs, same global batch."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    # Deterministic kernels: otherwise multi-threaded reductions make two single-device runs differ.
    tf.config.experimental.enable_op_determinism()
    import keras

    import mrcnn.model as modellib
    from mrcnn.data import MaskRCNNSequence

    keras.utils.set_random_seed(0)
    single = modellib.MaskRCNN("training", tiny_config(2), str(out))
    initial = single.keras_model.get_weights()
    # Both halves of this batch hold positive RoIs (2 and 1): a replica without any would add one ignored
    # row to the mask head's synchronized BatchNorm statistics (see PositiveRoiPack).
    batch = MaskRCNNSequence(shapes(4, 4), tiny_config(2), shuffle=False, random_rois=12, seed=2)[0]
    single_logs, single_delta = one_step(single, batch)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored = modellib.MaskRCNN("training", tiny_config(1), str(out), strategy=strategy)
    mirrored.keras_model.set_weights(initial)
    mirrored_logs, mirrored_delta = one_step(mirrored, batch)
    variables = mirrored.keras_model.trainable_weights
    synchronized = {
        model: {
            layer.synchronized
            for layer in m.keras_model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        }
        for model, m in (("single", single), ("mirrored", mirrored))
    }
    result = {
        "synchronized": {model: sorted(values) for model, values in synchronized.items()},
        "replicas": strategy.num_replicas_in_sync,
        "mirrored": type(variables[0].value).__name__,
        "single_logs": {k: float(v) for k, v in single_logs.items()},
        "mirrored_logs": {k: float(v) for k, v in mirrored_logs.items()},
    }
    np.savez(out / "deltas.npz", *single_delta, *mirrored_delta)
    (out / "result.json").write_text(json.dumps(result))


def run_worker(logs, steps_file):
    """One worker of a two-worker cluster (TF_CONFIG set by the caller): train one epoch."""
    import tensorflow as tf

    import mrcnn.model as modellib

    model = modellib.MaskRCNN(
        "training", tiny_config(1, USE_RPN_ROIS=True, ROI_POSITIVE_RATIO=0.33), str(logs)
    )
    model.train(
        shapes(6, 0), shapes(2, 1), learning_rate=0.01, epochs=1, layers="heads", workers=1, verbose=0
    )
    Path(steps_file).write_text(
        json.dumps(
            {
                "replicas": model.strategy.num_replicas_in_sync,
                "multi_worker": isinstance(model.strategy, tf.distribute.MultiWorkerMirroredStrategy),
                "epoch": model.epoch,
            }
        )
    )


def run_script(args, env=None, timeout=900):
    return subprocess.run(
        [sys.executable, __file__] + [str(a) for a in args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_two_replica_step_equals_single_device_step(tmp_path):
    done = run_script(["two_devices", tmp_path])
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["replicas"] == 2
    assert result["mirrored"] == "MirroredVariable"
    # TRAIN_BN=True: batch statistics over the global batch need synchronized BatchNorm.
    assert result["synchronized"] == {"single": [False], "mirrored": [True]}
    single, mirrored = result["single_logs"], result["mirrored_logs"]
    for name in (
        "loss",
        "rpn_class_loss",
        "rpn_bbox_loss",
        "mrcnn_class_loss",
        "mrcnn_bbox_loss",
        "mrcnn_mask_loss",
    ):
        assert np.isclose(single[name], mirrored[name], rtol=1e-4, atol=1e-6), (name, single, mirrored)
    # The images hold different numbers of positive RoIs (2 and 1), so each head loss is a real mean.
    assert single["mrcnn_bbox_loss"] > 0 and single["mrcnn_mask_loss"] > 0
    deltas = np.load(tmp_path / "deltas.npz")
    arrays = [deltas[f"arr_{i}"] for i in range(len(deltas.files))]
    count = len(arrays) // 2
    single_delta, mirrored_delta = arrays[:count], arrays[count:]
    # SGD's first step moves each weight by -lr * (clipped) gradient: the gradients match. With
    # deterministic kernels (see run_two_devices) the differences left are rounding: the order in which
    # the two runs sum the same terms, and BatchNorm computed by TensorFlow's fused kernel on one device
    # but by Keras' synchronized moments on two. BatchNorm over the few samples of this tiny batch (3
    # packed mask RoIs, 2x2 maps at P5) amplifies them: each variable's step agrees to 1% of its norm
    # (at most 0.4% measured; a wrong reduction over the replicas is off by tens of percent), with a
    # floor of 1e-4 of one clipped step (lr * GRADIENT_CLIP_NORM = 0.025) for the biases of convolutions
    # followed by BatchNorm, whose true gradient is zero.
    step = 0.5 * 0.05
    changed = 0
    for index, (s, m) in enumerate(zip(single_delta, mirrored_delta)):
        difference, scale = np.linalg.norm(m - s), np.linalg.norm(s)
        assert difference <= 1e-2 * scale + 1e-4 * step, (index, s.shape, difference, scale)
        changed += bool(scale > 1e-3 * step)
    assert changed > count // 2
    # GRADIENT_CLIP_NORM is small: clipping acted (the norm of a clipped step is lr * clip norm).
    norms = [np.linalg.norm(s) for s in single_delta]
    assert np.isclose(max(norms), 0.5 * 0.05, rtol=1e-3)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_with_tf_config(tmp_path):
    ports = free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            ),
        )
        (tmp_path / f"logs{index}").mkdir()
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "worker",
                    tmp_path / f"logs{index}",
                    tmp_path / f"worker{index}.json",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    errors = []
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        errors.append(stderr)
    for process, stderr in zip(processes, errors):
        assert process.returncode == 0, stderr[-4000:]
    for index in range(2):
        report = json.loads((tmp_path / f"worker{index}.json").read_text())
        assert report == {"replicas": 2, "multi_worker": True, "epoch": 1}
    # Only the chief (worker 0) writes the checkpoint, in the single-model layout: it loads without
    # any strategy.
    chief_files = list((tmp_path / "logs0").glob("*/mask_rcnn_dist_0001.h5"))
    assert len(chief_files) == 1
    assert not list((tmp_path / "logs1").rglob("*.h5"))
    import mrcnn.model as modellib

    model = modellib.MaskRCNN("inference", tiny_config(1), str(tmp_path / "plain"))
    report = model.load_weights(str(chief_files[0]), by_name=False)
    assert report["missing"] == [] and report["unused"] == []


def test_strategy_choice_errors_name_the_fix(tmp_path, monkeypatch):
    import mrcnn.model as modellib
    from mrcnn.training import training_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert training_strategy(tiny_config(2)) is None
    with pytest.raises(ValueError, match="GPU_COUNT=64 but TensorFlow sees"):
        training_strategy(tiny_config(1, GPU_COUNT=64))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        training_strategy(tiny_config(1))
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match='"cluster" and "task"'):
        training_strategy(tiny_config(1))
    with pytest.raises(ValueError, match="strategy= is for training"):
        modellib.MaskRCNN("inference", tiny_config(1), str(tmp_path), strategy=object())


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "two_devices":
        run_two_devices(Path(sys.argv[2]))
    else:
        run_worker(Path(sys.argv[2]), sys.argv[3])
