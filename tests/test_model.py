"""MaskRCNN end to end: COCO-layout weights, detect() output, Matterport-style scripts, log dirs."""

import os
import warnings

import h5py
import keras
import numpy as np
import pytest
from tiny_configs import TinyShapesConfig
from weights_fixture import write_layout_file

import mrcnn.model as modellib
from mrcnn import utils
from mrcnn.config import Config

CLASS_SPECIFIC = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]


class CocoInferenceConfig(Config):
    NAME = "coco"
    NUM_CLASSES = 81
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


class TinyConfig(Config):
    NAME = "tiny"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_INFERENCE = 64
    POST_NMS_ROIS_TRAINING = 128
    TRAIN_ROIS_PER_IMAGE = 16
    FPN_CLASSIF_FC_LAYERS_SIZE = 128
    DETECTION_MIN_CONFIDENCE = 0.0
    DETECTION_MAX_INSTANCES = 20
    IMAGES_PER_GPU = 2


def keras2_weights(keras_model):
    """Keras 2 weight name -> array for every weighted layer of the model (nested models expanded)."""
    values = {}
    for layer in keras_model.layers:
        inner = layer.layers if isinstance(layer, keras.Model) else [layer]
        for sub in inner:
            for variable in sub.weights:
                values[f"{sub.name}/{variable.name}:0"] = variable.numpy()
    return values


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mask_rcnn_coco.h5"
    arrays = write_layout_file(str(path), num_classes=81, seed=1)
    return path, arrays


@pytest.fixture(scope="module")
def coco_model(tmp_path_factory):
    return modellib.MaskRCNN(
        mode="inference", config=CocoInferenceConfig(), model_dir=str(tmp_path_factory.mktemp("logs"))
    )


def test_coco_layout_file_loads_every_tensor(coco_file, coco_model):
    path, arrays = coco_file
    report = coco_model.load_weights(str(path), by_name=True)
    assert report["tensors"] == 690
    assert report["missing"] == []
    loaded = keras2_weights(coco_model.keras_model)
    assert set(arrays) <= set(loaded)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=name)


def test_coco_file_into_four_class_model_with_exclude(coco_file, tmp_path):
    path, arrays = coco_file

    class FourClasses(CocoInferenceConfig):
        NUM_CLASSES = 4

    model = modellib.MaskRCNN(mode="inference", config=FourClasses(), model_dir=str(tmp_path))
    with pytest.raises(ValueError, match="exclude"):
        model.load_weights(str(path), by_name=True)
    report = model.load_weights(str(path), by_name=True, exclude=CLASS_SPECIFIC)
    # mrcnn_bbox is a weightless reshape: three of the four names own weights (kernel and bias each).
    assert sorted(report["excluded"]) == ["mrcnn_bbox_fc", "mrcnn_class_logits", "mrcnn_mask"]
    assert report["tensors"] == 690 - 6
    loaded = keras2_weights(model.keras_model)
    np.testing.assert_array_equal(loaded["res5c_branch2c/kernel:0"], arrays["res5c_branch2c/kernel:0"])
    assert loaded["mrcnn_class_logits/kernel:0"].shape == (1024, 4)


def test_coco_detect_output_format(coco_file, coco_model):
    coco_model.load_weights(str(coco_file[0]), by_name=True)
    image = np.random.default_rng(0).integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
    results = coco_model.detect([image], verbose=1)
    assert len(results) == 1
    r = results[0]
    n = len(r["class_ids"])
    assert r["rois"].dtype == np.int32 and r["rois"].shape == (n, 4)
    assert r["class_ids"].dtype == np.int32
    assert r["scores"].dtype == np.float32 and r["scores"].shape == (n,)
    assert r["masks"].dtype == bool and r["masks"].shape == (480, 640, n)
    assert np.all(r["class_ids"] >= 1) and np.all(r["class_ids"] < 81)
    assert np.all(np.diff(r["scores"]) <= 1e-6), "scores must be sorted descending"


@pytest.fixture(scope="module")
def tiny_inference(tmp_path_factory):
    keras.utils.set_random_seed(0)
    return modellib.MaskRCNN("inference", TinyConfig(), str(tmp_path_factory.mktemp("logs")))


def test_detect_any_count_and_sizes_without_retracing(tiny_inference):
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 255, size=shape, dtype=np.uint8)
        for shape in [(100, 120, 3), (64, 64, 3), (128, 40, 3)]
    ]
    results = tiny_inference.detect(images)
    assert len(results) == 3
    for image, r in zip(images, results):
        n = len(r["class_ids"])
        assert r["masks"].shape == image.shape[:2] + (n,)
        assert r["rois"].shape == (n, 4)
        if n:
            assert r["rois"][:, [0, 2]].max() <= image.shape[0]
            assert r["rois"][:, [1, 3]].max() <= image.shape[1]
            assert np.all(r["rois"][:, 2] > r["rois"][:, 0])
    traces = tiny_inference.detector._function.experimental_get_tracing_count()
    tiny_inference.detect(images[:1])
    tiny_inference.detect(images)
    assert tiny_inference.detector._function.experimental_get_tracing_count() == traces


