"""Config: Matterport defaults, derived values, validation, dict round trip."""

import numpy as np
import pytest

from mrcnn.config import Config

MATTERPORT_DEFAULTS = {
    "NAME": None,
    "GPU_COUNT": 1,
    "IMAGES_PER_GPU": 2,
    "STEPS_PER_EPOCH": 1000,
    "VALIDATION_STEPS": 50,
    "BACKBONE": "resnet101",
    "COMPUTE_BACKBONE_SHAPE": None,
    "BACKBONE_STRIDES": [4, 8, 16, 32, 64],
    "FPN_CLASSIF_FC_LAYERS_SIZE": 1024,
    "TOP_DOWN_PYRAMID_SIZE": 256,
    "NUM_CLASSES": 1,
    "RPN_ANCHOR_SCALES": (32, 64, 128, 256, 512),
    "RPN_ANCHOR_RATIOS": [0.5, 1, 2],
    "RPN_ANCHOR_STRIDE": 1,
    "RPN_NMS_THRESHOLD": 0.7,
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 256,
    "PRE_NMS_LIMIT": 6000,
    "POST_NMS_ROIS_TRAINING": 2000,
    "POST_NMS_ROIS_INFERENCE": 1000,
    "USE_MINI_MASK": True,
    "MINI_MASK_SHAPE": (56, 56),
    "IMAGE_RESIZE_MODE": "square",
    "IMAGE_MIN_DIM": 800,
    "IMAGE_MAX_DIM": 1024,
    "IMAGE_MIN_SCALE": 0,
    "IMAGE_CHANNEL_COUNT": 3,
    "TRAIN_ROIS_PER_IMAGE": 200,
    "ROI_POSITIVE_RATIO": 0.33,
    "POOL_SIZE": 7,
    "MASK_POOL_SIZE": 14,
    "MASK_SHAPE": [28, 28],
    "MAX_GT_INSTANCES": 100,
    "DETECTION_MAX_INSTANCES": 100,
    "DETECTION_MIN_CONFIDENCE": 0.7,
    "DETECTION_NMS_THRESHOLD": 0.3,
    "LEARNING_RATE": 0.001,
    "LEARNING_MOMENTUM": 0.9,
    "WEIGHT_DECAY": 0.0001,
    "USE_RPN_ROIS": True,
    "TRAIN_BN": False,
    "GRADIENT_CLIP_NORM": 5.0,
    "LOSS_WEIGHTS": {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    },
}


def test_defaults_match_matterport():
    config = Config()
    for name, value in MATTERPORT_DEFAULTS.items():
        assert getattr(config, name) == value, name
    np.testing.assert_array_equal(config.MEAN_PIXEL, [123.7, 116.8, 103.9])
    assert config.MEAN_PIXEL.dtype == np.float64
    np.testing.assert_array_equal(config.RPN_BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    np.testing.assert_array_equal(config.BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])


def test_derived_values():
    config = Config()
    assert config.BATCH_SIZE == 2
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [1024, 1024, 3])
    assert config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 1

    class Crop(Config):
        IMAGE_RESIZE_MODE = "crop"
        IMAGE_MIN_DIM = 512
        GPU_COUNT = 2
        NUM_CLASSES = 5

    crop = Crop()
    np.testing.assert_array_equal(crop.IMAGE_SHAPE, [512, 512, 3])
    assert crop.BATCH_SIZE == 4
    assert crop.IMAGE_META_SIZE == 17


def test_display_prints_every_attribute(capsys):
    Config().display()
    out = capsys.readouterr().out
    assert out.strip().startswith("Configurations:")
    for name in list(MATTERPORT_DEFAULTS) + ["BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE", "MEAN_PIXEL"]:
        assert f"\n{name:30} " in out, name


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"IMAGE_MAX_DIM": 1000}, "multiple of 64"),
        ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 500}, "multiple of 64"),
        ({"IMAGE_RESIZE_MODE": "stretch"}, "IMAGE_RESIZE_MODE"),
        ({"MEAN_PIXEL": np.array([1.0, 2.0])}, "MEAN_PIXEL"),
        ({"IMAGE_CHANNEL_COUNT": 4}, "MEAN_PIXEL"),
        ({"RPN_ANCHOR_RATIOS": []}, "RPN_ANCHOR_RATIOS"),
        ({"NUM_CLASSES": 0}, "NUM_CLASSES"),
        ({"BACKBONE": "vgg16"}, "BACKBONE"),
        ({"BACKBONE": lambda *a, **k: None}, "COMPUTE_BACKBONE_SHAPE"),
        ({"RPN_ANCHOR_SCALES": (32, 64)}, "one anchor scale per pyramid level"),
        ({"MASK_SHAPE": [56, 56]}, "MASK_POOL_SIZE"),
        ({"LOSS_WEIGHTS": {"rpn_class_loss": 1.0}}, "LOSS_WEIGHTS"),
    ],
)
def test_validation_names_the_problem(overrides, message):
    bad = type("Bad", (Config,), overrides)
    with pytest.raises(ValueError, match=message):
        bad()


def test_matterport_sample_configs_are_valid():
    class Nucleus(Config):
        NAME = "nucleus"
        IMAGES_PER_GPU = 6
        NUM_CLASSES = 2
        BACKBONE = "resnet50"
        IMAGE_RESIZE_MODE = "crop"
        IMAGE_MIN_DIM = 512
        IMAGE_MAX_DIM = 512
        IMAGE_MIN_SCALE = 2.0
        MEAN_PIXEL = np.array([43.53, 39.56, 48.22])

    class Small(Config):
        IMAGE_MAX_DIM = 512  # IMAGE_MIN_DIM stays 800: allowed, MAX_DIM caps the scale.

    Nucleus()
    Small()


def test_dict_round_trip_restores_types():
    class Shapes(Config):
        NAME = "shapes"
        NUM_CLASSES = 4
        IMAGE_MIN_DIM = 128
        IMAGE_MAX_DIM = 128
        RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
        MEAN_PIXEL = np.array([1.0, 2.0, 3.0])

    values = Shapes().to_dict()
    import json

    values = json.loads(json.dumps(values))
    restored = Config.from_dict(values)
    assert restored.NAME == "shapes"
    assert restored.RPN_ANCHOR_SCALES == (8, 16, 32, 64, 128)
    assert isinstance(restored.MEAN_PIXEL, np.ndarray)
    np.testing.assert_array_equal(restored.MEAN_PIXEL, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(restored.IMAGE_SHAPE, [128, 128, 3])
    assert restored.IMAGE_META_SIZE == 16
    assert restored.to_dict() == values


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="IMAGES_PER_GPUU"):
        Config.from_dict({"IMAGES_PER_GPUU": 3})
