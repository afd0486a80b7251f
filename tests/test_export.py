"""SavedModel export: TF pre/post-processing against the numpy reference, and a reloaded model (in a
process that never imports mrcnn) against ``MaskRCNN.detect``."""

import copy
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import mrcnn.model as modellib
from mrcnn import kernels, utils
from mrcnn.anchors import anchors_graph
from mrcnn.backbone import compute_backbone_shapes
from mrcnn.config import Config
from mrcnn.datasets.shapes import small_backbone, small_backbone_shapes
from mrcnn.export import (
    ServingModule,
    export_saved_model,
)


class ExportConfig(Config):
    NAME = "export_test"
    NUM_CLASSES = 4
    BACKBONE = small_backbone
    COMPUTE_BACKBONE_SHAPE = small_backbone_shapes
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 64
    FPN_MASK_CONV_LAYERS_SIZE = 16
    POST_NMS_ROIS_INFERENCE = 50
    DETECTION_MIN_CONFIDENCE = 0.0
    DETECTION_MAX_INSTANCES = 10
    IMAGES_PER_GPU = 1


class Pad64Config(ExportConfig):
    IMAGE_RESIZE_MODE = "pad64"


class NoResizeConfig(ExportConfig):
    IMAGE_RESIZE_MODE = "none"


def _image(rng, height, width):
    """Noise with a few flat rectangles, uint8 [height, width, 3]."""
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[y : y + rng.integers(4, height // 2), x : x + rng.integers(4, width // 2)] = rng.integers(
            0, 256, 3
        )
    return image


def _with_config(model, config):
    """The same Keras graph seen through another resize config (the graph does not depend on it)."""
    view = copy.copy(model)
    view.config = config
    return view


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    keras.utils.set_random_seed(3)
    return modellib.MaskRCNN(
        mode="inference", config=ExportConfig(), model_dir=str(tmp_path_factory.mktemp("logs"))
    )


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The model exported with both mask forms, over an existing directory (overwrite=True)."""
    export_dir = tmp_path_factory.mktemp("export") / "1"
    export_dir.mkdir()
    (export_dir / "stale.txt").write_text("old export")
    path = export_saved_model(model, export_dir, masks="both", overwrite=True, verbose=0)
    return path


############################################################
#  Anchors of a molded size (pre- and post-processing: tests/test_transform.py)
############################################################


@pytest.mark.parametrize("shape", [(128, 128), (64, 192), (256, 64), (90, 60)])
def test_anchors_graph_matches_get_anchors(shape):
    config = Pad64Config()
    expected = utils.norm_boxes(
        utils.generate_pyramid_anchors(
            config.RPN_ANCHOR_SCALES,
            config.RPN_ANCHOR_RATIOS,
            compute_backbone_shapes(config, shape),
            config.BACKBONE_STRIDES,
            config.RPN_ANCHOR_STRIDE,
        ),
        shape,
    )
    np.testing.assert_array_equal(anchors_graph(shape[0], shape[1], config).numpy(), expected)


############################################################
#  End to end
############################################################


def _match(boxes, class_ids, result):
    """Index of the detect() row matching each output row: same class, box within 1 px. Order-free, so
    equal scores (saturated random weights) may come in either order."""
    order = []
    for box, class_id in zip(boxes, class_ids):
        error = np.abs(result["rois"] - box).max(axis=1)
        error[result["class_ids"] != class_id] = np.inf
        error[order] = np.inf
        best = int(np.argmin(error))
        assert error[best] <= 1, f"no detect() row matches box {box} class {class_id}"
        order.append(best)
    return np.array(order)


def _assert_same_detections(outputs, row, result, full_masks=True):
    count = int(outputs["num_detections"][row])
    assert count == len(result["class_ids"]) > 0
    order = _match(outputs["boxes"][row, :count], outputs["class_ids"][row, :count], result)
    np.testing.assert_allclose(outputs["scores"][row, :count], result["scores"][order], atol=1e-5)
    assert not outputs["boxes"][row, count:].any() and not outputs["class_ids"][row, count:].any()
    assert not outputs["scores"][row, count:].any() and not outputs["masks"][row, count:].any()
    if full_masks:
        masks = outputs["masks"][row, :count].astype(bool)
        assert masks.shape == result["masks"].transpose(2, 0, 1).shape
        assert (masks == result["masks"].transpose(2, 0, 1)[order]).mean() >= 0.99
    return order


_RELOAD_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    inputs = np.load(sys.argv[2])
    loaded = tf.saved_model.load(sys.argv[1])
    out = {}
    for name in ("serving_default", "serving_boxes_masks"):
        signature = loaded.signatures[name]
        for key in inputs.files:
            result = signature(images=tf.constant(inputs[key]))
            for field, value in result.items():
                out[f"{name}/{key}/{field}"] = value.numpy()
    out["inputs"] = np.array(sorted(loaded.signatures["serving_default"].structured_input_signature[1]))
    # The TF1 loader (the C++ SavedModelBundle of TF Serving, saved_model_cli run) restores the variables
    # through the MetaGraph's saver, not the object graph.
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], sys.argv[1])
        signature = meta_graph.signature_def["serving_default"]
        fetches = {key: info.name for key, info in signature.outputs.items()}
        result = session.run(fetches, {signature.inputs["images"].name: inputs["tall"]})
        for field, value in result.items():
            out[f"tf1/tall/{field}"] = value
    assert "mrcnn" not in sys.modules, "the exported model needed mrcnn"
    np.savez(sys.argv[3], **out)
    print("MRCNN_IMPORTED", "mrcnn" in sys.modules)
""")