def test_detect_rejects_bad_input(tiny_inference):
    with pytest.raises(ValueError, match="list of images"):
        tiny_inference.detect(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="IMAGE_CHANNEL_COUNT"):
        tiny_inference.detect([np.zeros((64, 64, 5), np.uint8)])
    with pytest.raises(ValueError, match="NaN"):
        tiny_inference.detect([np.full((64, 64, 3), np.nan, np.float32)])
    with pytest.raises(ValueError, match="no images"):
        tiny_inference.detect([])


def test_detect_converts_grayscale_and_rgba(tiny_inference):
    gray = np.random.default_rng(2).integers(0, 255, size=(70, 90), dtype=np.uint8)
    rgba = np.dstack([np.stack([gray] * 3, -1), np.full_like(gray, 255)])
    r_gray, r_rgba = tiny_inference.detect([gray, rgba])
    np.testing.assert_array_equal(r_gray["rois"], r_rgba["rois"])
    assert r_gray["masks"].shape[:2] == (70, 90)


def test_unmold_detections_maps_boxes_to_original_image(tiny_inference):
    config = tiny_inference.config
    # A 64x128 image molded into 128x128: scale 1, window rows 32..96.
    detections = np.zeros((config.DETECTION_MAX_INSTANCES, 6), np.float32)
    box_px = np.array([[42, 10, 62, 50]])  # molded pixels
    detections[0, :4] = utils.norm_boxes(box_px, (128, 128))
    detections[0, 4:] = [2, 0.9]
    masks = np.zeros((config.DETECTION_MAX_INSTANCES, 28, 28, config.NUM_CLASSES), np.float32)
    masks[0, :, :, 2] = 1.0
    boxes, class_ids, scores, full = tiny_inference.unmold_detections(
        detections, masks, (64, 128, 3), (128, 128, 3), np.array([32, 0, 96, 128])
    )
    np.testing.assert_array_equal(boxes, [[10, 10, 30, 50]])
    np.testing.assert_array_equal(class_ids, [2])
    assert full.shape == (64, 128, 1) and full.dtype == bool
    assert full[10:30, 10:50, 0].all() and full[:, :, 0].sum() == 20 * 40


def test_detect_on_overflowing_weights_returns_no_nan_boxes(tmp_path, caplog):
    """A model whose box head overflows (as diverged weights do) gives NaN detection boxes; detect() drops
    them with one warning per image instead of casting NaN to integer coordinates."""

    class Config(TinyShapesConfig):
        DETECTION_MIN_CONFIDENCE = 0.0

    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("inference", Config(), str(tmp_path))
    kernel = model.keras_model.get_layer("mrcnn_bbox_fc").kernel
    kernel.assign(np.full(kernel.shape, 1e37, np.float32))  # class scores stay finite, box deltas overflow
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    molded, metas, _ = model.mold_inputs([image])
    anchors = model.get_anchors(molded[0].shape)[np.newaxis]
    detections = model.detector.run(molded, metas, anchors)[0][0]
    assert np.isnan(detections[detections[:, 4] > 0, :4]).all()  # the graph's boxes are all NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast" would fail here
        r = model.detect([image])[0]
    assert r["rois"].shape == (0, 4) and r["masks"].shape == (64, 64, 0)
    dropped = [rec.getMessage() for rec in caplog.records if "NaN or inf" in rec.getMessage()]
    assert len(dropped) == 1 and "diverged" in dropped[0]


def test_paste_masks_matches_box_and_threshold():
    mask = np.zeros((1, 28, 28), np.float32)
    mask[0, :, :14] = 1.0  # left half on
    full = modellib.paste_masks(mask, np.array([[10, 20, 30, 60]]), (50, 80))
    assert full.shape == (50, 80, 1)
    assert full[10:30, 20:40, 0].all()
    assert not full[10:30, 41:60, 0].any()
    assert full[:, :, 0].sum() == 20 * 20
    assert modellib.paste_masks(np.zeros((0, 28, 28)), np.zeros((0, 4)), (5, 6)).shape == (5, 6, 0)


