"""Every bad-input case of docs/bad_input.md: the error a user sees, or the documented conversion.

Each case is one parametrized entry; docs/bad_input.md quotes the messages these tests match.
"""

import re

import h5py
import keras
import numpy as np
import pytest
from PIL import Image
from tiny_configs import Tiny64Config, TinyShapesConfig

import mrcnn.model as modellib
from mrcnn import data, utils
from mrcnn.config import Config
from mrcnn.datasets.base import DatasetNotPreparedError


class BadInputConfig(Tiny64Config):
    """64x64 inputs, three classes (background + 2)."""

    NAME = "badinput"
    NUM_CLASSES = 3
    IMAGES_PER_GPU = 1
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)


class TinyModelConfig(TinyShapesConfig):
    """The shapes demo's small backbone at 64x64: a MaskRCNN builds in about a second."""

    NAME = "badinput"


class OneImage(utils.Dataset):
    """A prepared one-image dataset whose load_image / load_mask return the given arrays."""

    def __init__(self, image, masks=None, class_ids=None, prepare=True):
        super().__init__()
        self.image = image
        if masks is None:
            masks = np.zeros(np.shape(image)[:2] + (1,), bool)
            masks[:3, :3, 0] = True
            class_ids = np.array([1], np.int32)
        self.masks, self.ids = masks, class_ids
        self.add_class("test", 1, "a")
        self.add_class("test", 2, "b")
        self.add_image("test", 0, None)
        if prepare:
            self.prepare()

    def load_image(self, image_id):
        return self.image

    def load_mask(self, image_id):
        return self.masks, self.ids


def _two_masks(height=40, width=50):
    masks = np.zeros((height, width, 2), bool)
    masks[2:10, 3:12, 0] = True
    masks[20:30, 25:45, 1] = True
    return masks


RGB = np.full((40, 50, 3), 100, np.uint8)


############################################################
#  Images given to load_image_gt (training) by load_image
############################################################

BAD_TRAINING_IMAGES = [
    (
        "grayscale_2d",
        np.zeros((40, 50), np.uint8),
        ValueError,
        r"image 0: load_image returned shape \(40, 50\); expected \[H, W, 3\] \(IMAGE_CHANNEL_COUNT=3\)\. "
        r"Convert grayscale/RGBA images in load_image",
    ),
    (
        "rgba",
        np.zeros((40, 50, 4), np.uint8),
        ValueError,
        r"load_image returned shape \(40, 50, 4\); expected \[H, W, 3\]",
    ),
    (
        "uint16",
        np.full((40, 50, 3), 4000, np.uint16),
        ValueError,
        r"image 0 \(from load_image\) has uint16 pixels in 4000\.\.4000, outside 0\.\.255 .*"
        r"\(image // 257\)\.astype\(np\.uint8\)",
    ),
    (
        "float_0_to_1",
        np.full((40, 50, 3), 0.5, np.float32),
        ValueError,
        r"float pixels in 0\.5\.\.0\.5: it looks scaled to 0\.\.1 .* multiply by 255",
    ),
    (
        "already_molded",
        np.full((40, 50, 3), -100.0, np.float32),
        ValueError,
        r"float pixels in -100\.\.-100, outside 0\.\.255 .*\(not images already molded",
    ),
    (
        "nan",
        np.full((40, 50, 3), np.nan, np.float32),
        ValueError,
        r"image 0 \(from load_image\) contains NaN or infinite pixels",
    ),
    ("inf", np.full((40, 50, 3), np.inf, np.float64), ValueError, r"contains NaN or infinite pixels"),
    (
        "bool",
        np.zeros((40, 50, 3), bool),
        TypeError,
        r"has dtype bool; give uint8 \(0\.\.255\) or float pixels",
    ),
    (
        "zero_size",
        np.zeros((0, 0, 3), np.uint8),
        ValueError,
        r"image 0: load_image returned an empty image of shape \(0, 0, 3\)",
    ),
    ("zero_height", np.zeros((0, 7, 3), np.uint8), ValueError, r"empty image of shape \(0, 7, 3\)"),
]


@pytest.mark.parametrize(
    "name, image, error, message", BAD_TRAINING_IMAGES, ids=[case[0] for case in BAD_TRAINING_IMAGES]
)
def test_training_image_rejected(name, image, error, message):
    masks = np.zeros(image.shape[:2] + (0,), bool)
    dataset = OneImage(image, masks, np.zeros(0, np.int32))
    with pytest.raises(error, match=message):
        data.load_image_gt(dataset, BadInputConfig(), 0)


