"""Small configs shared by the tests (imported as ``from tiny_configs import ...``; conftest.py puts this
directory on sys.path).

Two families, each a chain of subclasses, so that a test's own config states only what it changes:

- ``Tiny64Config`` -> ``TinyTargetsConfig``: Matterport's ``Config`` at 64x64 (its ResNet-101 is never
  built) for the numpy and graph stages: targets, losses, proposals, detection, input checks, fuzzing.
- ``Shapes64Config`` -> ``TinyShapesConfig`` -> ``TinyShapesTrainConfig``: the shapes demo's
  ``ShapesFastConfig`` (small backbone, trained BatchNorm) at 64x64, for tests that build a MaskRCNN.

Class attributes are what ``Config.__init__`` derives from (``BATCH_SIZE``, ``IMAGE_SHAPE``, ...), so a
variant is a subclass, never an instance attribute set afterwards: ``config_with`` makes one on the fly.
"""

from mrcnn.config import Config
from mrcnn.datasets.shapes import ShapesFastConfig


class Tiny64Config(Config):
    """Matterport's defaults at 64x64 (square resize, 2 images per GPU, background-only NUM_CLASSES)."""

    NAME = "tiny"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64


class TinyTargetsConfig(Tiny64Config):
    """64x64, three classes (background + 2), 8 training RoIs, 14x14 mini masks and 28x28 mask targets."""

    NUM_CLASSES = 3
    TRAIN_ROIS_PER_IMAGE = 8
    MINI_MASK_SHAPE = (14, 14)
    MASK_SHAPE = [28, 28]


class Shapes64Config(ShapesFastConfig):
    """ShapesFastConfig (small backbone, 4 classes, anchors from 8 px) at 64x64, one image per batch."""

    NAME = "shapes64"
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64


class TinyShapesConfig(Shapes64Config):
    """Shapes64Config with narrow pyramid and heads: a MaskRCNN builds in about a second."""

    NAME = "tinyshapes"
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    FPN_MASK_CONV_LAYERS_SIZE = 16


class TinyShapesTrainConfig(TinyShapesConfig):
    """TinyShapesConfig for ``train()``: batches of 2, epochs of 2 steps and 1 validation step, few RoIs."""

    IMAGES_PER_GPU = 2
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    TRAIN_ROIS_PER_IMAGE = 8
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32


def config_with(base: type[Config] = TinyShapesConfig, class_name: str | None = None, **overrides) -> Config:
    """An instance of a subclass of ``base`` with ``overrides`` as class attributes (``NAME=...`` etc.)."""
    return type(class_name or base.__name__, (base,), overrides)()