def test_matterport_inference_script_runs_unchanged(tmp_path, tiny_inference):
    weights_path = tmp_path / "mask_rcnn_tiny.h5"
    tiny_inference.save_weights(str(weights_path))
    # --- as a Matterport user writes it ---
    config = TinyConfig()
    config.display()
    model = modellib.MaskRCNN(mode="inference", config=config, model_dir=str(tmp_path / "logs"))
    model.load_weights(str(weights_path), by_name=True)
    image = np.random.default_rng(3).integers(0, 255, size=(96, 96, 3), dtype=np.uint8)
    results = model.detect([image, image], verbose=1)
    r = results[0]
    modellib.log("rois", r["rois"])
    assert set(r) == {"rois", "class_ids", "scores", "masks"}
    expected = tiny_inference.detect([image])[0]
    np.testing.assert_array_equal(r["rois"], expected["rois"])
    np.testing.assert_allclose(r["scores"], expected["scores"], rtol=1e-5)


def test_set_log_dir_and_find_last(tmp_path):
    model = modellib.MaskRCNN("inference", TinyConfig(), str(tmp_path))
    assert model.epoch == 0
    assert os.path.basename(model.log_dir).startswith("tiny")
    assert model.checkpoint_path.endswith("mask_rcnn_tiny_{epoch:04d}.h5")
    with pytest.raises(FileNotFoundError, match="Could not find model directory"):
        model.find_last()
    run = tmp_path / "tiny20240102T0304"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="Could not find weight files"):
        model.find_last()
    for epoch in (1, 2):
        model.save_weights(str(run / f"mask_rcnn_tiny_{epoch:04d}.h5"))
    last = model.find_last()
    assert last.endswith("mask_rcnn_tiny_0002.h5")
    model.load_weights(last, by_name=True)
    assert model.epoch == 2
    assert model.log_dir == str(run)
    model.set_log_dir(str(tmp_path / "elsewhere.h5"))
    assert model.epoch == 0


def test_load_weights_errors(tmp_path, tiny_inference):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        tiny_inference.load_weights(str(tmp_path / "missing.h5"))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="HDF5"):
        tiny_inference.load_weights(str(bad))
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        f.attrs["layer_names"] = [b"conv1"]
        group = f.create_group("conv1")
        group.attrs["weight_names"] = [b"conv1/kernel:0", b"conv1/bias:0"]
        group.create_dataset("conv1/kernel:0", data=np.zeros((7, 7, 3, 64), np.float32))
        group.create_dataset("conv1/bias:0", data=np.zeros((64,), np.float32))
    with pytest.raises(ValueError, match="by_name=True"):
        tiny_inference.load_weights(str(partial), by_name=False)
    report = tiny_inference.load_weights(str(partial), by_name=True)
    assert report["loaded"] == ["conv1"]


def test_training_mode_requires_classes(tmp_path):
    class OneClass(TinyConfig):
        NUM_CLASSES = 1

    with pytest.raises(ValueError, match="NUM_CLASSES"):
        modellib.MaskRCNN("training", OneClass(), str(tmp_path))
    with pytest.raises(ValueError, match="mode"):
        modellib.MaskRCNN("serving", TinyConfig(), str(tmp_path))


def test_run_graph_returns_named_intermediate_outputs(tiny_inference):
    model = tiny_inference.keras_model
    image = np.random.default_rng(4).integers(0, 255, size=(100, 80, 3), dtype=np.uint8)
    outputs = tiny_inference.run_graph(
        [image],
        [
            ("proposals", model.get_layer("ROI").output),
            ("detections", model.get_layer("mrcnn_detection").output),
            ("masks", model.get_layer("mrcnn_mask").output),
        ],
    )
    assert list(outputs) == ["proposals", "detections", "masks"]
    config = tiny_inference.config
    assert outputs["proposals"].shape == (1, config.POST_NMS_ROIS_INFERENCE, 4)
    assert outputs["detections"].shape == (1, config.DETECTION_MAX_INSTANCES, 6)
    assert outputs["masks"].shape == (1, config.DETECTION_MAX_INSTANCES, 28, 28, config.NUM_CLASSES)
    assert np.all((outputs["proposals"] >= 0) & (outputs["proposals"] <= 1))
    expected = tiny_inference.detect([image])[0]
    count = len(expected["class_ids"])
    np.testing.assert_array_equal(outputs["detections"][0, :count, 4].astype(np.int32), expected["class_ids"])


def test_mask_head_width_is_configurable(tmp_path):
    class NarrowMask(TinyConfig):
        FPN_MASK_CONV_LAYERS_SIZE = 32

    model = modellib.MaskRCNN("training", NarrowMask(), str(tmp_path)).keras_model
    assert model.get_layer("mrcnn_mask_conv2").get_weights()[0].shape == (3, 3, 32, 32)
    assert model.get_layer("mrcnn_mask_deconv").get_weights()[0].shape == (2, 2, 32, 32)
    assert model.get_layer("mrcnn_mask").get_weights()[0].shape == (1, 1, 32, 4)
    assert Config().FPN_MASK_CONV_LAYERS_SIZE == 256  # Matterport's width: the COCO weights load
