"""The trained model the export tests compare every runtime on, and the script that trains it.

``ExportShapesConfig`` is the test suite's small shapes network at 128x128. Its weights,
``tests/data/export_shapes.h5``, come from ``python tests/export_weights.py`` (a few minutes of
training on the synthetic shapes; rerun it if the network's layers change). Trained weights give
distinct, confident scores, so exports and ``detect()`` can be compared detection for detection;
an untrained network scores everything nearly alike and any rounding reorders it.
"""

import argparse
import time
from pathlib import Path

from tiny_configs import TinyShapesConfig

WEIGHTS = Path(__file__).resolve().parent / "data" / "export_shapes.h5"


class ExportShapesConfig(TinyShapesConfig):
    """TinyShapesConfig at 128x128 with up to 10 detections of confidence >= 0.7."""

    NAME = "export_shapes"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    POST_NMS_ROIS_INFERENCE = 100
    DETECTION_MAX_INSTANCES = 10
    DETECTION_MIN_CONFIDENCE = 0.7


class ExportShapesTrainConfig(ExportShapesConfig):
    IMAGES_PER_GPU = 4
    STEPS_PER_EPOCH = 50
    VALIDATION_STEPS = 2
    TRAIN_ROIS_PER_IMAGE = 32
    POST_NMS_ROIS_TRAINING = 200


def train(minutes: float, logs: str) -> None:
    import keras

    import mrcnn.model as modellib
    from mrcnn import augment
    from mrcnn.datasets.shapes import make_dataset
    from mrcnn.training import StopAfterMinutes

    keras.utils.set_random_seed(0)
    model = modellib.MaskRCNN("training", ExportShapesTrainConfig(), logs)
    start = time.time()
    model.train(
        make_dataset(2000, 1),
        make_dataset(16, 2),
        learning_rate=0.02,
        epochs=1000,
        layers="all",
        augmentation=augment.Sequential([augment.Fliplr(0.5), augment.Flipud(0.5)]),
        custom_callbacks=[StopAfterMinutes(minutes)],
        workers=1,
    )
    WEIGHTS.parent.mkdir(exist_ok=True)
    model.save_weights(WEIGHTS)
    print(f"Trained {time.time() - start:.0f} s; wrote {WEIGHTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--logs", default="/tmp/export_weights_logs")
    arguments = parser.parse_args()
    train(arguments.minutes, arguments.logs)