@pytest.fixture
def direct_convolutions():
    """detect() traced with the exported graph's plain convolutions (export_saved_model leaves Winograd out):
    the ~2e-6 rounding difference would otherwise reorder this random model's near-tied detections."""
    with kernels.disabled():
        yield


def test_reloaded_without_mrcnn_matches_detect(model, exported, tmp_path, direct_convolutions):
    assert "stale.txt" not in os.listdir(exported) and "saved_model.pb" in os.listdir(exported)
    rng = np.random.default_rng(11)
    tall = _image(rng, 90, 60)
    wide = np.stack([_image(rng, 50, 120), _image(rng, 50, 120)])
    inputs, outputs = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
    np.savez(inputs, tall=tall[None], wide=wide)
    script = tmp_path / "reload.py"
    script.write_text(_RELOAD_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(script), exported, str(inputs), str(outputs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MRCNN_IMPORTED False" in proc.stdout
    data = np.load(outputs)
    assert list(data["inputs"]) == ["images"]

    def signature_outputs(name, key):
        prefix = f"{name}/{key}/"
        return {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}

    results = model.detect([tall, wide[0], wide[1]])
    default_tall = signature_outputs("serving_default", "tall")
    default_wide = signature_outputs("serving_default", "wide")
    assert default_tall["masks"].shape == (1, 10, 90, 60) and default_tall["masks"].dtype == np.uint8
    assert default_wide["boxes"].shape == (2, 10, 4) and default_wide["class_ids"].dtype == np.int32
    _assert_same_detections(default_tall, 0, results[0])
    _assert_same_detections(signature_outputs("tf1", "tall"), 0, results[0])
    _assert_same_detections(default_wide, 0, results[1])
    _assert_same_detections(default_wide, 1, results[2])

    # The box-mask signature: same detections; its 28x28 masks pasted in numpy give the full masks.
    boxes_wide = signature_outputs("serving_boxes_masks", "wide")
    assert boxes_wide["masks"].shape == (2, 10, 28, 28) and boxes_wide["masks"].dtype == np.float32
    for row, result in enumerate(results[1:]):
        order = _assert_same_detections(boxes_wide, row, result, full_masks=False)
        count = len(result["class_ids"])
        pasted = modellib.paste_masks(boxes_wide["masks"][row, :count], result["rois"][order], (50, 120))
        assert (pasted == result["masks"][..., order]).mean() >= 0.99


@pytest.mark.parametrize(
    "config_class, shapes", [(Pad64Config, [(90, 60), (50, 130)]), (NoResizeConfig, [(64, 128), (192, 64)])]
)
def test_variable_size_modes_match_detect(model, config_class, shapes):
    view = _with_config(model, config_class())
    module = ServingModule(view)
    rng = np.random.default_rng(5)
    for height, width in shapes:
        image = _image(rng, height, width)
        outputs = {k: v.numpy() for k, v in module.detect_full(tf.constant(image[None])).items()}
        _assert_same_detections(outputs, 0, view.detect([image])[0])


############################################################
#  Errors
############################################################


def test_training_model_is_refused(tmp_path):
    training = modellib.MaskRCNN(mode="training", config=ExportConfig(), model_dir=str(tmp_path))
    with pytest.raises(ValueError, match="inference mode"):
        export_saved_model(training, tmp_path / "out", verbose=0)
    assert not (tmp_path / "out").exists()


def test_model_export_method_writes_the_serving_signature(model, tmp_path):
    path = model.export(tmp_path / "served", verbose=0)
    assert path == str((tmp_path / "served").resolve())
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    assert sorted(signature.structured_outputs) == ["boxes", "class_ids", "masks", "num_detections", "scores"]


def test_existing_directory_needs_overwrite(model, exported):
    before = sorted(os.listdir(exported))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_saved_model(model, exported, verbose=0)
    assert sorted(os.listdir(exported)) == before
    assert "saved_model.pb" in before


def test_unsupported_settings_are_refused(model, tmp_path):
    with pytest.raises(ValueError, match="masks must be one of"):
        export_saved_model(model, tmp_path / "a", masks="small", verbose=0)

    class CropConfig(ExportConfig):
        IMAGE_RESIZE_MODE = "crop"

    with pytest.raises(ValueError, match="'crop' is a random training crop"):
        export_saved_model(_with_config(model, CropConfig()), tmp_path / "b", verbose=0)

    class OddBackboneConfig(Pad64Config):
        @staticmethod
        def COMPUTE_BACKBONE_SHAPE(image_shape):
            return np.array([[image_shape[0] // s + 1, image_shape[1] // s + 1] for s in (4, 8, 16, 32, 64)])

    with pytest.raises(ValueError, match="COMPUTE_BACKBONE_SHAPE"):
        export_saved_model(_with_config(model, OddBackboneConfig()), tmp_path / "c", verbose=0)
    assert not any(tmp_path.iterdir())


def test_weights_are_stored_once(model, exported):
    weight_bytes = sum(np.asarray(v).nbytes for v in model.keras_model.weights)
    stored = sum(
        os.path.getsize(os.path.join(exported, "variables", name))
        for name in os.listdir(os.path.join(exported, "variables"))
    )
    assert weight_bytes <= stored < 1.2 * weight_bytes


def test_exported_graph_needs_no_xla(exported):
    """Winograd's XLA-compiled transforms are left out of exports: the graph holds plain convolutions."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(exported, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    functions = list(graph.library.function)
    assert not [f.signature.name for f in functions if f.attr["_XlaMustCompile"].b]
    assert sum(node.op == "Conv2D" for f in functions for node in f.node_def) >= 4 + 4 + 1  # FPN, mask, RPN