def test_wrong_channel_count_for_image_channel_count():
    class FourChannels(BadInputConfig):
        IMAGE_CHANNEL_COUNT = 4
        MEAN_PIXEL = np.array([123.7, 116.8, 103.9, 100.0])

    with pytest.raises(
        ValueError,
        match=r"load_image returned shape \(40, 50, 3\); expected \[H, W, 4\] "
        r"\(IMAGE_CHANNEL_COUNT=4\)",
    ):
        data.load_image_gt(OneImage(RGB), FourChannels(), 0)
    image, _, _, _, _ = data.load_image_gt(OneImage(np.zeros((40, 50, 4), np.uint8)), FourChannels(), 0)
    assert image.shape == (64, 64, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int32])
def test_in_range_non_uint8_images_are_accepted_like_uint8(dtype):
    """Float or wider-integer pixels already on the 0..255 scale train like the uint8 image: the same
    boxes, masks and metas, pixels at most one grey level apart (resizing truncates a uint8 image to
    uint8, as Matterport's ``astype`` does, and keeps a float image's fractions)."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    config = BadInputConfig()
    reference = data.load_image_gt(OneImage(pixels), config, 0)
    result = data.load_image_gt(OneImage(pixels.astype(dtype)), config, 0)
    assert result[0].dtype == dtype
    difference = np.abs(result[0].astype(np.float64) - reference[0])
    assert difference.max() <= 1.0
    for got, expected in zip(result[1:], reference[1:]):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 1000), (700, 3), (5, 64)])
def test_tiny_and_elongated_images_are_resized_to_at_least_one_pixel(shape):
    """Every side keeps >= 1 pixel (Matterport made 0-pixel sides); a full-image instance survives."""
    image = np.full(shape + (3,), 200, np.uint8)
    masks = np.ones(shape + (1,), bool)
    image_out, meta, class_ids, boxes, mini = data.load_image_gt(
        OneImage(image, masks, np.array([2])), BadInputConfig(), 0, use_mini_mask=True
    )
    window = data.parse_image_meta(meta[np.newaxis])["window"][0]
    assert image_out.shape == (64, 64, 3)
    assert window[2] > window[0] and window[3] > window[1]
    assert class_ids.tolist() == [2] and boxes.tolist() == [window.tolist()]
    assert mini.shape == (56, 56, 1) and mini.all()
    assert (image_out[window[0] : window[2], window[1] : window[3]] == 200).all()


def test_images_given_as_files_are_converted_to_uint8_rgb(tmp_path):
    """Dataset.load_image converts grayscale, RGBA and 16-bit files; load_image_gt then accepts them."""
    gray = np.arange(40 * 50).reshape(40, 50).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 9)]), mode="RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    for name in ("gray.png", "rgba.png", "gray16.png"):
        dataset = OneImage(None, _two_masks(), np.array([1, 2]), prepare=False)
        dataset.image_info[0]["path"] = str(tmp_path / name)
        dataset.prepare()
        loaded = utils.Dataset.load_image(dataset, 0)
        assert loaded.shape == (40, 50, 3) and loaded.dtype == np.uint8, name
        np.testing.assert_array_equal(loaded[..., 1], gray, err_msg=name)
        dataset.image = loaded
        assert data.load_image_gt(dataset, BadInputConfig(), 0)[2].tolist() == [1, 2]


############################################################
#  load_mask results
############################################################

BAD_MASKS = [
    (
        "lengths_differ",
        _two_masks(),
        np.array([1]),
        r"image 0: load_mask returned 1 class ids \(shape \(1,\)\) for 2 masks; return one class id per mask",
    ),
    (
        "class_id_too_large",
        _two_masks(),
        np.array([1, 3]),
        r"image 0: class ids \[3\] are out of range; instance ids must be in 1\.\.2 .*"
        r"set config\.NUM_CLASSES = dataset\.num_classes",
    ),
    ("class_id_background", _two_masks(), np.array([0, 1]), r"class ids \[0\] are out of range"),
    (
        "class_id_not_integer",
        _two_masks(),
        np.array([1.5, 2.0]),
        r"class ids must be integers, got \[1\.5, 2\.0\]",
    ),
    (
        "mask_2d",
        _two_masks()[..., 0],
        np.array([1]),
        r"load_mask returned masks of shape \(40, 50\); expected \[H, W, N\] .*mask\[\.\.\., np\.newaxis\]",
    ),
    (
        "mask_size_differs",
        _two_masks(20, 50),
        np.array([1, 2]),
        r"load_mask returned 20x50 masks for a 40x50 image; masks must have the image's height and width",
    ),
]


@pytest.mark.parametrize("name, masks, class_ids, message", BAD_MASKS, ids=[case[0] for case in BAD_MASKS])
def test_bad_load_mask_output_rejected(name, masks, class_ids, message):
    with pytest.raises(ValueError, match=message):
        data.load_image_gt(OneImage(RGB, masks, class_ids), BadInputConfig(), 0)


def test_empty_instance_is_dropped_with_its_class_id():
    masks = _two_masks()
    masks[..., 0] = False
    _, _, class_ids, boxes, mini = data.load_image_gt(
        OneImage(RGB, masks, np.array([1, 2])), BadInputConfig(), 0, use_mini_mask=True
    )
    assert class_ids.tolist() == [2] and boxes.shape == (1, 4) and mini.shape == (56, 56, 1)
    assert (
        boxes.tolist()
        == utils.extract_bboxes(
            data.load_image_gt(OneImage(RGB, masks[..., 1:], np.array([2])), BadInputConfig(), 0)[4]
        ).tolist()
    )


def test_image_without_instances_gives_empty_arrays_and_is_skipped_in_training():
    empty = OneImage(RGB, np.zeros((40, 50, 0), bool), np.zeros(0, np.int32))
    _, _, class_ids, boxes, mini = data.load_image_gt(empty, BadInputConfig(), 0, use_mini_mask=True)
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert boxes.shape == (0, 4) and mini.shape == (56, 56, 0)
    with pytest.raises(
        RuntimeError,
        match="none of the dataset's 1 images gave a sample: images need at "
        "least one instance with a positive class id",
    ):
        data.MaskRCNNSequence(empty, BadInputConfig(), steps=1, seed=0)[0]


############################################################
#  Datasets
############################################################


def test_dataset_never_prepared():
    dataset = OneImage(RGB, prepare=False)
    message = r"OneImage\.(num_images|source_class_ids) is not available yet: call dataset\.prepare\(\)"
    with pytest.raises(DatasetNotPreparedError, match=message):
        data.MaskRCNNSequence(dataset, BadInputConfig())
    with pytest.raises(DatasetNotPreparedError, match=message):
        next(data.data_generator(dataset, BadInputConfig()))
    with pytest.raises(DatasetNotPreparedError, match=message):
        data.load_image_gt(dataset, BadInputConfig(), 0)


def test_dataset_with_more_classes_than_num_classes():
    class TwoClasses(BadInputConfig):
        NUM_CLASSES = 2

    with pytest.raises(
        ValueError,
        match=r"the dataset has 3 classes \(background included\) but "
        r"config\.NUM_CLASSES is 2; set NUM_CLASSES = dataset\.num_classes",
    ):
        data.MaskRCNNSequence(OneImage(RGB), TwoClasses())


############################################################
#  Contradicting configuration values
############################################################

BAD_CONFIGS = [
    (
        "mean_pixel_vs_channels",
        {"IMAGE_CHANNEL_COUNT": 1},
        r"MEAN_PIXEL has 3 values but IMAGE_CHANNEL_COUNT is 1; give one mean per channel",
    ),
    (
        "strides_vs_backbone",
        {"BACKBONE_STRIDES": [4, 8, 16, 32, 128]},
        r"BACKBONE_STRIDES=\[4, 8, 16, 32, 128\] contradicts BACKBONE='resnet101'",
    ),
    (
        "scales_vs_levels",
        {"RPN_ANCHOR_SCALES": (32, 64, 128)},
        r"RPN_ANCHOR_SCALES has 3 scales but BACKBONE_STRIDES has 5 levels",
    ),
    (
        "mask_shape_vs_pool",
        {"MASK_SHAPE": [32, 32]},
        r"MASK_SHAPE \[32, 32\] must be twice MASK_POOL_SIZE \(14\)",
    ),
    (
        "square_side_not_64",
        {"IMAGE_MAX_DIM": 1000},
        r"IMAGE_MAX_DIM=1000 must be a multiple of 64 in 'square' mode .* use 1024",
    ),
    (
        "callable_backbone_without_shapes",
        {"BACKBONE": staticmethod(lambda image, config: None)},
        r"A callable BACKBONE needs COMPUTE_BACKBONE_SHAPE",
    ),
    ("rpn_train_anchors", {"RPN_TRAIN_ANCHORS_PER_IMAGE": 1}, r"RPN_TRAIN_ANCHORS_PER_IMAGE must be >= 2"),
    ("validation_steps", {"VALIDATION_STEPS": 0}, r"STEPS_PER_EPOCH and VALIDATION_STEPS must be >= 1"),
    ("learning_rate", {"LEARNING_RATE": 0.0}, r"LEARNING_RATE=0\.0 must be > 0"),
    ("mixed_precision", {"MIXED_PRECISION": "float16"}, r"MIXED_PRECISION='float16': use None"),
]


@pytest.mark.parametrize("name, overrides, message", BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS])
def test_contradicting_config_rejected(name, overrides, message):
    with pytest.raises(ValueError, match=r"Invalid Bad:\n  - " + message):
        type("Bad", (Config,), overrides)()


def test_config_lists_every_problem_at_once():
    with pytest.raises(ValueError) as error:
        type("Bad", (Config,), {"NUM_CLASSES": 0, "LEARNING_RATE": -1.0})()
    assert re.findall(r"\n  - ", str(error.value)) == ["\n  - "] * 2


############################################################
#  detect()
############################################################


@pytest.fixture(scope="module")
def inference_model(tmp_path_factory):
    return modellib.MaskRCNN("inference", TinyModelConfig(), str(tmp_path_factory.mktemp("logs")))


BAD_DETECT_INPUTS = [
    (
        "single_array_not_list",
        np.zeros((64, 64, 3), np.uint8),
        ValueError,
        r"detect\(\) takes a list of images; wrap a single image as \[image\]",
    ),
    ("no_images", [], ValueError, r"detect\(\) was given no images"),
    (
        "path_string",
        "photo.jpg",
        TypeError,
        r"detect\(\) takes a list of images \(\[H, W, C\] arrays\), got str",
    ),
    ("list_of_paths", ["photo.jpg"], TypeError, r"Image 0 is a str; give a numpy array \[H, W, C\]"),
    ("pil_image", [Image.new("RGB", (8, 8))], TypeError, r"Image 0 is a Image; give a numpy array"),
    (
        "batch_inside_list",
        [np.zeros((2, 64, 64, 3), np.uint8)],
        ValueError,
        r"Image 0 has shape \(2, 64, 64, 3\); the model expects \[H, W, 3\] \(IMAGE_CHANNEL_COUNT=3\)",
    ),
    (
        "five_channels",
        [RGB, np.zeros((64, 64, 5), np.uint8)],
        ValueError,
        r"Image 1 has shape \(64, 64, 5\); the model expects \[H, W, 3\]",
    ),
    ("empty_image", [np.zeros((0, 10, 3), np.uint8)], ValueError, r"Image 0 is empty \(shape \(0, 10, 3\)\)"),
    (
        "bool",
        [np.zeros((8, 8, 3), bool)],
        TypeError,
        r"Image 0 has dtype bool; give uint8 \(0\.\.255\) or float",
    ),
    ("nan", [np.full((8, 8, 3), np.nan, np.float32)], ValueError, r"Image 0 contains NaN or infinite pixels"),
    (
        "uint16",
        [np.full((8, 8, 3), 4000, np.uint16)],
        ValueError,
        r"mold_image input has uint16 pixels in 4000\.\.4000, outside 0\.\.255",
    ),
    (
        "float_0_to_1",
        [np.full((8, 8, 3), 0.5, np.float32)],
        ValueError,
        r"mold_image input has float pixels in 0\.5\.\.0\.5: it looks scaled to 0\.\.1",
    ),
]


@pytest.mark.parametrize(
    "name, images, error, message", BAD_DETECT_INPUTS, ids=[case[0] for case in BAD_DETECT_INPUTS]
)
def test_detect_rejects(inference_model, name, images, error, message):
    with pytest.raises(error, match=message):
        inference_model.detect(images)


def test_detect_in_training_mode(tmp_path):
    model = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    model.mode, model.config = "training", TinyModelConfig()
    with pytest.raises(ValueError, match=r"Create the model in inference mode to detect"):
        model.detect([RGB])


############################################################
#  Weights files
############################################################

CLASS_SPECIFIC = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask"]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory, inference_model):
    """Files a user might hand to load_weights: good, truncated, HTML, Keras 3, classifier, other classes."""
    folder = tmp_path_factory.mktemp("weights")
    files = {
        "good": folder / "good.h5",
        "html": folder / "page.h5",
        "truncated": folder / "truncated.h5",
        "keras3": folder / "model.keras",
        "keras3_weights": folder / "k3.weights.h5",
        "classifier": folder / "resnet50_classifier.h5",
        "other_classes": folder / "five_classes.h5",
        "strings": folder / "strings.h5",
    }
    inference_model.save_weights(str(files["good"]))
    files["html"].write_text("<html><body>404 Not Found</body></html>")
    whole = files["good"].read_bytes()
    files["truncated"].write_bytes(whole[: len(whole) // 3])
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")])
    small.save(files["keras3"])
    small.save_weights(files["keras3_weights"])
    # A keras.applications classifier (random weights), saved in the legacy HDF5 format it has.
    keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10).save(files["classifier"])

    class FiveClasses(TinyModelConfig):
        NUM_CLASSES = 5

    other = modellib.MaskRCNN("inference", FiveClasses(), str(folder))
    other.save_weights(str(files["other_classes"]))
    with h5py.File(files["strings"], "w") as f:
        f.attrs["layer_names"] = np.array([b"mrcnn_bbox_fc"])
        group = f.create_group("mrcnn_bbox_fc")
        group.attrs["weight_names"] = np.array([b"mrcnn_bbox_fc/kernel:0", b"mrcnn_bbox_fc/bias:0"])
        kernel = inference_model.keras_model.get_layer("mrcnn_bbox_fc").weights[0].shape
        group.create_dataset(
            "mrcnn_bbox_fc/kernel:0", data=np.full(kernel, "x", dtype=object), dtype=h5py.string_dtype()
        )
        group.create_dataset("mrcnn_bbox_fc/bias:0", data=np.zeros(kernel[-1], np.float32))
    return files


BAD_WEIGHT_FILES = [
    ("missing_file", "missing", {}, FileNotFoundError, r"Weights file not found: .*missing\.h5"),
    (
        "not_hdf5",
        "html",
        {},
        ValueError,
        r"page\.h5 is not a valid HDF5 weights file \(wrong format, or an incomplete download\); re-download",
    ),
    ("truncated", "truncated", {}, ValueError, r"truncated\.h5 is not a valid HDF5 weights file"),
    (
        "keras3_archive",
        "keras3",
        {},
        ValueError,
        r"model\.keras is a Keras 3 '\.keras' archive, not an HDF5 weights file\..*keras\.saving\.load_model",
    ),
    (
        "keras3_weights_h5",
        "keras3_weights",
        {},
        ValueError,
        r"k3\.weights\.h5 is a Keras 3 '\.weights\.h5' file \(layers/<name>/vars/<i>\)",
    ),
    (
        "classifier_by_name",
        "classifier",
        {"by_name": True},
        ValueError,
        r"No layer of .*resnet50_classifier\.h5 matches a layer of the model: the file's layers are "
        r"\['conv1_conv', 'conv1_bn', .*keras\.applications classifier.*get_imagenet_weights",
    ),
    ("classifier_strict", "classifier", {}, ValueError, r"No layer of .*resnet50_classifier\.h5 matches"),
    (
        "num_classes_mismatch",
        "other_classes",
        {"by_name": True},
        ValueError,
        r"Shape mismatch for layer 'mrcnn_class_logits': "
        r"weight 'mrcnn_class_logits/kernel:0' is \(32, 5\) in "
        r".* but \(32, 4\) in the model\. .*exclude=\['mrcnn_class_logits', 'mrcnn_bbox_fc', 'mrcnn_bbox', "
        r"'mrcnn_mask'\]",
    ),
    (
        "non_numeric_dataset",
        "strings",
        {"by_name": True},
        ValueError,
        r"weight 'mrcnn_bbox_fc/kernel:0' of layer 'mrcnn_bbox_fc' holds object data, not numbers",
    ),
]


@pytest.mark.parametrize(
    "name, key, kwargs, error, message", BAD_WEIGHT_FILES, ids=[case[0] for case in BAD_WEIGHT_FILES]
)
def test_bad_weights_file_rejected_and_model_untouched(
    inference_model, weight_files, name, key, kwargs, error, message
):
    path = weight_files["good"].parent / "missing.h5" if key == "missing" else weight_files[key]
    before = [w.numpy() for w in inference_model.keras_model.weights]
    with pytest.raises(error, match=message):
        inference_model.load_weights(str(path), **kwargs)
    for old, new in zip(before, inference_model.keras_model.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_num_classes_mismatch_loads_with_the_suggested_exclude(inference_model, weight_files):
    report = inference_model.load_weights(
        str(weight_files["other_classes"]), by_name=True, exclude=CLASS_SPECIFIC
    )
    # mrcnn_bbox reshapes mrcnn_bbox_fc's output: it has no weights, so it is neither excluded nor missing.
    assert sorted(report["excluded"]) == ["mrcnn_bbox_fc", "mrcnn_class_logits", "mrcnn_mask"]
    assert report["missing"] == [] and report["tensors"] > 0
    with h5py.File(weight_files["other_classes"], "r") as f:
        stored = np.asarray(f["fpn_p2"]["fpn_p2"]["kernel:0"])
    np.testing.assert_array_equal(inference_model.keras_model.get_layer("fpn_p2").weights[0].numpy(), stored)
