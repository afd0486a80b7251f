"""Tests for mrcnn.weights: Keras 2 (Matterport) HDF5 layout, against the COCO layout spec."""

import json
import os

import h5py
import keras
import numpy as np
import pytest
from weights_fixture import LAYOUT_JSON, layout_layers, write_layout_file

from mrcnn import weights
from mrcnn.backbone import BatchNorm, build_backbone
from mrcnn.config import Config
from mrcnn.rpn import build_rpn_model
from mrcnn.weights import CLASS_SPECIFIC_LAYERS, load_weights_hdf5, save_weights_hdf5

# Layers of the COCO file owned by the backbone, FPN and RPN (everything but the mrcnn_* heads).
SPEC = layout_layers()
OWN_SPEC = [(name, ws) for name, ws in SPEC if not name.startswith("mrcnn_")]
HEAD_NAMES = [name for name, _ in SPEC if name.startswith("mrcnn_")]


def build_backbone_rpn_model():
    """ResNet-101 + FPN + shared rpn_model on a 64x64 input (weight shapes don't depend on the size)."""
    config = Config()
    image = keras.Input(shape=(64, 64, 3), name="input_image")
    pyramid = build_backbone(image, config)
    rpn = build_rpn_model(
        config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), config.TOP_DOWN_PYRAMID_SIZE
    )
    rpn_outputs = [rpn(p) for p in pyramid]
    return keras.Model(image, [pyramid, rpn_outputs], name="backbone_rpn")


def variables_by_keras2_name(model):
    """Keras 2 weight name -> variable, derived from Keras 3 variable paths (``conv1/kernel`` -> ``:0``)."""
    return {v.path + ":0": v for v in model.weights}


def build_tiny_heads(num_classes):
    """Small stand-in with real head/FPN layer names from the spec, including TimeDistributed layers."""
    rois = keras.Input(shape=(2, 4, 4, 256), name="rois")
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(256, 3, padding="same"), name="mrcnn_mask_conv1")(
        rois
    )
    x = keras.layers.TimeDistributed(BatchNorm(), name="mrcnn_mask_bn1")(x, training=False)
    mask = keras.layers.TimeDistributed(keras.layers.Conv2D(num_classes, 1), name="mrcnn_mask")(x)
    fc = keras.Input(shape=(1024,), name="fc")
    logits = keras.layers.Dense(num_classes, name="mrcnn_class_logits")(fc)
    fmap = keras.Input(shape=(None, None, 256), name="fmap")
    p2 = keras.layers.Conv2D(256, 1, name="fpn_c2p2")(fmap)
    return keras.Model([rois, fc, fmap], [mask, logits, p2], name="tiny")


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("coco") / "mask_rcnn_coco_layout.h5"
    arrays = write_layout_file(path, LAYOUT_JSON, num_classes=81, seed=0)
    return path, arrays


@pytest.fixture(scope="module")
def loaded_model(coco_file):
    path, _ = coco_file
    model = build_backbone_rpn_model()
    report = load_weights_hdf5(model, path)
    return model, report


@pytest.fixture
def small_layout(tmp_path):
    """A layout JSON with a few spec layers (cheap files for the error and format tests)."""
    with open(LAYOUT_JSON) as fh:
        spec = json.load(fh)
    keep = {"fpn_c2p2", "mrcnn_mask_conv1", "mrcnn_mask_bn1", "mrcnn_mask", "mrcnn_class_logits", "rpn_model"}
    spec["layers"] = [layer for layer in spec["layers"] if layer["name"] in keep]
    path = tmp_path / "small_layout.json"
    path.write_text(json.dumps(spec))
    return path


def test_model_layers_match_coco_layout_spec():
    model = build_backbone_rpn_model()
    owning = {layer.name: layer for layer in model.layers if layer.weights}
    assert len(OWN_SPEC) == 217 and sum(len(ws) for _, ws in OWN_SPEC) == 646
    assert sorted(owning) == sorted(name for name, _ in OWN_SPEC)
    for name, spec_weights in OWN_SPEC:
        actual = [(v.path + ":0", tuple(v.shape)) for v in owning[name].weights]
        assert actual == spec_weights, name
    # rpn_model is one layer whose weights are named after its inner layers, as in the file.
    assert [n for n, _ in weights._weight_entries(owning["rpn_model"])] == [
        n for n, _ in dict(OWN_SPEC)["rpn_model"]
    ]


