"""Mask R-CNN configuration.

Subclass :class:`Config` and override the class attributes that differ for your data, exactly as in
Matterport's Mask_RCNN (every attribute name and default value is kept). Beyond Matterport, the
constructor validates the settings and raises ``ValueError`` for combinations that cannot work, and
``to_dict()`` / ``from_dict()`` let a checkpoint carry the configuration it was trained with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mrcnn.transform.image_meta import image_meta_size
from mrcnn.transform.resizing import RESIZE_MODES


class Config:
    """Base configuration. Override attributes in a subclass; derived values are computed in ``__init__``.

    Derived attributes: ``BATCH_SIZE = IMAGES_PER_GPU * GPU_COUNT``; ``IMAGE_SHAPE`` = [MIN_DIM, MIN_DIM, C]
    in "crop" mode else [MAX_DIM, MAX_DIM, C]; ``IMAGE_META_SIZE`` = 12 + NUM_CLASSES (the layout is in
    ``mrcnn.transform.image_meta``).
    """

    # Experiment name, used (lower-cased) in log directory and checkpoint names.
    NAME = None
    # GPUs to train on; > 1 trains under tf.distribute.MirroredStrategy.
    GPU_COUNT = 1
    # Images per replica in each step.
    IMAGES_PER_GPU = 2
    # Training steps per epoch (an epoch here need not cover the dataset).
    STEPS_PER_EPOCH = 1000
    # Validation steps at the end of each epoch.
    VALIDATION_STEPS = 50
    # "resnet50", "resnet101", or a callable with resnet_graph's signature.
    BACKBONE = "resnet101"
    # Required when BACKBONE is a callable: image_shape -> [[h, w] per pyramid level].
    COMPUTE_BACKBONE_SHAPE = None
    # Strides of the pyramid levels P2..P6, in pixels.
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    # Width of the two "fully connected" (convolutional) layers of the box head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    # Channels of the mask head's four 3x3 convs and its deconv (not in Matterport, which fixed 256 —
    # the COCO weights need 256; a smaller head trains several times faster from scratch).
    FPN_MASK_CONV_LAYERS_SIZE = 256
    # Channel depth of the feature pyramid.
    TOP_DOWN_PYRAMID_SIZE = 256
    # Number of classes including background.
    NUM_CLASSES = 1
    # Side of square anchors in pixels, one per pyramid level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    # Anchor width/height ratios.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    # Place anchors every RPN_ANCHOR_STRIDE feature-map cells.
    RPN_ANCHOR_STRIDE = 1
    # IoU threshold of the proposal NMS.
    RPN_NMS_THRESHOLD = 0.7
    # Anchors per image used to train the RPN.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    # Top-scoring anchors kept before the proposal NMS.
    PRE_NMS_LIMIT = 6000
    # Proposals kept after NMS in training and in inference.
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000
    # Store instance masks cropped to their box and resized to MINI_MASK_SHAPE.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    # Resize mode: "none", "square", "pad64" or "crop" (see utils.resize_image).
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    IMAGE_MIN_SCALE = 0
    # Image channels (3 for RGB).
    IMAGE_CHANNEL_COUNT = 3
    # Per-channel mean subtracted from images (RGB).
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])
    # RoIs per image fed to the heads in training, and the share of positives among them.
    TRAIN_ROIS_PER_IMAGE = 200
    ROI_POSITIVE_RATIO = 0.33
    # RoIAlign output sizes for the box and mask heads.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    # Mask head output size.
    MASK_SHAPE = [28, 28]
    # Ground-truth instances kept per image.
    MAX_GT_INSTANCES = 100
    # Standard deviations that scale the box deltas of the RPN and of the final detections.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    # Final detections per image, minimum score and per-class NMS threshold.
    DETECTION_MAX_INSTANCES = 100
    DETECTION_MIN_CONFIDENCE = 0.7
    DETECTION_NMS_THRESHOLD = 0.3
    # SGD settings.
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    WEIGHT_DECAY = 0.0001
    # Weight of each loss in the total.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }
    # False trains the heads on RoIs given as an extra `input_roi` input instead of the RPN's.
    USE_RPN_ROIS = True
    # False freezes BatchNorm (moving statistics in training too); right for small batches.
    TRAIN_BN = False
    # Gradient norm clipping of the SGD optimizer.
    GRADIENT_CLIP_NORM = 5.0
    # Keras dtype policy for the graph: None (float32), "mixed_float16" (GPU) or "mixed_bfloat16"
    # (CPU/TPU). NMS, box decoding and the losses always run in float32.
    MIXED_PRECISION = None

    def __init__(self) -> None:
        """Compute the derived attributes and validate the configuration."""
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        if self.IMAGE_RESIZE_MODE == "crop":
            side = self.IMAGE_MIN_DIM
        else:
            side = self.IMAGE_MAX_DIM
        self.IMAGE_SHAPE = np.array([side, side, self.IMAGE_CHANNEL_COUNT])
        self.IMAGE_META_SIZE = image_meta_size(self.NUM_CLASSES)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the attribute and the fix for settings that cannot work."""
        errors = []

        def check(condition, message):
            if not condition:
                errors.append(message)

        check(isinstance(self.GPU_COUNT, int) and self.GPU_COUNT >= 1, "GPU_COUNT must be an integer >= 1.")
        check(
            isinstance(self.IMAGES_PER_GPU, int) and self.IMAGES_PER_GPU >= 1,
            "IMAGES_PER_GPU must be an integer >= 1.",
        )
        check(
            isinstance(self.NUM_CLASSES, int) and self.NUM_CLASSES >= 1,
            "NUM_CLASSES must be an integer >= 1 (background included); set it to 1 + your class count.",
        )
        check(
            self.IMAGE_RESIZE_MODE in RESIZE_MODES,
            f"IMAGE_RESIZE_MODE {self.IMAGE_RESIZE_MODE!r} is not one of {RESIZE_MODES}.",
        )
        if self.IMAGE_RESIZE_MODE in ("square", "crop"):
            side_name = "IMAGE_MIN_DIM" if self.IMAGE_RESIZE_MODE == "crop" else "IMAGE_MAX_DIM"
            side = getattr(self, side_name)
            check(
                side % 64 == 0,
                f"{side_name}={side} must be a multiple of 64 in {self.IMAGE_RESIZE_MODE!r} mode "
                f"(the pyramid halves the image 6 times); use {max(64, int(round(side / 64)) * 64)}.",
            )
        if self.IMAGE_RESIZE_MODE == "pad64":
            check(
                self.IMAGE_MIN_DIM % 64 == 0,
                f"IMAGE_MIN_DIM={self.IMAGE_MIN_DIM} must be a multiple of 64 in 'pad64' mode.",
            )
        if isinstance(self.BACKBONE, str):
            check(
                list(self.BACKBONE_STRIDES) == [4, 8, 16, 32, 64],
                f"BACKBONE_STRIDES={list(self.BACKBONE_STRIDES)} contradicts BACKBONE={self.BACKBONE!r}, "
                "whose pyramid levels P2..P6 have strides [4, 8, 16, 32, 64]; keep those (anchors would "
                "not line up with the feature maps).",
            )
        check(
            isinstance(self.IMAGE_CHANNEL_COUNT, int) and self.IMAGE_CHANNEL_COUNT >= 1,
            "IMAGE_CHANNEL_COUNT must be a positive integer.",
        )
        check(
            np.size(self.MEAN_PIXEL) == self.IMAGE_CHANNEL_COUNT,
            f"MEAN_PIXEL has {np.size(self.MEAN_PIXEL)} values but IMAGE_CHANNEL_COUNT is "
            f"{self.IMAGE_CHANNEL_COUNT}; give one mean per channel.",
        )
        check(
            len(self.RPN_ANCHOR_RATIOS) > 0 and all(r > 0 for r in self.RPN_ANCHOR_RATIOS),
            "RPN_ANCHOR_RATIOS must be a non-empty list of positive width/height ratios.",
        )
        check(
            len(self.RPN_ANCHOR_SCALES) == len(self.BACKBONE_STRIDES),
            f"RPN_ANCHOR_SCALES has {len(self.RPN_ANCHOR_SCALES)} scales but BACKBONE_STRIDES has "
            f"{len(self.BACKBONE_STRIDES)} levels; give one anchor scale per pyramid level.",
        )
        check(
            isinstance(self.BACKBONE, str)
            and self.BACKBONE in ("resnet50", "resnet101")
            or callable(self.BACKBONE),
            f"BACKBONE {self.BACKBONE!r} must be 'resnet50', 'resnet101' or a callable.",
        )
        check(
            not callable(self.BACKBONE) or callable(self.COMPUTE_BACKBONE_SHAPE),
            "A callable BACKBONE needs COMPUTE_BACKBONE_SHAPE (image_shape -> feature map shapes).",
        )
        check(0 < self.ROI_POSITIVE_RATIO <= 1, "ROI_POSITIVE_RATIO must be in (0, 1].")
        check(self.TRAIN_ROIS_PER_IMAGE >= 1, "TRAIN_ROIS_PER_IMAGE must be >= 1.")
        check(
            min(self.PRE_NMS_LIMIT, self.POST_NMS_ROIS_INFERENCE, self.POST_NMS_ROIS_TRAINING) >= 1,
            "PRE_NMS_LIMIT and POST_NMS_ROIS_* must be >= 1.",
        )
        check(self.DETECTION_MAX_INSTANCES >= 1, "DETECTION_MAX_INSTANCES must be >= 1.")
        check(0 <= self.DETECTION_MIN_CONFIDENCE <= 1, "DETECTION_MIN_CONFIDENCE must be in [0, 1].")
        check(
            0 < self.RPN_NMS_THRESHOLD <= 1 and 0 < self.DETECTION_NMS_THRESHOLD <= 1,
            "RPN_NMS_THRESHOLD and DETECTION_NMS_THRESHOLD must be in (0, 1].",
        )
        check(
            len(self.MASK_SHAPE) == 2 and list(self.MASK_SHAPE) == [2 * self.MASK_POOL_SIZE] * 2,
            f"MASK_SHAPE {list(self.MASK_SHAPE)} must be twice MASK_POOL_SIZE ({self.MASK_POOL_SIZE}) "
            "on each side: the mask head upsamples its pooled features once by 2.",
        )
        check(self.MAX_GT_INSTANCES >= 1, "MAX_GT_INSTANCES must be >= 1.")
        check(
            self.FPN_MASK_CONV_LAYERS_SIZE >= 1 and self.FPN_CLASSIF_FC_LAYERS_SIZE >= 1,
            "FPN_MASK_CONV_LAYERS_SIZE and FPN_CLASSIF_FC_LAYERS_SIZE must be >= 1.",
        )
        check(
            set(self.LOSS_WEIGHTS) == set(Config.LOSS_WEIGHTS),
            f"LOSS_WEIGHTS must have exactly the keys {sorted(Config.LOSS_WEIGHTS)}.",
        )
        check(self.RPN_ANCHOR_STRIDE >= 1, "RPN_ANCHOR_STRIDE must be >= 1.")
        check(
            self.RPN_TRAIN_ANCHORS_PER_IMAGE >= 2,
            "RPN_TRAIN_ANCHORS_PER_IMAGE must be >= 2 (half of them at most are positive).",
        )
        check(
            len(self.MINI_MASK_SHAPE) == 2 and min(self.MINI_MASK_SHAPE) >= 1,
            f"MINI_MASK_SHAPE {self.MINI_MASK_SHAPE} must be (height, width) with both >= 1.",
        )
        check(
            self.STEPS_PER_EPOCH >= 1 and self.VALIDATION_STEPS >= 1,
            "STEPS_PER_EPOCH and VALIDATION_STEPS must be >= 1.",
        )
        check(self.LEARNING_RATE > 0, f"LEARNING_RATE={self.LEARNING_RATE} must be > 0.")
        check(
            self.MIXED_PRECISION in (None, "mixed_float16", "mixed_bfloat16"),
            f"MIXED_PRECISION={self.MIXED_PRECISION!r}: use None, 'mixed_float16' or 'mixed_bfloat16'.",
        )
        if errors:
            raise ValueError(f"Invalid {type(self).__name__}:\n  - " + "\n  - ".join(errors))

    def display(self) -> None:
        """Print every configuration value, alphabetically, as Matterport does."""
        print("\nConfigurations:")
        for name in dir(self):
            if not name.startswith("__") and not callable(getattr(self, name)):
                print(f"{name:30} {getattr(self, name)}")
        print("\n")

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serializable dict (upper-case attributes only).

        Arrays become lists, tuples become lists; a callable BACKBONE is stored by its qualified name
        (it cannot be rebuilt from the dict).
        """
        values = {}
        for name in dir(self):
            if not name.isupper() or name.startswith("_"):
                continue
            value = getattr(self, name)
            if callable(value):
                qualname = getattr(value, "__qualname__", repr(value))
                value = f"<callable {getattr(value, '__module__', '?')}.{qualname}>"
            values[name] = _to_jsonable(value)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """Build a config of this class with the attributes of ``values`` (as made by ``to_dict``).

        Derived attributes (BATCH_SIZE, IMAGE_SHAPE, IMAGE_META_SIZE) are recomputed, not read.
        Unknown keys raise ValueError so typos do not pass silently.
        """
        derived = {"BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE"}
        attributes = {}
        for name, value in values.items():
            if name in derived:
                continue
            if not hasattr(cls, name):
                raise ValueError(f"Unknown configuration attribute {name!r} for {cls.__name__}.")
            default = getattr(cls, name)
            if isinstance(value, str) and value.startswith("<callable "):
                raise ValueError(f"{name} was a callable ({value}); subclass the config and set it in code.")
            attributes[name] = _like(default, value)
        config_class = type(cls.__name__, (cls,), attributes)
        return config_class()

    def to_json(self) -> str:
        """The configuration as a JSON string (see ``to_dict``)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def _to_jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _like(default, value):
    """Convert a JSON value back to the type of the class default (array, tuple, ...)."""
    if isinstance(default, np.ndarray):
        return np.array(value, dtype=default.dtype)
    if isinstance(default, tuple):
        return tuple(value)
    return value
