"""The configurations of Matterport's samples, defined once for the sample scripts and the ``mrcnn`` command.

``samples/coco/coco.py``, ``samples/balloon/balloon.py`` and ``samples/nucleus/nucleus.py`` import their
Config classes from here and keep exposing them under Matterport's names (``from samples.balloon.balloon
import BalloonConfig`` still works); the shapes sample's configs live with its dataset in
``mrcnn.datasets.shapes``. ``mrcnn --config coco|shapes|balloon|nucleus`` reads :data:`SAMPLES`.

Why here and not in ``samples/``: ``setup.py`` installs only the ``mrcnn`` package, so after a plain
``pip install .`` the console script has no ``samples/`` folder to import from, and ``mrcnn detect`` needs
the COCO config by default. Keeping the few lines of configuration in the package (as was already done for
shapes) works for editable and non-editable installs alike, without a second copy of the values.
"""

from typing import NamedTuple

import numpy as np

from mrcnn.config import Config
from mrcnn.datasets.coco_names import COCO_CLASS_NAMES
from mrcnn.datasets.shapes import SHAPE_NAMES, ShapesFastConfig, ShapesInferenceConfig

############################################################
#  COCO
############################################################


class CocoConfig(Config):
    """Training on MS COCO: 80 classes plus background, 2 images per GPU."""

    NAME = "coco"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 80


class CocoInferenceConfig(CocoConfig):
    """Evaluation: one image at a time, every detection kept (COCOeval ranks them by score)."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MIN_CONFIDENCE = 0


############################################################
#  Balloon
############################################################


class BalloonConfig(Config):
    """Training configuration for the balloon dataset (background + balloon)."""

    NAME = "balloon"
    IMAGES_PER_GPU = 2
    NUM_CLASSES = 1 + 1
    STEPS_PER_EPOCH = 100
    DETECTION_MIN_CONFIDENCE = 0.9


class BalloonInferenceConfig(BalloonConfig):
    """Splash (inference) configuration: one image at a time."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1


############################################################
#  Nucleus
############################################################

# Matterport's validation split of DSB2018 stage1_train (a variety of image types); "train" is the rest.
NUCLEUS_VAL_IMAGE_IDS = [
    "0c2550a23b8a0f29a7575de8c61690d3c31bc897dd5ba66caec201d201a278c2",
    "92f31f591929a30e4309ab75185c96ff4314ce0a7ead2ed2c2171897ad1da0c7",
    "1e488c42eb1a54a3e8412b1f12cde530f950f238d71078f2ede6a85a02168e1f",
    "c901794d1a421d52e5734500c0a2a8ca84651fb93b19cec2f411855e70cae339",
    "8e507d58f4c27cd2a82bee79fe27b069befd62a46fdaed20970a95a2ba819c7b",
    "60cb718759bff13f81c4055a7679e81326f78b6a193a2d856546097c949b20ff",
    "da5f98f2b8a64eee735a398de48ed42cd31bf17a6063db46a9e0783ac13cd844",
    "9ebcfaf2322932d464f15b5662cae4d669b2d785b8299556d73fffcae8365d32",
    "1b44d22643830cd4f23c9deadb0bd499fb392fb2cd9526d81547d93077d983df",
    "97126a9791f0c1176e4563ad679a301dac27c59011f579e808bbd6e9f4cd1034",
    "e81c758e1ca177b0942ecad62cf8d321ffc315376135bcbed3df932a6e5b40c0",
    "f29fd9c52e04403cd2c7d43b6fe2479292e53b2f61969d25256d2d2aca7c6a81",
    "0ea221716cf13710214dcd331a61cea48308c3940df1d28cfc7fd817c83714e1",
    "3ab9cab6212fabd723a2c5a1949c2ded19980398b56e6080978e796f45cbbc90",
    "ebc18868864ad075548cc1784f4f9a237bb98335f9645ee727dac8332a3e3716",
    "bb61fc17daf8bdd4e16fdcf50137a8d7762bec486ede9249d92e511fcb693676",
    "e1bcb583985325d0ef5f3ef52957d0371c96d4af767b13e48102bca9d5351a9b",
    "947c0d94c8213ac7aaa41c4efc95d854246550298259cf1bb489654d0e969050",
    "cbca32daaae36a872a11da4eaff65d1068ff3f154eedc9d3fc0c214a4e5d32bd",
    "f4c4db3df4ff0de90f44b027fc2e28c16bf7e5c75ea75b0a9762bbb7ac86e7a3",
    "4193474b2f1c72f735b13633b219d9cabdd43c21d9c2bb4dfc4809f104ba4c06",
    "f73e37957c74f554be132986f38b6f1d75339f636dfe2b681a0cf3f88d2733af",
    "a4c44fc5f5bf213e2be6091ccaed49d8bf039d78f6fbd9c4d7b7428cfcb2eda4",
    "cab4875269f44a701c5e58190a1d2f6fcb577ea79d842522dcab20ccb39b7ad2",
    "8ecdb93582b2d5270457b36651b62776256ade3aaa2d7432ae65c14f07432d49",
]


class NucleusConfig(Config):
    """Training configuration: random 512x512 crops (images upscaled 2x first), ResNet-50, small anchors."""

    NAME = "nucleus"
    IMAGES_PER_GPU = 6
    NUM_CLASSES = 1 + 1
    STEPS_PER_EPOCH = (657 - len(NUCLEUS_VAL_IMAGE_IDS)) // IMAGES_PER_GPU
    VALIDATION_STEPS = max(1, len(NUCLEUS_VAL_IMAGE_IDS) // IMAGES_PER_GPU)
    DETECTION_MIN_CONFIDENCE = 0  # one class: the class score is >= 0.5 whenever it wins over background
    BACKBONE = "resnet50"
    IMAGE_RESIZE_MODE = "crop"
    IMAGE_MIN_DIM = 512
    IMAGE_MAX_DIM = 512
    IMAGE_MIN_SCALE = 2.0
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    POST_NMS_ROIS_TRAINING = 1000
    POST_NMS_ROIS_INFERENCE = 2000
    RPN_NMS_THRESHOLD = 0.9
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MEAN_PIXEL = np.array([43.53, 39.56, 48.22])
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    TRAIN_ROIS_PER_IMAGE = 128
    MAX_GT_INSTANCES = 200
    DETECTION_MAX_INSTANCES = 400


class NucleusInferenceConfig(NucleusConfig):
    """Detection configuration: one image at a time, padded to a multiple of 64 instead of cropped."""

    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    IMAGE_RESIZE_MODE = "pad64"
    RPN_NMS_THRESHOLD = 0.7


############################################################
#  The samples by name
############################################################


class Sample(NamedTuple):
    """A sample's training config, its inference config and its class names ("BG" first)."""

    config: type[Config]
    inference_config: type[Config]
    class_names: tuple[str, ...]


SAMPLES: dict[str, Sample] = {
    "shapes": Sample(ShapesFastConfig, ShapesInferenceConfig, ("BG", *SHAPE_NAMES)),
    "coco": Sample(CocoConfig, CocoInferenceConfig, tuple(COCO_CLASS_NAMES)),
    "balloon": Sample(BalloonConfig, BalloonInferenceConfig, ("BG", "balloon")),
    "nucleus": Sample(NucleusConfig, NucleusInferenceConfig, ("BG", "nucleus")),
}
"""The samples ``mrcnn --config NAME`` knows, in the order its help lists them."""