def test_load_assigns_every_backbone_fpn_rpn_tensor(coco_file, loaded_model):
    _, arrays = coco_file
    model, report = loaded_model
    assert report["tensors"] == 646
    assert sorted(report["loaded"]) == sorted(name for name, _ in OWN_SPEC)
    assert report["missing"] == [] and report["excluded"] == []
    assert sorted(report["unused"]) == sorted(HEAD_NAMES)
    variables = variables_by_keras2_name(model)
    assert len(variables) == 646
    for name, variable in variables.items():
        np.testing.assert_array_equal(np.asarray(variable), arrays[name], err_msg=name)


def test_save_then_load_round_trips_exactly(coco_file, loaded_model, tmp_path):
    _, arrays = coco_file
    model, _ = loaded_model
    path = tmp_path / "saved.h5"
    save_weights_hdf5(model, path)
    assert os.listdir(tmp_path) == ["saved.h5"]

    with h5py.File(path, "r") as f:
        layer_names = [n.decode() for n in f.attrs["layer_names"]]
        assert layer_names == [layer.name for layer in model.layers]  # weightless ones included
        assert f.attrs["backend"] == b"tensorflow"
        assert f.attrs["keras_version"].decode() == keras.__version__
        assert "mrcnn_version" in f.attrs
        assert list(f["fpn_p6"].attrs["weight_names"]) == []
        assert [n.decode() for n in f["conv1"].attrs["weight_names"]] == ["conv1/kernel:0", "conv1/bias:0"]
        assert f["conv1"]["conv1"]["kernel:0"].shape == (7, 7, 3, 64)
        assert [n.decode() for n in f["rpn_model"].attrs["weight_names"]] == [
            n for n, _ in dict(OWN_SPEC)["rpn_model"]
        ]
        np.testing.assert_array_equal(f["rpn_model/rpn_bbox_pred/bias:0"][()], arrays["rpn_bbox_pred/bias:0"])

    fresh = build_backbone_rpn_model()
    report = load_weights_hdf5(fresh, path)
    assert report["tensors"] == 646 and report["unused"] == [] and report["missing"] == []
    for name, variable in variables_by_keras2_name(fresh).items():
        np.testing.assert_array_equal(np.asarray(variable), arrays[name], err_msg=name)


def test_by_name_false_requires_same_layer_count(coco_file, loaded_model):
    path, _ = coco_file
    model, _ = loaded_model
    with pytest.raises(ValueError, match=r"233 layers with weights but the model has 217.*by_name=True"):
        load_weights_hdf5(model, path, by_name=False)


def test_by_name_false_pairs_layers_in_order_regardless_of_names(tmp_path):
    def two_layer_model(prefix):
        x = keras.Input(shape=(3,))
        y = keras.layers.Dense(4, name=prefix + "1")(x)
        return keras.Model(x, keras.layers.Dense(2, name=prefix + "2")(y))

    source, target = two_layer_model("a"), two_layer_model("b")
    path = tmp_path / "w.h5"
    save_weights_hdf5(source, path)
    with pytest.raises(ValueError, match=r"No layer of .* matches.*\['a1', 'a2'\].*\['b1', 'b2'\]"):
        load_weights_hdf5(target, path, by_name=True)
    report = load_weights_hdf5(target, path, by_name=False)
    assert report["loaded"] == ["b1", "b2"] and report["tensors"] == 4
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_time_distributed_heads_load_and_class_mismatch_names_layer_and_exclude(small_layout, tmp_path):
    path = tmp_path / "small.h5"
    arrays = write_layout_file(path, small_layout, num_classes=81)
    model = build_tiny_heads(num_classes=5)
    before = np.asarray(model.get_layer("fpn_c2p2").weights[0]).copy()
    with pytest.raises(ValueError) as info:
        load_weights_hdf5(model, path)
    message = str(info.value)
    # The first mismatching layer in file order is reported, with both shapes and the fix.
    assert "layer 'mrcnn_class_logits'" in message and "exclude=['mrcnn_class_logits']" in message
    assert "(1024, 81)" in message and "(1024, 5)" in message
    # Nothing is assigned when loading fails.
    np.testing.assert_array_equal(np.asarray(model.get_layer("fpn_c2p2").weights[0]), before)

    report = load_weights_hdf5(model, path, exclude=CLASS_SPECIFIC_LAYERS)
    assert report["excluded"] == ["mrcnn_class_logits", "mrcnn_mask"]
    assert sorted(report["loaded"]) == ["fpn_c2p2", "mrcnn_mask_bn1", "mrcnn_mask_conv1"]
    assert report["unused"] == ["rpn_model"] and report["missing"] == []
    for layer_name in report["loaded"]:
        layer = model.get_layer(layer_name)
        for variable in layer.weights:
            name = f"{layer_name}/{variable.name}:0"
            np.testing.assert_array_equal(np.asarray(variable), arrays[name])
    assert np.asarray(model.get_layer("mrcnn_mask").weights[0]).shape == (1, 1, 256, 5)


def test_full_model_file_with_model_weights_group(small_layout, tmp_path):
    path = tmp_path / "full.h5"
    arrays = write_layout_file(path, small_layout, num_classes=5, full_model=True)
    model = build_tiny_heads(num_classes=5)
    report = load_weights_hdf5(model, path)
    assert sorted(report["loaded"]) == sorted(
        ["fpn_c2p2", "mrcnn_mask_bn1", "mrcnn_mask_conv1", "mrcnn_mask", "mrcnn_class_logits"]
    )
    np.testing.assert_array_equal(
        np.asarray(model.get_layer("mrcnn_mask").weights[1]), arrays["mrcnn_mask/bias:0"]
    )


def test_weights_are_paired_by_position_when_names_differ(tmp_path):
    x = keras.Input(shape=(None, None, 2))
    model = keras.Model(x, keras.layers.Conv2D(3, 1, name="fpn_c2p2")(x))
    kernel = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    path = tmp_path / "old_names.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"fpn_c2p2"])
        g = f.create_group("fpn_c2p2")
        g.attrs["weight_names"] = np.array([b"fpn_c2p2_1/W:0", b"fpn_c2p2_1/b:0"])
        g.create_dataset("fpn_c2p2_1/W:0", data=kernel)
        g.create_dataset("fpn_c2p2_1/b:0", data=np.array([7, 8, 9], np.float32))
    assert load_weights_hdf5(model, path)["tensors"] == 2
    np.testing.assert_array_equal(np.asarray(model.weights[0]), kernel)
    np.testing.assert_array_equal(np.asarray(model.weights[1]), [7, 8, 9])


def test_large_attributes_are_split_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "HDF5_OBJECT_HEADER_LIMIT", 64)
    model = build_tiny_heads(num_classes=3)
    path = tmp_path / "chunked.h5"
    save_weights_hdf5(model, path)
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs
    fresh = build_tiny_heads(num_classes=3)
    report = load_weights_hdf5(fresh, path)
    assert report["tensors"] == len(model.weights) == 12
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    model = build_tiny_heads(num_classes=3)
    path = tmp_path / "ckpt.h5"
    save_weights_hdf5(model, path)
    original = np.asarray(model.get_layer("fpn_c2p2").weights[1]).copy()
    model.get_layer("fpn_c2p2").weights[1].assign(original + 1.0)

    calls = []
    real_create_dataset = h5py.Group.create_dataset

    def failing_create_dataset(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise OSError("No space left on device")
        return real_create_dataset(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create_dataset)
    with pytest.raises(OSError, match="No space left"):
        save_weights_hdf5(model, path)
    monkeypatch.undo()
    assert len(calls) == 3
    assert os.listdir(tmp_path) == ["ckpt.h5"]  # no temporary file left behind
    fresh = build_tiny_heads(num_classes=3)
    load_weights_hdf5(fresh, path)
    np.testing.assert_array_equal(np.asarray(fresh.get_layer("fpn_c2p2").weights[1]), original)


def test_missing_file_raises_file_not_found(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_weights_hdf5(build_tiny_heads(3), missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_weights_hdf5(build_tiny_heads(3), tmp_path / "no_dir" / "w.h5")


def test_non_hdf5_and_truncated_files_are_rejected(tmp_path):
    model = build_tiny_heads(num_classes=3)
    text = tmp_path / "page.h5"
    text.write_text("<html>404 Not Found</html>")
    with pytest.raises(ValueError, match="not a valid HDF5 weights file.*re-download"):
        load_weights_hdf5(model, text)

    good = tmp_path / "good.h5"
    save_weights_hdf5(model, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid HDF5 weights file.*re-download"):
        load_weights_hdf5(model, truncated)

    missing_dataset = tmp_path / "missing_dataset.h5"
    with h5py.File(missing_dataset, "w") as f:
        f.attrs["layer_names"] = np.array([b"fpn_c2p2"])
        f.create_group("fpn_c2p2").attrs["weight_names"] = np.array(
            [b"fpn_c2p2/kernel:0", b"fpn_c2p2/bias:0"]
        )
    with pytest.raises(ValueError, match="not a valid HDF5 weights file.*fpn_c2p2/kernel:0"):
        load_weights_hdf5(model, missing_dataset)


def test_keras3_files_and_foreign_hdf5_are_rejected_with_explanation(tmp_path):
    model = build_tiny_heads(num_classes=3)
    model.save_weights(tmp_path / "k3.weights.h5")
    with pytest.raises(ValueError, match=r"Keras 3 '\.weights\.h5'.*Keras 2 HDF5 weights"):
        load_weights_hdf5(model, tmp_path / "k3.weights.h5")
    model.save(tmp_path / "k3.keras")
    with pytest.raises(ValueError, match=r"Keras 3 '\.keras' archive.*Keras 2 HDF5 weights"):
        load_weights_hdf5(model, tmp_path / "k3.keras")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(ValueError, match="no 'layer_names' attribute"):
        load_weights_hdf5(model, tmp_path / "data.h5")


def test_bad_arguments(tmp_path):
    model = build_tiny_heads(num_classes=3)
    path = tmp_path / "w.h5"
    save_weights_hdf5(model, path)
    with pytest.raises(TypeError, match=r"list of layer names.*\['mrcnn_mask'\]"):
        load_weights_hdf5(model, path, exclude="mrcnn_mask")
    with pytest.raises(TypeError, match="keras.Model"):
        load_weights_hdf5(model.get_layer("mrcnn_mask"), path)


############################################################
#  Safe loading: data only, no code
############################################################


def test_weights_module_reads_data_only():
    """mrcnn.weights imports no unpickler / code loader and calls no eval, exec or dynamic import."""
    import ast

    tree = ast.parse(open(weights.__file__).read())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"contextlib", "os", "zipfile", "h5py", "keras", "numpy", "mrcnn"}, imported
    called = {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
    }
    assert not called & {
        "eval",
        "exec",
        "compile",
        "__import__",
        "import_module",
        "load_model",
        "loads",
        "Unpickler",
        "deserialize_keras_object",
        "from_config",
    }, called


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def test_graph_has_no_lambda_and_round_trips_with_safe_mode(tmp_path):
    """Both graphs serialize without Python lambdas: the inference model saved as .keras loads with
    safe_mode=True and computes the same outputs; the training graph's layers deserialize with
    safe_mode=True."""
    from tiny_configs import TinyShapesConfig

    import mrcnn.model as modellib

    class SafeConfig(TinyShapesConfig):
        NAME = "safe"
        DETECTION_MIN_CONFIDENCE = 0.0

    model = modellib.MaskRCNN("inference", SafeConfig(), str(tmp_path))
    training = modellib.MaskRCNN("training", SafeConfig(), str(tmp_path)).keras_model
    for graph in (model.keras_model, training):
        lambdas = [layer.name for layer in _all_layers(graph) if isinstance(layer, keras.layers.Lambda)]
        assert lambdas == []

    path = tmp_path / "inference.keras"
    model.keras_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    molded, metas, _ = model.mold_inputs([image])
    anchors = model.get_anchors(molded[0].shape)[np.newaxis]
    expected = model.keras_model([molded, metas, anchors], training=False)
    got = loaded([molded, metas, anchors], training=False)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert np.count_nonzero(np.asarray(expected[0])[0, :, 5]) > 0  # detections were compared, not padding

    config = keras.saving.serialize_keras_object(training)  # the MaskRCNNTrainer itself
    rebuilt = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert type(rebuilt).__name__ == "MaskRCNNTrainer"
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in training.layers]
    assert rebuilt.loss_weights_by_name == training.loss_weights_by_name
    assert rebuilt.weight_decay == training.weight_decay
